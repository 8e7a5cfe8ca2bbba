"""Hints that are true: a refusal names the limit that binds, and every fix it suggests is one
the solver was re-run with and accepted (re-applied here, each must compile)."""

from __future__ import annotations

import re

import pytest

from ftc.compiler.driver import compile_point
from ftc.compiler.errors import UserError

from site_files import admin_cluster, use_site

CAMPUS = ["dry_run=true"]
ADMINS = "(an admin's change) "
ONE_NODE = {f"partitions.{p}.max_nodes": 1 for p in ("gpuA100x4", "gpuH100x8", "gpuA100x8-interactive")}


@pytest.fixture(autouse=True)
def campus(monkeypatch, output_root):
    from slurm_fixtures import REPO

    monkeypatch.setenv("FTC_SITE_CONFIG", str(REPO / "examples" / "site"))


def _refusal(*args: str, cluster: str = "cluster=campus") -> str:
    with pytest.raises(UserError) as info:
        compile_point([*CAMPUS, cluster, *args])
    [line] = info.value.problems
    return line


def _fixes(line: str) -> list[str]:
    advice = line.rsplit("; set ", 1)[1]
    return [fix.split(" (")[0] if not fix.startswith(ADMINS) else ADMINS + fix[len(ADMINS):].split(" (")[0]
            for fix in advice.split(" or ")]


def _apply(args: list[str], fix: str) -> list[str]:
    key = fix.split("=", 1)[0]
    return [a for a in args if not a.startswith(key + "=")] + [fix]


def _assert_every_fix_compiles(args: list[str], line: str, folder, site: dict | None = None) -> list[str]:
    """Each fix re-applied: a user's on the command line, an admin's in a site file (the command line
    refuses it, naming the field as the site's)."""
    fixes = _fixes(line)
    assert fixes, line
    for fix in fixes:
        if fix.startswith(ADMINS):
            key, value = fix.removeprefix(ADMINS).split("=", 1)
            with pytest.raises(UserError, match=f"^{re.escape(key)}: set in the site's config files"):
                compile_point([*CAMPUS, "cluster=campus", *args, f"{key}={value}"])
            changes = {**(site or {}), key.removeprefix("cluster."): int(value)}
            compile_point([*CAMPUS, *args, admin_cluster(folder, "campus", changes, name="fixed")])
        else:
            cluster = admin_cluster(folder, "campus", site) if site else "cluster=campus"
            compile_point([*CAMPUS, cluster, *_apply(args, fix)])  # raises if the hint lied
    return [fix.removeprefix(ADMINS) for fix in fixes]


def test_the_partitions_node_limit_is_named_when_it_binds(tmp_path, monkeypatch):
    args = ["cluster.partition=gpuA100x8-interactive", "model=llama70b", "method=sft"]
    line = _refusal(*args)
    assert "nothing fits within partition gpuA100x8-interactive's max_nodes (2)" in line
    assert "model config's" not in line.split("nothing fits")[1]
    use_site(monkeypatch, tmp_path)
    fixes = _assert_every_fix_compiles(args, line, tmp_path)
    assert "cluster.partition=gpuH100x8" in fixes and "cluster.partitions.gpuA100x8-interactive.max_nodes=8" in fixes


def test_the_model_configs_node_limit_is_named_when_it_binds():
    line = _refusal("cluster.partition=gpuA100x4", "model=llama70b", "method=sft")
    assert "nothing fits within the model config's 8 node(s) for sft/all_weights on A100" in line
    assert "max_nodes=" not in line  # more nodes would not fit: not suggested


def test_no_fix_is_suggested_when_none_fits(tmp_path, monkeypatch):
    use_site(monkeypatch, tmp_path)
    line = _refusal("cluster.partition=gpuA100x4", "model=llama70b", "method=sft",
                    cluster=admin_cluster(tmp_path, "campus", ONE_NODE))
    assert line.endswith("no partition of cluster campus and no shorter sequence length fits")
    assert "data.max_seq_length" not in line.replace("no shorter sequence length", "")


def test_a_shorter_sequence_is_not_suggested_when_the_weights_alone_do_not_fit(tmp_path, monkeypatch):
    # 8B full SFT on one node of 4 x 40 GB: weights and optimizer states bind, not the 4096 tokens
    use_site(monkeypatch, tmp_path)
    args = ["cluster.partition=gpuA100x4", "model=llama8b", "method=sft", "data.max_seq_length=4096",
            "data.packing=true"]
    line = _refusal(*args, cluster=admin_cluster(tmp_path, "campus", ONE_NODE))
    assert "data.max_seq_length" not in line
    assert set(_assert_every_fix_compiles(args, line, tmp_path, ONE_NODE)) == {
        "cluster.partition=gpuH100x8", "cluster.partition=gpuA100x8-interactive", "cluster.partitions.gpuA100x4.max_nodes=2"}


def test_a_run_past_an_interactive_limit_suggests_only_what_fits(tmp_path):
    args = ["cluster.partition=gpuA100x8-interactive", "model=llama8b", "method=sft", "method.epochs=2000"]
    line = _refusal(*args)
    assert "past partition gpuA100x8-interactive's limit of 01:00:00, and gpuA100x8-interactive refuses requeues" in line
    fixes = _assert_every_fix_compiles(args, line, tmp_path)
    steps = int(next(f for f in fixes if f.startswith("method.max_steps=")).split("=")[1])
    with pytest.raises(UserError, match="refuses requeues"):  # one more step would not fit: the largest that does
        compile_point([*CAMPUS, "cluster=campus", *args, f"method.max_steps={steps + max(1, steps // 50)}"])
