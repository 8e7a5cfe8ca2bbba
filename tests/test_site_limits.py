"""A site's limits are the site's: no command line sets a cluster field other than the partition,
account and QoS, in any override form; the plan, the estimate and the hints follow the admin's files.

The fields come from the schema (compiler/config/owners.py), so a field added to the cluster later is
covered here without being listed.
"""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from ftc.compiler.cli import main
from ftc.compiler.config.owners import SITE, USER, owner, site_line
from ftc.compiler.config.schema import ClusterConfig

from site_files import admin_site

EXAMPLE = ["cluster=example", "model=llama8b"]
NAMES = {"partitions": "h100", "gpus": "h100-80gb", "env": "NCCL_DEBUG", "sbatch_extra": "reservation"}


def _model(annotation) -> type[BaseModel] | None:
    args = [annotation, *typing.get_args(annotation)]
    return next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _keys(model: type[BaseModel], prefix: str) -> list[str]:
    """Every field of the cluster as a command line would name it, nested models and dict entries too."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        keys.append(key)
        inner = _model(field.annotation)
        if typing.get_origin(field.annotation) is dict:
            keys.append(f"{key}.{NAMES.get(name, 'x')}")
            if inner is not None:
                keys += _keys(inner, f"{key}.{NAMES.get(name, 'x')}")
        elif typing.get_origin(field.annotation) is list:
            keys.append(f"{key}.0")
        elif inner is not None:
            keys += _keys(inner, key)
    return keys


CLUSTER_KEYS = _keys(ClusterConfig, "cluster")
SITE_KEYS = [k for k in CLUSTER_KEYS if owner(k) == SITE]


def _run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "dry_run=true"])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_the_user_picks_only_the_partition_account_and_qos():
    assert [k for k in CLUSTER_KEYS if owner(k) == USER] == ["cluster.partition", "cluster.account", "cluster.qos"]
    assert len(SITE_KEYS) > 40 and "cluster.partitions.h100.max_time" in SITE_KEYS
    assert owner("model.training_options.H100") == SITE
    assert {owner(k) for k in ("model.path", "method.epochs", "resources.time", "data.path", "name")} == {USER}


FORMS = {"plain": "{key}=1", "add": "+{key}=1", "force": "++{key}=1", "delete": "~{key}", "sweep": "{key}=1,2"}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("key", SITE_KEYS)
def test_every_site_field_is_refused_in_every_form(key, form, output_root, capsys):
    multirun = ["-m"] if form == "sweep" else []
    code, out, err = _run([*multirun, *EXAMPLE, FORMS[form].format(key=key)], capsys)
    assert (code, out, err) == (2, "", f"ftc: error: {site_line(key)}\n")
    assert not output_root.exists()


@pytest.mark.parametrize("value", ["''", "x" * 100_000, "'a\\'b\"c'", "'a\\\\b'", "'a\\tb\\x00\\x1b'", "'a\nb'",
                                   "'unclosed", "${oc.env:HOME}", "{a: [1, {b: 2}]}", "nan", "-1", "9" * 400])
def test_a_site_field_is_refused_by_its_key_whatever_the_value(value, output_root, capsys):
    code, out, err = _run([*EXAMPLE, f"cluster.partitions.h100.max_time={value}"], capsys)
    assert (code, out) == (2, "") and err == f"ftc: error: {site_line('cluster.partitions.h100.max_time')}\n"
    assert not output_root.exists()


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg", "all"], ["--info"]])
def test_showing_a_config_refuses_the_same(flags, capsys):
    code, out, err = _run([*flags, *EXAMPLE, "cluster.partitions.h100.max_nodes=64"], capsys)
    assert (code, out) == (2, "") and err.startswith("ftc: error: cluster.partitions.h100.max_nodes: set in the site's")


@pytest.mark.parametrize("args,directive", [
    (["cluster.partition=a100"], "#SBATCH --partition=a100\n"),
    (["cluster.account=proj-42"], "#SBATCH --account=proj-42\n"),
    (["cluster.qos=high"], "#SBATCH --qos=high\n"),
])
def test_the_users_choices_still_work(args, directive, output_root, capsys):
    code, out, err = _run([*EXAMPLE, *args], capsys)
    assert code in (0, None) and err == "" and directive in out


def test_a_sweep_over_partitions_still_works(output_root, capsys):
    code, _, err = _run(["-m", *EXAMPLE, "cluster.partition=h100,a100"], capsys)
    assert code in (0, None) and err == ""
    assert len({p.parent for p in output_root.rglob("plan.json")}) == 2


def test_the_plan_follows_the_admins_limit_and_the_command_line_cannot_lift_it(tmp_path, monkeypatch,
                                                                               output_root, capsys):
    short = admin_site(tmp_path, monkeypatch, "example",
                       {"partitions.h100.max_time": "00:10:00", "partitions.h100.requeue": "refuse"})
    args = [short, "model=llama8b", "method=sft", "method.epochs=50"]
    code, _, err = _run(args, capsys)
    assert code == 2 and "past partition h100's limit of 00:10:00, and h100 refuses requeues" in err, err
    code, _, err = _run([*args, "cluster.partitions.h100.max_time=2-00:00:00"], capsys)
    assert (code, err) == (2, f"ftc: error: {site_line('cluster.partitions.h100.max_time')}\n")
    code, _, err = _run([*args, "++cluster.partitions.h100.requeue=allow"], capsys)
    assert code == 2 and "cluster.partitions.h100.requeue: set in the site's config files" in err
    assert not output_root.exists()
