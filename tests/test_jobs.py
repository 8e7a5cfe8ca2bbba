"""Job records, state mapping, run lookup, status output, refusal lines and sweep scripts, without Slurm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftc.compiler import records
from ftc.compiler.driver import compile_point
from ftc.compiler.errors import UserError
from ftc.compiler.runs import jobs, runstate
from ftc.compiler.submit import local, slurm
from ftc.compiler.submit import submitter as submit
from ftc.compiler.submit.folder import write_run
from ftc.compiler.submit.slurm import JobInfo, StatusAnswer


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def compiled(root: Path, *overrides: str):
    _, run = compile_point([f"output_root={root}", *overrides])
    write_run(run)
    return run


@pytest.fixture(scope="module")
def slurm_runs(root):
    """Two points of a Slurm sweep on the example cluster (compiled only)."""
    return [compiled(root, "cluster=example", "name=pair", f"method.learning_rate={lr}") for lr in ("1e-4", "2e-4")]


@pytest.mark.parametrize(
    "slurm_state,expected",
    [
        ("PENDING", "pending"), ("CONFIGURING", "pending"), ("REQUEUED", "pending"),
        ("RUNNING", "running"), ("COMPLETING", "running"), ("SUSPENDED", "running"),
        ("COMPLETED", "completed"), ("CANCELLED", "cancelled"),
        ("FAILED", "failed (exit code 3)"), ("TIMEOUT", "failed (timeout)"), ("NODE_FAIL", "failed (node fail)"),
        ("OUT_OF_MEMORY", "failed (out of memory)"), ("PREEMPTED", "failed (preempted)"),
        ("BOOT_FAIL", "failed (boot fail)"), ("DEADLINE", "failed (deadline)"),
    ],
)
def test_slurm_states_in_customizer_words(slurm_state, expected):
    state, reason = runstate.slurm_state(JobInfo(slurm_state, exit_code="3:0"))
    assert (f"{state} ({reason})" if state == "failed" else state) == expected


def test_sacct_and_squeue_text_parsing():
    text = "\n".join([
        "12_[2-3%2]|PENDING|JobArrayTaskLimit|00:00:00|0:0",
        "12_0|RUNNING|None|00:00:07|0:0",
        "13|CANCELLED by 0|None|00:01:00|0:15",
        "14|FAILED|NonZeroExitCode|00:00:05|3:0",
    ])
    rows = slurm._parse_table("JobID|State|Reason|Elapsed|ExitCode", text, "sacct")
    assert rows["12_3"].state == "PENDING" and rows["12_3"].reason == "JobArrayTaskLimit"
    assert rows["12_0"] == JobInfo("RUNNING", "", "00:00:07", "0:0", "sacct")
    assert rows["13"].state == "CANCELLED"
    assert runstate.slurm_state(rows["14"]) == ("failed", "exit code 3")


@pytest.mark.parametrize(
    "stderr,message",
    [
        ("sbatch: error: invalid partition specified: x\nallocation failure: Invalid partition name specified\n",
         "Invalid partition name specified"),
        ("sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
         "Requested node configuration is not available"),
        ("sbatch: warning: something\nsbatch: error: Batch job submission failed: Invalid feature specification\n"
         "sbatch: warning: later\n", "Invalid feature specification"),
    ],
)
def test_slurm_error_message(stderr, message):
    assert slurm.error_message(stderr) == message


@pytest.mark.parametrize(
    "message,field",
    [
        ("Invalid partition name specified", "cluster.partition: Slurm refused partition 'h100'"),
        ("Requested node configuration is not available", "resources.gpus_per_node: Slurm cannot place 1 node x"),
        ("Requested time limit is invalid (missing or exceeds some limit)", "resources.time: Slurm refused --time="),
        ("Node count specification invalid", "resources.nodes: Slurm refused"),
        ("Invalid feature specification", "cluster.partitions.h100.constraint: Slurm refused constraint 'h100'"),
        ("Invalid account or account/partition combination specified", "cluster.account: Slurm refused account 'ml'"),
        ("Something new", "cluster: Slurm refused the job: Something new"),
    ],
)
def test_refusal_names_the_field(slurm_runs, message, field):
    line = submit.refusal(slurm_runs[0].plan, message)
    assert line.startswith(field) and "\n" not in line


def test_sweep_points_share_directives_and_take_the_longest_time(slurm_runs, root):
    flags = dict(submit.common_directives(slurm_runs))
    assert "job-name" not in flags and "output" not in flags
    longer = compiled(root, "cluster=example", "name=pair", "resources.time=2-00:00:00")
    assert dict(submit.common_directives([slurm_runs[0], longer]))["time"] == "2-00:00:00"
    wider = compiled(root, "cluster=example", "name=pair", "resources.gpus_per_node=2")
    with pytest.raises(UserError) as error:
        submit.common_directives([slurm_runs[0], wider])
    assert len(error.value.problems) == 1 and "--gpus-per-node=2" in error.value.problems[0]


def test_sweep_script_runs_each_point_script(slurm_runs, tmp_path):
    script = submit.render_sweep(slurm_runs, "abc", tmp_path / "sweep dir")
    assert "#SBATCH --array=0-1%2" in script
    assert f"#SBATCH --output='{tmp_path}/sweep dir/logs/slurm-%A_%a.out'" in script
    for run in slurm_runs:
        assert f"  {run.plan.run_dir}\n" in script
    assert script.rstrip().endswith('exec bash "$run_dir/job.sbatch"')
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "--severity=style", "-"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stdout


def test_states_from_records(slurm_runs, monkeypatch):
    run_dir = Path(slurm_runs[0].plan.run_dir)
    assert runstate.resolve_states([runstate.load(run_dir)])[0].state == "created"
    records.write_record(run_dir, records.new_record(run_dir, "slurm", job="41", job_id="41", array_index=None))
    monkeypatch.setattr(slurm, "job_infos", lambda refs: StatusAnswer({"41": JobInfo("TIMEOUT", source="sacct")}, []))
    assert runstate.resolve_states([runstate.load(run_dir)])[0].label == "failed (timeout)"
    monkeypatch.setattr(slurm, "job_infos", lambda refs: StatusAnswer({}, []))
    assert runstate.resolve_states([runstate.load(run_dir)])[0].state == "unknown"
    (run_dir / "status.json").write_text(json.dumps({"state": "completed", "percent": 100.0, "train_loss": 0.5}))
    view = runstate.resolve_states([runstate.load(run_dir)])[0]
    assert view.state == "completed" and "status.json" in view.source
    again = records.new_record(run_dir, "slurm", job="42")
    assert again["previous"] == ["41"]


def test_same_run_id_is_not_run_twice(slurm_runs, monkeypatch, capsys):
    plan = slurm_runs[1].plan
    run_dir = Path(plan.run_dir)
    records.write_record(run_dir, records.new_record(run_dir, "slurm", job="50", job_id="50"))
    monkeypatch.setattr(slurm, "job_infos", lambda refs: StatusAnswer({"50": JobInfo("RUNNING")}, []))
    with pytest.raises(UserError) as error:
        submit.still_to_run(plan)
    assert "already running as job 50" in error.value.problems[0]
    monkeypatch.setattr(slurm, "job_infos", lambda refs: StatusAnswer({"50": JobInfo("COMPLETED")}, []))
    assert submit.still_to_run(plan) is False and "already completed" in capsys.readouterr().out
    monkeypatch.setattr(slurm, "job_infos", lambda refs: StatusAnswer({"50": JobInfo("CANCELLED")}, []))
    assert submit.still_to_run(plan) is True and "resubmitting" in capsys.readouterr().out


def test_resolve_by_id_prefix_and_job(tmp_path):
    for run_id, job in (("abc123", "7_0"), ("abd456", "7_1"), ("fed789", None)):
        folder = tmp_path / "default" / "demo" / run_id
        folder.mkdir(parents=True)
        (folder / "plan.json").write_text(json.dumps({"run_id": run_id, "job": {"name": "demo"}}))
        if job:
            (folder / "job.json").write_text(json.dumps({"executor": "slurm", "job": job, "job_id": "7",
                                                         "array_index": int(job[-1]), "sweep": str(tmp_path)}))
    assert [p.name for p in jobs.resolve("abc123", tmp_path)] == ["abc123"]
    assert [p.name for p in jobs.resolve("fe", tmp_path)] == ["fed789"]
    assert [p.name for p in jobs.resolve("7_1", tmp_path)] == ["abd456"]
    assert sorted(p.name for p in jobs.resolve("7", tmp_path)) == ["abc123", "abd456"]
    with pytest.raises(UserError, match="matches 2 runs"):
        jobs.resolve("ab", tmp_path)
    with pytest.raises(UserError, match="no run matches 'nope'"):
        jobs.resolve("nope", tmp_path)
    with pytest.raises(UserError, match="names 2 runs"):
        jobs.logs_command(["7", "--root", str(tmp_path)])
    with pytest.raises(UserError, match="never submitted"):
        jobs.logs_command(["fed", "--root", str(tmp_path)])


def test_status_table_and_detail(root, monkeypatch, capsys):
    run = compiled(root, "cluster=example", "name=shown")
    run_dir = Path(run.plan.run_dir)
    records.write_record(run_dir, records.new_record(run_dir, "slurm", job="60", job_id="60",
                                                       log=str(run_dir / "logs" / "slurm-60.out")))
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "step": 5, "max_steps": 10, "percent": 50.0,
                                                     "elapsed_s": 75, "train_loss": 1.5, "val_loss": 1.75}))
    (run_dir / "eval.json").write_text(json.dumps({"before": {"exact_match": 0.1}, "after": {"exact_match": 0.4}}))
    (run_dir / "outputs.json").write_text(json.dumps({"paths": {"adapter": str(run_dir / "adapter")}}))
    monkeypatch.setattr(slurm, "job_infos", lambda refs: StatusAnswer({"60": JobInfo("RUNNING", elapsed="00:01:20", source="squeue")}, []))
    assert jobs.status_command(["--root", str(root)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if run.plan.run_id in line)
    assert row.split()[:4] == ["tiny-llama-shown", run.plan.run_id, "60", "running"] and "50%" in row and "1.75" in row
    assert jobs.status_command([run.plan.run_id[:6], "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "state      running [from squeue]" in out and "progress   50%: step 5/10" in out
    assert "loss       train 1.5, val 1.75" in out and "exact_match 0.1 -> 0.4" in out
    assert f"output     adapter: {run_dir / 'adapter'}" in out and "slurm-60.out" in out


def test_local_states(tmp_path):
    record = {"executor": "local", "pid": 4_190_000, "start_ticks": 1}
    exit_file = tmp_path / local.EXIT
    exit_file.parent.mkdir()
    assert local.state(tmp_path, record, {}) == ("failed", "the process ended without an exit record")
    assert local.state(tmp_path, record, {"state": "completed"}) == ("completed", "")
    exit_file.write_text(json.dumps({"pid": record["pid"], "returncode": 3}))
    assert local.state(tmp_path, record, {}) == ("failed", "exit code 3")
    exit_file.write_text(json.dumps({"pid": record["pid"], "returncode": 0, "interrupted": True}))
    assert local.state(tmp_path, record, {}) == ("cancelled", "")
    me = {"pid": os.getpid(), "start_ticks": local._start_ticks(os.getpid())}
    assert not local.alive(me, tmp_path)  # a live process that is not ftc's runtime or supervisor
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "ftc.runtime", str(tmp_path)])
    try:
        ours = {"pid": fake.pid, "start_ticks": None}
        for _ in range(50):
            ours["start_ticks"] = local._start_ticks(fake.pid)
            if b"ftc.runtime" in Path(f"/proc/{fake.pid}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        assert local.state(tmp_path, ours, {}) == ("running", "")
        assert not local.alive({**ours, "start_ticks": ours["start_ticks"] + 1}, tmp_path)  # a reused pid
        assert not local.alive(ours, tmp_path / "other")  # a process of another run folder
    finally:
        fake.kill()
        fake.wait()
