"""Rendered scripts are valid shell, clean under shellcheck, and never run what a user typed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftc.compiler.config.compose import load_job
from ftc.compiler.config.owners import SITE, owner
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import compile_job

from site_files import admin_cluster
from test_golden import CASES, rendered

SHELLCHECK = shutil.which("shellcheck")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bash_parses_every_golden_case(name, tmp_path):
    script = tmp_path / "job.sbatch"
    script.write_text(rendered(name))
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(not SHELLCHECK and not os.environ.get("CI"), reason="shellcheck not installed")
@pytest.mark.parametrize("name", sorted(CASES))
def test_shellcheck_is_clean(name, tmp_path):
    script = tmp_path / "job.sbatch"
    script.write_text(rendered(name))
    result = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


HOSTILE = st.sampled_from(
    ["$(touch PWNED)", "`touch PWNED`", "; touch PWNED", "' ; touch PWNED; '", '" ; touch PWNED; "',
     "${IFS}touch${IFS}PWNED", "a\ntouch PWNED", "$((1))", "\\", "* ?", "--x=$(touch PWNED)", "|touch PWNED", "&& touch PWNED"]
)
# Every string that could reach the script, a user's or an admin's (some are refused by the schema first).
FIELDS = ["cluster.account", "cluster.qos", "output_root", "cluster.partitions.local.constraint",
          "cluster.container.image", "model.path", "namespace", "name", "data.name"]


def _fake_tools(bin_dir: Path) -> None:
    """srun, torchrun and scontrol that only record their arguments."""
    bin_dir.mkdir()
    tools = {
        "srun": '#!/bin/bash\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n',
        "apptainer": '#!/bin/bash\nshift 3\nexec "$@"\n',
        "scontrol": "#!/bin/bash\necho node1\n",
    }
    for tool, text in tools.items():
        path = bin_dir / tool
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    torchrun = bin_dir / "torchrun"
    torchrun.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$FTC_ARGS_OUT"\n')
    torchrun.chmod(torchrun.stat().st_mode | stat.S_IEXEC)


def _hydra_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=HOSTILE)
def test_hostile_strings_never_execute(field, value, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    overrides = [f"{field}={_hydra_quoted(value)}", f"output_root={work / 'runs'}"]
    site = {}
    if owner(field) == SITE:  # an admin's value: from a site file, as the command line may not set it
        changes = {field.removeprefix("cluster."): value}
        if field == "cluster.container.image":
            changes["container.kind"] = "apptainer"
        overrides[0] = admin_cluster(work / "site", "local", changes)
        site = {"FTC_SITE_CONFIG": str(work / "site")}
    try:
        with mock.patch.dict(os.environ, site):
            job, resolved = load_job(overrides)
            script = compile_job(job, resolved).script
    except UserError:
        return  # refused with a clear line: it never reaches a shell
    bin_dir = work / "bin"
    _fake_tools(bin_dir)
    path = work / "job.sbatch"
    path.write_text(script)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "node1", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_JOB_ID": "7", "FTC_ARGS_OUT": str(work / "args")}
    run_dir = compile_job(job, resolved).plan.run_dir
    subprocess.run(["bash", str(path)], cwd=work, env=env, capture_output=True, timeout=30)
    assert not list(work.rglob("PWNED")) and not (Path.cwd() / "PWNED").exists()
    assert (work / "args").read_text().splitlines()[-1] == run_dir


def test_a_site_template_cannot_forget_to_quote(tmp_path, monkeypatch):
    """Admin templates print values through the same finalize hook as ftc's own."""
    templates, site = tmp_path / "templates", tmp_path / "site"
    templates.mkdir()
    (templates / "job.sbatch.j2").write_text(
        '{% extends "ftc/job.sbatch.j2" %}\n{% block setup %}echo {{ run_dir }}\n{% endblock %}\n'
    )
    (site / "cluster").mkdir(parents=True)
    (site / "cluster" / "site.yaml").write_text(f"defaults: [local, _self_]\nname: site\ntemplate_dir: {templates}\n")
    monkeypatch.setenv("FTC_SITE_CONFIG", str(site))
    root = tmp_path / "a b$(touch PWNED)"
    job, resolved = load_job(["cluster=site", f"output_root={_hydra_quoted(str(root))}"])
    run = compile_job(job, resolved)
    assert f"echo '{run.plan.run_dir}'\n" in run.script
    (line,) = [line for line in run.script.splitlines() if line.startswith("echo ")]
    echoed = subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert echoed.stdout.strip() == run.plan.run_dir
    assert not list(tmp_path.rglob("PWNED"))
