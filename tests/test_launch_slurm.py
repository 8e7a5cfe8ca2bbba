"""Launches on the real test Slurm: co-located jobs do not share a rendezvous, and multi-node
jobs (two node daemons) rendezvous, train, save and resume after a requeue.

The tiny model trains for real on the `cpu` partition (DS_ACCELERATOR=cpu from .ci/site).
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

TINY = ["cluster.partition=cpu", "model=tiny", "data=demo", "eval.max_rows=8", "eval.before=false",
        "training.eval_steps=10", "training.logging_steps=5"]
# A site folder of the test's own, before .ci/site: the same cluster with every job pinned to node1.
PINNED = """\
defaults: [ci, _self_]
name: pinned
partitions:
  cpu:
    sbatch_extra: {nodelist: node1}
"""


@pytest.fixture(scope="module")
def launch_site(tmp_path_factory) -> SlurmSite:
    require_slurm()
    base = tmp_path_factory.mktemp("launch")
    (base / "site" / "cluster").mkdir(parents=True)
    (base / "site" / "cluster" / "pinned.yaml").write_text(PINNED)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FTC_SITE_CONFIG": f"{base / 'site'}{os.pathsep}{CI_SITE}",
        "FTC_OUTPUT_ROOT": str(base / "runs"),
        "FTC_CACHE": str(base / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    return SlurmSite(base / "runs", base, env)


@pytest.fixture
def queued():
    ids: list[str] = []
    yield ids
    if ids:
        slurm("scancel", *ids)


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _submit(site: SlurmSite, queued: list[str], *args: str) -> tuple[Path, str]:
    cli = site.ftc(*args)
    assert cli.code == 0, cli.err
    run_dir = site.run_dir(cli)
    job_id = site.record(run_dir)["job_id"]
    queued.append(job_id)
    return run_dir, job_id


def _job(job_id: str) -> dict[str, str]:
    text = slurm("scontrol", "show", "job", "-o", job_id, check=True).stdout
    return dict(field.split("=", 1) for field in text.split() if "=" in field)


def _wait_completed(site: SlurmSite, run_dir: Path, deadline: float = 600) -> None:
    state, seen = site.wait(run_dir.name, deadline=deadline)
    assert state == "completed", (state, seen, site.ftc("logs", run_dir.name).out[-3000:])


def test_two_jobs_on_one_node_at_once_both_complete(launch_site, queued):
    runs = [_submit(launch_site, queued, "cluster=pinned", *TINY, f"name=colo-{i}", "method.max_steps=30",
                    f"training.seed={i}") for i in (1, 2)]
    deadline = time.monotonic() + 300
    while not all(_job(job)["JobState"] == "RUNNING" for _, job in runs):
        assert time.monotonic() < deadline, [_job(job)["JobState"] for _, job in runs]
        time.sleep(0.5)
    assert {_job(job)["NodeList"] for _, job in runs} == {"node1"}
    for run_dir, _ in runs:
        _wait_completed(launch_site, run_dir)
        assert "--standalone" in (run_dir / "job.sbatch").read_text()
    first, second = (_job(job) for _, job in runs)
    assert second["StartTime"] < first["EndTime"] and first["StartTime"] < second["EndTime"], (first, second)


@pytest.mark.parametrize("name,method,zero", [("ddp-lora", "lora", 0), ("zero3-sft", "sft", 3)])
def test_two_nodes_train_save_and_resume_after_a_requeue(launch_site, queued, name, method, zero):
    run_dir, job_id = _submit(
        launch_site, queued, "cluster=ci", *TINY, f"name=mn-{name}", f"method={method}", "method.max_steps=40",
        "training.save_steps=10", "resources.nodes=2", "resources.gpus_per_node=1", f"resources.zero_stage={zero}")
    plan = json.loads((run_dir / "plan.json").read_text())
    assert (plan["topology"]["nodes"], plan["topology"]["zero_stage"]) == (2, zero)
    deadline = time.monotonic() + 400
    while _status(run_dir).get("step", 0) < 15:
        assert time.monotonic() < deadline, _status(run_dir)
        time.sleep(1)
    job = _job(job_id)
    assert job["NumNodes"] == "2" and job["NodeList"] in ("node[1-2]", "node[1,3]", "node[2-3]", "node[3-4]",
                                                           "node[1,4]", "node[2,4]"), job
    # What Slurm does before the time limit (--signal=B:USR1@...): USR1 to the batch shell.
    assert slurm("scancel", "--batch", "--signal=USR1", job_id).returncode == 0
    _wait_completed(launch_site, run_dir)
    assert _job(job_id)["Restarts"] == "1"
    log = launch_site.ftc("logs", run_dir.name).out
    detail = (run_dir / "logs" / "train.log").read_text()  # the runtime's setup line goes to its own log
    assert '"world": 2' in detail and f'"zero": {zero}' in detail, detail[-3000:]
    assert "resum" in log.lower(), log[-3000:]
    assert _status(run_dir)["step"] == 40
    output = json.loads((run_dir / "outputs.json").read_text())
    assert output["kind"] == ("adapter" if method == "lora" else "model"), output
