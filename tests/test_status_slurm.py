"""`ftc status` that is fast and says why, against real Slurm (.ci/slurm.sh).

The controller-down test starts a SECOND Slurm instance of its own (its own FTC_SLURM_DIR and
FTC_SLURM_PORT_BASE, default 18600) and stops it; the shared cluster is never stopped.
Run: eval "$(.ci/slurm.sh env)" && python -m pytest tests/test_status_slurm.py -q
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from slurm_fixtures import REPO, SlurmSite, jobs, require_slurm, site, slurm  # noqa: F401

pytestmark = pytest.mark.slurm
SLURM_SH = REPO / ".ci" / "slurm.sh"


def _fake_bin(folder: Path, torchrun: str, **clients: str) -> str:
    """A PATH with this `torchrun` (and these Slurm clients) first."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in {"torchrun": torchrun, **clients}.items():
        (folder / name).write_text("#!/bin/bash\n" + body + "\n")
        (folder / name).chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


FORGETFUL = {"squeue": "exit 0", "sacct": "exit 0"}  # a controller that has forgotten the job, no accounting


def test_failed_run_says_why_and_its_end_outlives_slurm(site, jobs, tmp_path):
    path = _fake_bin(tmp_path / "bin", 'echo "bash: module: command not found"; exit 127')
    cli = site.ftc(*site.compile_args("name=says-why"), PATH=path)
    assert cli.code == 0, cli.err
    run_dir = site.run_dir(cli)
    jobs.append(site.record(run_dir)["job"])
    assert site.wait(run_dir.name)[0] == "failed (exit code 127)"
    detail = site.ftc("status", run_dir.name).out
    assert "why        command not found" in detail and "error      bash: module: command not found" in detail
    forgetful = _fake_bin(tmp_path / "forgetful", "exit 0", **FORGETFUL)
    detail = site.ftc("status", run_dir.name, PATH=forgetful).out
    assert "state      failed (exit code 127) [from the job script's end record]" in detail, detail


def test_finished_run_is_not_resubmitted_when_slurm_forgot_it(site, jobs, tmp_path):
    cli = site.ftc(*site.compile_args("name=forgotten"))
    run_dir = site.run_dir(cli)
    jobs.append(site.record(run_dir)["job"])
    assert site.wait(run_dir.name)[0] == "completed"
    (run_dir / "status.json").unlink()  # not even the runtime's word: only the job script's end record
    forgetful = _fake_bin(tmp_path / "forgetful", "exit 0", **FORGETFUL)
    again = site.ftc(*site.compile_args("name=forgotten"), PATH=forgetful)
    assert again.code == 0 and "already completed" in again.out, again.out + again.err
    assert site.record(run_dir)["previous"] == []


def test_dry_runs_are_listed_apart(site, tmp_path):
    root = tmp_path / "runs"
    assert site.ftc(*site.compile_args("name=draft", "dry_run=true"), FTC_OUTPUT_ROOT=str(root)).code == 0
    listing = site.ftc("status", FTC_OUTPUT_ROOT=str(root))
    assert "draft" not in listing.out and "1 more compiled but never submitted" in listing.out
    assert "draft" in site.ftc("status", "--all", FTC_OUTPUT_ROOT=str(root)).out


def test_eight_identical_submissions_make_one_job(site, jobs):
    args = site.compile_args("name=eight-at-once")
    env = {**site.env, "FAKE_TORCHRUN_SECONDS": "60"}
    command = [os.environ.get("PYTHON", "python3"), "-m", "ftc", *args]
    import sys

    command[0] = sys.executable
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=site.root.parent) for _ in range(8)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    submitted = [out for code, out, _ in results if code == 0 and "submitted run" in out]
    assert len(submitted) == 1, results
    job = submitted[0].split("as Slurm job ")[1].split()[0]
    jobs.append(job)
    others = [err for code, _, err in results if code == 2]
    assert len(others) == 7 and all(f"as job {job};" in err and len(err.splitlines()) == 1 for err in others), results
    named = slurm("squeue", "-h", "-o", "%i", "-n", f"ftc-eight-at-once-{site.run_dir(Cli(submitted[0])).name}")
    assert named.stdout.split() == [job]


class Cli:
    def __init__(self, out: str):
        self.out, self.err = out, ""


@pytest.fixture(scope="module")
def second_slurm(tmp_path_factory):
    """A Slurm instance of this test's own; its controller is stopped by the test, all of it afterwards."""
    require_slurm()
    state = Path(f"/tmp/ftc-slurm-status-{os.getpid()}")
    env = {**os.environ, "FTC_SLURM_DIR": str(state),
           "FTC_SLURM_PORT_BASE": os.environ.get("FTC_TEST_SLURM_PORT_BASE", "18600")}
    env.pop("SLURM_CONF", None)
    start = subprocess.run(["bash", str(SLURM_SH), "start"], env=env, capture_output=True, text=True, timeout=240)
    assert start.returncode == 0, start.stderr
    env["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
    yield state, env
    subprocess.run(["bash", str(SLURM_SH), "start"], env=env, capture_output=True, timeout=240)
    subprocess.run(["timeout", "20", "scancel", "--me"], env=env, capture_output=True)  # this instance's jobs only
    subprocess.run(["bash", str(SLURM_SH), "stop"], env=env, capture_output=True, timeout=240)
    shutil.rmtree(state, ignore_errors=True)
    Path(f"{state}.lock").unlink(missing_ok=True)


def test_status_with_the_controller_down_is_fast_and_says_so(site, second_slurm, tmp_path):
    state, env = second_slurm
    own = SlurmSite(tmp_path / "runs", site.data, {**site.env, "SLURM_CONF": env["SLURM_CONF"],
                                                   "FTC_OUTPUT_ROOT": str(tmp_path / "runs")})
    done = own.ftc(*own.compile_args("name=done-before"))
    long = own.ftc(*own.compile_args("name=still-running"), FAKE_TORCHRUN_SECONDS="120")
    assert done.code == 0 and long.code == 0, done.err + long.err
    assert own.wait(own.run_dir(done).name)[0] == "completed"
    assert own.wait(own.run_dir(long).name, ("running",))[0] == "running"
    for daemon in ("slurmctld", "slurmdbd"):  # neither squeue nor sacct answers now
        pid = int((state / "run" / f"{daemon}.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
    started = time.monotonic()
    listing = own.ftc("status")
    took = time.monotonic() - started
    assert listing.code == 0 and took < 5, (took, listing.err)
    rows = {line.split()[0]: line for line in listing.out.splitlines()[1:]}
    assert "completed" in rows["tiny-llama-done-before"] and "running" in rows["tiny-llama-still-running"], listing.out
    notes = listing.err.strip().splitlines()
    assert len(notes) == 1 and "controller does not answer" in notes[0], listing.err
    detail = own.ftc("status", own.run_dir(long).name)
    assert "state      running [from last known," in detail.out, detail.out


def test_four_identical_sweeps_make_one_job_array(site, jobs):
    import sys

    command = [sys.executable, "-m", "ftc", "-m", *site.compile_args("name=sweep-at-once",
                                                                      "method.learning_rate=1e-4,2e-4")]
    env = {**site.env, "FAKE_TORCHRUN_SECONDS": "60"}
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=site.root.parent) for _ in range(4)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    submitted = [out for code, out, _ in results if code == 0 and "submitted sweep" in out]
    assert len(submitted) == 1, results
    array = submitted[0].split("as Slurm job array ")[1].split(":")[0]
    jobs.append(array)
    others = [err for code, _, err in results if code == 2]
    assert len(others) == 3 and all(err.count(f"as job {array}_") == 2 for err in others), results
