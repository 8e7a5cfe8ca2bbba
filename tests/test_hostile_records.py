"""Damaged and tampered run records (tests/hostile/records.yaml), through `python -m ftc status|logs|cancel`.

Each case must end cleanly: the documented exit code, one `ftc: error:` line when it refuses, no
traceback, nothing from outside the run folder printed, no terminal control byte, no scancel, no
signal to the canary process a forged record points at. The Slurm clients on PATH are recorders
(an empty queue; scancel writes what it was asked), so a case can prove that nothing was cancelled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
CASES = yaml.safe_load((HERE / "hostile" / "records.yaml").read_text())
RUN_ID = "5eed5eed5e"
SECRET = "SECRET-OUTSIDE-THE-RUN-FOLDER"
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\n'


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A dry-run plan to copy, an outside file and folder, a canary process and the recording Slurm clients."""
    base = tmp_path_factory.mktemp("hostile-records")
    env = {**os.environ, "FTC_OUTPUT_ROOT": str(base / "template")}
    env.pop("FTC_SITE_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "ftc", "cluster=example", "model=tiny", "dry_run=true", "name=hostile"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (plan,) = (base / "template").glob("*/*/*/plan.json")
    (base / "outside.txt").write_text(SECRET + "\n")
    (base / "outside-dir").mkdir()
    (base / "outside-dir" / "slurm-12345.out").write_text(SECRET + "\n")
    (base / "outside-dir" / "local-exit.json").write_text('{"pid": 4190000, "returncode": 0}\n')
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for client in ("squeue", "sacct", "scancel", "scontrol", "sbatch"):
        (bin_dir / client).write_text(RECORDER.format(log=base / "slurm-calls.log"))
        (bin_dir / client).chmod(0o755)
    canary = subprocess.Popen(["sleep", "600"])
    yield {"base": base, "plan": plan.parent, "bin": bin_dir, "canary": canary}
    canary.kill()
    canary.wait()


def _ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _write(path: Path, spec, ctx: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ("fifo", "symlink", "bytes", "nested", "latin1"):
        kind, value = next(iter(spec.items()))
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "symlink":
            target = {"outside": ctx["base"] / "outside.txt", "outside-dir": ctx["base"] / "outside-dir"}.get(value, value)
            path.symlink_to(target)
        elif kind == "bytes":
            path.write_text('{"pad": "' + "x" * value + '"}')
        elif kind == "nested":
            path.write_text("[" * value + "]" * value)
        else:
            path.write_bytes(value.encode("latin-1"))
        return
    text = spec if isinstance(spec, str) else json.dumps(spec)
    canary = ctx["canary"].pid
    text = (text.replace('"$CANARY_PID_TEXT"', f'"{canary}"').replace('"$CANARY_PID"', str(canary))
            .replace('"$CANARY_TICKS"', str(_ticks(canary))).replace("$OUTSIDE", str(ctx["base"] / "outside.txt")))
    path.write_text(text)


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


def _run_folder(root: Path, ctx: dict, run_id: str, case: dict, parent: str = "hostile", copy: bool = False) -> Path:
    run_dir = root / "default" / parent / run_id
    shutil.copytree(ctx["plan"], run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["run_id"], plan["run_dir"] = run_id, str(run_dir)
    for dotted, value in (case.get("plan_copy" if copy else "plan") or {}).items():
        _set(plan, dotted, value)
    (run_dir / "plan.json").write_text(json.dumps(plan))
    (run_dir / "job.json").write_text(json.dumps({"executor": "slurm", "job": "12345", "job_id": "12345"}))
    for name, spec in (case.get("write_copy" if copy else "write") or {}).items():
        _write(run_dir / name, spec, ctx)
    return run_dir


def plant(root: Path, ctx: dict, case: dict) -> None:
    """The case's run folder under root, with its twin or look-alike copy."""
    _run_folder(root, ctx, RUN_ID, case)
    if case.get("twin"):
        _run_folder(root, ctx, "7a1e7a1e7a", case)
    if case.get("lookalike"):
        _run_folder(root, ctx, RUN_ID, case, parent=case["lookalike"], copy=True)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_record_case_ends_cleanly(case, base, tmp_path):
    root = tmp_path / "runs"
    plant(root, base, case)
    calls = base["base"] / "slurm-calls.log"
    calls.unlink(missing_ok=True)
    args = [RUN_ID if a == "RUN" else a for a in case.get("run", [])]
    env = {**os.environ, "PATH": f"{base['bin']}{os.pathsep}{os.environ['PATH']}", "FTC_OUTPUT_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "ftc", *args], capture_output=True, text=True, env=env, timeout=60,
                          errors="surrogateescape")
    said = proc.stdout + proc.stderr
    assert proc.returncode == case["exit"], said
    assert "Traceback" not in said
    if case["exit"] == 2:
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ftc: error: "), proc.stderr
    assert case["says"] in said, said
    assert not case.get("not_says") or case["not_says"] not in said, said
    assert not any(byte in said for byte in ("\x1b", "\x07", "\x9b", "\r")), repr(said)
    assert SECRET not in said
    scancels = [line for line in (calls.read_text().splitlines() if calls.exists() else []) if line.startswith("scancel")]
    assert not scancels
    assert base["canary"].poll() is None, "the canary process was signalled"


def test_corpus_is_large_enough():
    assert len(CASES) >= 30 and len({c["case"] for c in CASES}) == len(CASES)
