"""The whole path on the real local Slurm: compile, submit, train the tiny model for real, requeue.

Jobs run on the test controller's `cpu` partition with the real torchrun of this environment
(sbatch's default --export=ALL carries PATH into the job).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from slurm_fixtures import CI_SITE, SlurmSite, require_slurm, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.train]
pytest.importorskip("trl")

TINY = ["cluster=ci", "cluster.partition=cpu", "model=tiny", "data=demo", "eval.max_rows=16",
        "training.eval_steps=10", "training.logging_steps=5"]


@pytest.fixture(scope="module")
def real_site(tmp_path_factory) -> SlurmSite:
    require_slurm()
    base = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FTC_SITE_CONFIG": str(CI_SITE),
        "FTC_OUTPUT_ROOT": str(base / "runs"),
        "FTC_CACHE": str(base / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    return SlurmSite(base / "runs", base, env)


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_tiny_lora_trains_for_real_through_slurm(real_site):
    cli = real_site.ftc(*TINY, "name=e2e-lora", "method.max_steps=40")
    assert cli.code == 0, cli.err
    run_dir = real_site.run_dir(cli)
    run_id = run_dir.name
    state, seen = real_site.wait(run_id, deadline=400)
    assert state == "completed", (state, seen, real_site.ftc("logs", run_id).out[-3000:])
    assert seen[0] in ("pending", "running")
    status = _status(run_dir)
    assert status["state"] == "completed" and status["step"] == 40
    outputs = json.loads((run_dir / "outputs.json").read_text())
    assert outputs["kind"] == "adapter" and (run_dir / "output" / "adapter" / "adapter_config.json").exists()
    detail = real_site.ftc("status", run_id).out
    assert "state      completed" in detail and "loss       train " in detail and "eval       " in detail
    log = real_site.ftc("logs", run_id).out
    assert "ftc-ci job" in log and run_id in log


def test_preempted_job_checkpoints_requeues_and_resumes(real_site):
    cli = real_site.ftc(*TINY, "name=e2e-requeue", "method.max_steps=120", "training.save_steps=10")
    assert cli.code == 0, cli.err
    run_dir = real_site.run_dir(cli)
    job_id = real_site.record(run_dir)["job_id"]
    deadline = time.monotonic() + 300
    while _status(run_dir).get("step", 0) < 15:
        assert time.monotonic() < deadline, _status(run_dir)
        time.sleep(1)
    # What Slurm does before the time limit (--signal=B:USR1@...): USR1 to the batch shell.
    signal = slurm("scancel", "--batch", "--signal=USR1", job_id)
    assert signal.returncode == 0, signal.stderr
    state, seen = real_site.wait(run_dir.name, deadline=400)
    assert state == "completed", (state, seen)
    restarts = slurm("scontrol", "show", "job", job_id).stdout
    assert "Restarts=1" in restarts, restarts
    log = real_site.ftc("logs", run_dir.name).out
    assert "resum" in log.lower(), log[-3000:]
    assert _status(run_dir)["step"] == 120
