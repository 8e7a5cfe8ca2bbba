"""The local executor (cluster=local, the default) runs the plan's launch line here, with no Slurm binary on PATH.

`python -m torch.distributed.run` is a FAKE here, put first on PYTHONPATH: it records how it was
launched and pretends to train (the lead's tiny LoRA test runs the real thing).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_fixtures import write_dataset

FAKE_RUN = r'''"""FAKE torch.distributed.run for ftc's local-executor tests only."""
import json, os, shutil, signal, sys, time
from pathlib import Path

run_dir = Path(sys.argv[-1])
stop = []
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda signum, frame: stop.append(signal.Signals(signum).name))
(run_dir / "fake-launch.json").write_text(json.dumps({
    "args": sys.argv[1:], "run_dir_env": os.environ.get("FTC_RUN_DIR"),
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "sbatch": shutil.which("sbatch"), "pgid": os.getpgid(0),
}))

def status(**fields):
    tmp = run_dir / "status.json.tmp"
    tmp.write_text(json.dumps(fields))
    tmp.replace(run_dir / "status.json")

status(state="running", step=1, max_steps=4, percent=25.0, train_loss=2.5)
print("FAKE local torchrun", " ".join(sys.argv[1:]), flush=True)
deadline = time.monotonic() + float(os.environ.get("FAKE_TORCHRUN_SECONDS", "0.5"))
while time.monotonic() < deadline and not stop:
    if (run_dir / "stop_requested").exists():  # as the runtime does at each step boundary
        stop.append("the stop file")
    time.sleep(0.05)
if stop:
    stop_file = run_dir / "stop_requested"
    cancelled = stop_file.exists() and stop_file.read_text().strip() == "cancel"
    status(state="cancelled" if cancelled else "preempted", step=2, max_steps=4, percent=50.0)
    print("FAKE stopped by", stop[0], flush=True)
    sys.exit(0)
status(state="completed", step=4, max_steps=4, percent=100.0, train_loss=1.25, val_loss=1.5)
print("FAKE done", flush=True)
sys.exit(int(os.environ.get("FAKE_TORCHRUN_EXIT", "0")))
'''


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    base = tmp_path_factory.mktemp("local")
    fake = base / "fake-torch" / "torch" / "distributed"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text('"""FAKE torch for ftc local-executor tests."""\n')
    (fake / "__init__.py").write_text("")
    (fake / "run.py").write_text(FAKE_RUN)
    empty_bin = base / "bin"
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CONF", "FTC_SITE_CONFIG")}
    python_path = os.pathsep.join(p for p in (str(base / "fake-torch"), os.environ.get("PYTHONPATH")) if p)
    env.update(PATH=str(empty_bin), PYTHONPATH=python_path, FTC_OUTPUT_ROOT=str(base / "runs"))
    data = write_dataset(base / "data")

    def ftc(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
        """`python -m ftc ARGS`; a compile (not status/logs/cancel/-m) gets the test dataset."""
        if args and args[0] not in ("status", "logs", "cancel", "compare", "-m"):
            args = (f"data.path={data}", *args)
        return subprocess.run([sys.executable, "-m", "ftc", *args], capture_output=True, text=True,
                              env={**env, **extra}, timeout=timeout, cwd=base)

    ftc.env, ftc.data, ftc.base = env, data, base
    return ftc


def run_dir_of(out: str) -> Path:
    return Path(next(line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("run folder ")))


def state(local, run_id: str) -> str:
    out = local("status", run_id).stdout
    return next(line.split(None, 1)[1].split(" [from")[0] for line in out.splitlines() if line.startswith("state "))


def wait(local, run_id: str, until: tuple[str, ...], deadline: float = 30) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        current = state(local, run_id)
        if current.startswith(until):
            return current
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} is {current}, wanted {until}")


def test_foreground_run_completes_without_slurm(local):
    proc = local("name=fg")
    assert proc.returncode == 0, proc.stderr
    assert "FAKE done" in proc.stdout
    run_dir = run_dir_of(proc.stdout)
    launch = json.loads((run_dir / "fake-launch.json").read_text())
    workers = json.loads((run_dir / "plan.json").read_text())["topology"]["gpus_per_node"]
    assert launch["args"] == ["--standalone", f"--nproc-per-node={workers}", "-m", "ftc.runtime", str(run_dir)]
    assert launch["run_dir_env"] == str(run_dir) and launch["cuda"] == "" and launch["sbatch"] is None
    assert "FAKE done" in (run_dir / "logs" / "local.out").read_text()
    record = json.loads((run_dir / "job.json").read_text())
    assert record["executor"] == "local" and record["pid"] == launch["pgid"]
    assert state(local, run_dir.name) == "completed"
    again = local("name=fg")
    assert again.returncode == 0 and "already completed" in again.stdout and "FAKE" not in again.stdout


def test_detach_returns_at_once_and_logs_follow(local):
    started = time.monotonic()
    proc = local("name=bg", "detach=true", FAKE_TORCHRUN_SECONDS="8")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 8  # the run takes 8 s; a loaded machine compiles slowly
    run_dir = run_dir_of(proc.stdout)
    run_id, pid = run_dir.name, json.loads((run_dir / "job.json").read_text())["pid"]
    assert proc.stdout.splitlines() == [f"started run {run_id} in the background (pid {pid})", f"run folder {run_dir}",
                                        f"  ftc status {run_id}", f"  ftc logs {run_id} -f", f"  ftc cancel {run_id}"]
    assert state(local, run_dir.name) == "running"
    busy = local("name=bg", "detach=true")
    assert busy.returncode == 2 and "already running" in busy.stderr
    follow = local("logs", run_dir.name, "-f")
    assert follow.returncode == 0 and "FAKE done" in follow.stdout
    assert state(local, run_dir.name) == "completed"
    table = local("status").stdout
    assert any(run_dir.name in line and "completed" in line and "100%" in line for line in table.splitlines())


def test_cancel_detached_run(local):
    proc = local("name=cancel-me", "detach=true", FAKE_TORCHRUN_SECONDS="60")
    run_dir = run_dir_of(proc.stdout)
    wait(local, run_dir.name, ("running",))
    time.sleep(0.5)
    cancel = local("cancel", run_dir.name)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stderr
    assert wait(local, run_dir.name, ("cancelled",)) == "cancelled"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"


def test_ctrl_c_checkpoints_and_stops(local):
    args = [sys.executable, "-m", "ftc", f"data.path={local.data}", "name=ctrl-c"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=local.base,
                            env={**local.env, "FAKE_TORCHRUN_SECONDS": "60"})
    end = time.monotonic() + 30
    while not list((local.base / "runs" / "default").glob("*-ctrl-c/*/status.json")):
        assert time.monotonic() < end and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "FAKE stopped by the stop file" in out and "resume" in out
    run_dir = run_dir_of(out)
    assert state(local, run_dir.name) == "cancelled"


def test_failure_says_exit_code(local):
    proc = local("name=fails", FAKE_TORCHRUN_EXIT="3")
    assert proc.returncode == 1
    run_dir = run_dir_of(proc.stdout)
    assert state(local, run_dir.name) == "failed (exit code 3)"
    failed_job = json.loads((run_dir / "job.json").read_text())["job"]
    again = local("name=fails")
    assert again.returncode == 0 and again.stdout.startswith(
        f"run {run_dir.name}: job {failed_job} ended failed (exit code 3); "
        "resubmitting: no checkpoint was saved, it starts over\nrunning run "), again.stdout


def test_the_api_server_submits_without_printing_the_clis_lines(local, tmp_path):
    """`ftc serve` submits through the CLI's submission, but the lines the CLI prints about it (started,
    run folder, the follow commands, resubmitting) are the CLI's: none reaches the server's log."""
    from api_server import lora_body, start

    env = {**{k: v for k, v in local.env.items() if k != "FTC_OUTPUT_ROOT"}, "FAKE_TORCHRUN_EXIT": "3"}
    server = start(tmp_path / "api", "--rate", "0", "cluster=local", env=env)
    try:
        created = server.post("/v1/customization/jobs", json=lora_body())
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        assert server.wait_for(job_id, timeout=60)["status"] == "failed"
        again = server.post("/v1/customization/jobs", json=lora_body())  # a failed run is submitted again
        assert again.status_code == 200 and again.json()["id"] == job_id, again.text
        assert server.wait_for(job_id, timeout=60)["status"] == "failed"
    finally:
        server.stop()
    runs = list(server.root.glob(f"*/*/{job_id}/logs/local-exit.json"))
    assert len(runs) == 1, server.files()
    log = server.log.read_text()
    for cli_line in ("started run", "run folder", "ftc status", "ftc logs", "ftc cancel", "resubmitting", "run "):
        assert cli_line not in log, log


def dashboard(root):
    """GET on the dashboard over run folders under `root`, signed in (TestClient: no server process)."""
    from api_server import TOKEN
    from fastapi.testclient import TestClient

    from ftc.compiler.api.app import create_app
    from ftc.compiler.api.datasets import DatasetRoots
    from ftc.compiler.api.limits import Limits
    from ftc.compiler.api.service import JobService

    app = create_app(JobService([], DatasetRoots(()), root), TOKEN, Limits(requests_per_s=0))
    client = TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {TOKEN}"})
    return client.get


def test_local_sweep_runs_points_in_turn(local):
    proc = local("-m", f"data.path={local.data}", "name=local-sweep", "method.learning_rate=1e-4,2e-4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("FAKE done") == 2 and "sweep point 2/2" in proc.stdout
    # It ends with the compare table: one row per point, the value that differs, state, losses, output.
    sweep_id = proc.stdout.split("sweep ", 1)[1].split(":", 1)[0]
    table = proc.stdout[proc.stdout.rindex(f"sweep {sweep_id}:"):].splitlines()[1:]
    assert table[0].split() == ["RUN", "ID", "method.learning_rate", "STATE", "TRAIN", "LOSS", "VAL", "LOSS", "OUTPUT"]
    rows = sorted((line.split() for line in table[1:]), key=lambda r: float(r[1]))
    assert [r[1:5] for r in rows] == [["0.0001", "completed", "1.25", "1.5"], ["0.0002", "completed", "1.25", "1.5"]]
    assert all(r[5].startswith("default/") and r[5].endswith(f"@{r[0]}") for r in rows)
    listed = json.loads((next(local.base.glob(f"runs/*/sweeps/{sweep_id}.json"))).read_text())
    assert sorted(p["run_id"] for p in listed["points"]) == sorted(r[0] for r in rows)
    found = json.loads(local("compare", sweep_id, "--json", "--sort", "method.learning_rate", "--reverse").stdout)
    assert [r["differs"] for r in found] == [{"method.learning_rate": 2e-4}, {"method.learning_rate": 1e-4}]
    assert local("compare", "--sort", "nope", sweep_id).stderr.startswith("ftc: error: --sort: no column 'nope'")
    status = local("status").stdout.splitlines()
    assert status[0].split()[-1] == "SWEEP" and any(f"{sweep_id}: method.learning_rate=0.0002" in s for s in status)
    # The same table on the dashboard, ordered by any column; the run page links to its sweep.
    page = dashboard(local.base / "runs")
    cells = [re.findall(r"<td>(?:<a [^>]*>)?([^<]*)", row) for row in page(f"/sweeps/{sweep_id}").text.split("<tr class=\"run\"")[1:]]
    assert sorted(c[:5] for c in cells) == sorted(r[:5] for r in rows)
    ordered = page(f"/sweeps/{sweep_id}?sort=method.learning_rate&reverse=true").text
    assert ordered.index(">0.0002<") < ordered.index(">0.0001<") and "↓" in ordered
    assert "--sort: no column &#39;nope&#39;" in page(f"/sweeps/{sweep_id}?sort=nope").text
    assert page("/sweeps/0123456789").status_code == 404 and page("/sweeps/..%2f..").status_code == 404
    assert f'href="/sweeps/{sweep_id}"' in page(f"/runs/{rows[0][0]}").text
    refused = local("-m", f"data.path={local.data}", "name=local-sweep", "method.learning_rate=1e-4,2e-4", "detach=true")
    assert refused.returncode == 2 and "a local sweep runs its points one after another" in refused.stderr


def test_missing_train_extra_is_one_line(local):
    probe = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('login node: no torch')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from ftc.compiler.cli import main\n"
        f"main(['data.path={local.data}', 'name=no-torch'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=local.env,
                          cwd=local.base, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ftc: error: the local executor needs the train extra: pip install 'ftc[train]'"


def test_eight_identical_detached_submissions_start_one_run(local):
    """Exactly once: the check and the start happen under the run folder's lock."""
    args = [sys.executable, "-m", "ftc", f"data.path={local.data}", "name=eight-at-once", "detach=true"]
    env = {**local.env, "FAKE_TORCHRUN_SECONDS": "20"}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=local.base, env=env)
             for _ in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    started = [out for code, out, err in results if code == 0 and "started run" in out]
    assert len(started) == 1, results
    pid = started[0].split("(pid ")[1].split(")")[0]
    refused = [err for code, out, err in results if code == 2]
    assert len(refused) == 7 and all(f"already running as job local:{pid}" in err for err in refused), results
    assert all(len(err.splitlines()) == 1 and "Traceback" not in err for err in refused)
    run_dir = run_dir_of(started[0])
    assert local("cancel", run_dir.name).returncode == 0
    assert len(json.loads((run_dir / "fake-launch.json").read_text())["args"]) > 0
    assert json.loads((run_dir / "job.json").read_text())["previous"] == []  # one job ever
