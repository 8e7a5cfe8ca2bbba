"""Tests against the local Slurm cluster started by `.ci/slurm.sh start`.

Layout (see .ci/slurm/slurm.conf): partition ``h100`` (default, MaxTime 2 days)
= node1,node2 with 8 fake ``gpu:h100`` each; partition ``a100`` (MaxTime 1 day)
= node3,node4 with 8 fake ``gpu:a100`` each; partition ``cpu`` = all four, no GPUs.

Skipped when ``SLURM_CONF`` is unset, unless ``FTC_REQUIRE_SLURM=1`` (then they fail).
Run:  eval "$(.ci/slurm.sh env)" && python -m pytest tests/test_slurm_cluster.py -q
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from slurm_fixtures import jobs, require_slurm, slurm  # noqa: F401  (jobs is a fixture)

JOB_DEADLINE = 90  # seconds for a job to reach a final state in sacct

NOT_AVAILABLE = "Requested node configuration is not available"
BAD_TIME = "Requested time limit is invalid"


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    require_slurm()
    ping = slurm("scontrol", "ping")
    assert ping.returncode == 0 and "UP" in ping.stdout, (
        f"slurmctld does not answer (SLURM_CONF={os.environ['SLURM_CONF']}):\n{ping.stdout}{ping.stderr}"
    )


def sbatch(*args: str, cwd: Path) -> str:
    proc = slurm("sbatch", "--parsable", f"--chdir={cwd}", "--output=slurm-%j.out", *args, check=True)
    return proc.stdout.strip().split(";")[0]


def sacct_state(job_id: str) -> str:
    proc = slurm("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State")
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""


def wait_state(job_id: str, prefixes: tuple[str, ...], deadline: float = JOB_DEADLINE) -> str:
    """Poll sacct until the job's state starts with one of `prefixes`; return it."""
    end = time.monotonic() + deadline
    state = ""
    while time.monotonic() < end:
        state = sacct_state(job_id)
        if state.startswith(prefixes):
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id}: state {state!r} after {deadline}s, wanted {prefixes}")


def sbatch_test_only(*args: str) -> subprocess.CompletedProcess[str]:
    return slurm("sbatch", "--test-only", *args, "--wrap", "true")


def test_sinfo_shows_partitions():
    out = slurm("sinfo", "-h", "-o", "%P|%D|%G|%l|%f", check=True).stdout
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if not line.startswith("cpu|")}
    assert set(rows) == {"h100*", "a100", "gpuA100x4", "gpuH100x8", "gpuA100x8-interactive"}, out
    assert {line.split("|")[3] for line in out.splitlines() if line.startswith("cpu|")} == {"4:00:00"}, out
    assert rows["h100*"] == ["2", "gpu:h100:8", "2-00:00:00", "h100"], out
    assert rows["a100"] == ["2", "gpu:a100:8", "1-00:00:00", "a100"], out
    # examples/site's partitions on the same nodes: a 1 h interactive one among them
    assert rows["gpuA100x8-interactive"] == ["2", "gpu:a100:8", "1:00:00", "a100"], out
    nodes = slurm("sinfo", "-h", "-N", "-o", "%N %T", check=True).stdout.split("\n")
    assert sorted({n.split()[0] for n in nodes if n}) == ["node1", "node2", "node3", "node4"]


def test_trivial_job_completes(tmp_path, jobs):
    job = sbatch("--wrap", "echo hello-from-$SLURM_JOB_ID", "-t", "1", cwd=tmp_path)
    jobs.append(job)
    assert wait_state(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")) == "COMPLETED"
    assert (tmp_path / f"slurm-{job}.out").read_text().strip() == f"hello-from-{job}"


@pytest.mark.parametrize(
    "args",
    [
        ("-p", "h100", "--gpus-per-node=8", "-N", "2", "-C", "h100"),
        ("-p", "a100", "--gres=gpu:a100:8", "-N", "2", "-t", "1-00:00:00"),
        ("--gres=gpu:h100:8",),
    ],
)
def test_test_only_accepts_fitting_request(args):
    proc = sbatch_test_only(*args)
    assert proc.returncode == 0, proc.stderr
    assert " to start at " in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("-p", "h100", "--gpus-per-node=9"),
        ("-p", "h100", "--gres=gpu:h100:16"),
        ("-p", "h100", "--gres=gpu:a100:1"),
        ("-p", "h100", "-C", "a100"),
    ],
)
def test_test_only_refuses_too_many_gpus(args):
    proc = sbatch_test_only(*args)
    assert proc.returncode != 0, proc.stderr
    assert NOT_AVAILABLE in proc.stderr, proc.stderr


def test_test_only_refuses_too_many_nodes():
    # more nodes than the partition has: a different message from too many GPUs
    proc = sbatch_test_only("-p", "a100", "-N", "3")
    assert proc.returncode != 0, proc.stderr
    assert "Node count specification invalid" in proc.stderr, proc.stderr


def test_test_only_refuses_unknown_partition():
    proc = sbatch_test_only("-p", "nope")
    assert proc.returncode != 0, proc.stderr
    assert "Invalid partition name specified" in proc.stderr, proc.stderr


@pytest.mark.parametrize("partition,limit", [("a100", "1-00:00:01"), ("h100", "2-00:01:00")])
def test_time_above_partition_max_refused(partition, limit):
    proc = sbatch_test_only("-p", partition, "-t", limit)
    assert proc.returncode != 0, proc.stderr
    assert BAD_TIME in proc.stderr, proc.stderr
    # and a real submission is refused too (EnforcePartLimits=ALL), instead of pending forever
    proc = slurm("sbatch", "-p", partition, "-t", limit, "--wrap", "true")
    assert proc.returncode != 0, proc.stdout
    assert BAD_TIME in proc.stderr, proc.stderr


def test_two_node_job_sees_two_node_ids(tmp_path, jobs):
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "srun bash -c 'echo \"$SLURM_NODEID $SLURM_NNODES $SLURMD_NODENAME "
        "${SLURM_GPUS_ON_NODE:-none} ${CUDA_VISIBLE_DEVICES:-none}\"'\n"
    )
    job = sbatch("-p", "h100", "-N", "2", "--ntasks-per-node=1", "--gpus-per-node=8", "-t", "2", str(script), cwd=tmp_path)
    jobs.append(job)
    assert wait_state(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")) == "COMPLETED"
    lines = sorted((tmp_path / f"slurm-{job}.out").read_text().split("\n"))
    rows = [line.split() for line in lines if line.strip()]
    assert len(rows) == 2, lines
    assert sorted(r[0] for r in rows) == ["0", "1"], rows  # SLURM_NODEID distinct
    assert {r[1] for r in rows} == {"2"}, rows  # same SLURM_NNODES
    assert sorted(r[2] for r in rows) == ["node1", "node2"], rows
    assert all(r[3] == "8" and r[4] == "0,1,2,3,4,5,6,7" for r in rows), rows


def test_scancel_reports_cancelled(tmp_path, jobs):
    job = sbatch("-p", "a100", "-t", "5", "--wrap", "sleep 300", cwd=tmp_path)
    jobs.append(job)
    end = time.monotonic() + JOB_DEADLINE
    while time.monotonic() < end:
        state = slurm("squeue", "-h", "-j", job, "-o", "%T").stdout.strip()
        if state == "RUNNING":
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"job {job} not RUNNING after {JOB_DEADLINE}s: {state!r}")
    slurm("scancel", job, check=True)
    assert wait_state(job, ("CANCELLED",)).startswith("CANCELLED")
