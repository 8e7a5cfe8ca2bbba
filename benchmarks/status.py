"""`ftc status` at team scale: 10,000 run folders of several owners, side by side with a bare
`squeue` + `sacct` for the same jobs, in one run.

    eval "$(bash .ci/slurm.sh env)"; python benchmarks/status.py [--runs 10000] [--owners 5] [--repeat 3]

Targets (issue 18): the caller's runs (the default listing) under 1 s, `--all-users` under 3 s, each
the median of `--repeat` runs of `ftc status` as a process. The bare Slurm queries are what any
listing must wait for; the ratio says what ftc adds. Run as root: the folders are given to
`--owners` uids (root and others), as on a shared root. Every run has job.json (a Slurm job id
that the controller does not know, so sacct answers from accounting and nothing is remembered),
status.json and plan.json, as a submitted run has.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_JOB = 900_000_000


def fill(root: Path, runs: int, owners: int) -> int:
    """`runs` folders, <namespace>/<model>-<name>/<run id>, owned in turn by uid 0 and owners-1 others;
    returns how many are the caller's."""
    uids = [0] + [60_000 + i for i in range(owners - 1)]
    mine = 0
    for i in range(runs):
        uid = uids[i % owners]
        mine += uid == os.getuid()
        folder = root / f"team{uid}" / f"tiny-llama-task{i % 50}" / f"{i:010x}"
        folder.mkdir(parents=True)
        (folder / "logs").mkdir()
        job = str(FIRST_JOB + i)
        (folder / "plan.json").write_text(json.dumps({"run_id": folder.name, "run_dir": str(folder)}))
        (folder / "job.json").write_text(json.dumps({"executor": "slurm", "job": job, "job_id": job, "owner": "x",
                                                     "state": "SUBMITTED", "previous": []}))
        (folder / "status.json").write_text(json.dumps({"state": "completed", "step": 10, "max_steps": 10,
                                                        "percent": 100.0, "train_loss": 1.25, "elapsed_s": 60}))
        if uid:
            for path in (folder, *folder.iterdir()):
                os.lchown(path, uid, uid)
    return mine


def timed(command: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the child, the result): CPU time is steadier on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("status benchmark: run as root (it gives the run folders to several owners)", file=sys.stderr)
        return 2
    if not shutil.which("squeue") or not shutil.which("sacct"):
        print("status benchmark: no squeue/sacct; eval \"$(bash .ci/slurm.sh env)\" first", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="ftc-status-bench-"))
    try:
        root = base / "runs"
        start = time.perf_counter()
        mine = fill(root, options.runs, options.owners)
        print(f"{options.runs:,} run folders of {options.owners} owners ({mine:,} the caller's) "
              f"made in {time.perf_counter() - start:.1f} s")
        env = {**os.environ, "FTC_OUTPUT_ROOT": str(root)}
        ids = ",".join(str(FIRST_JOB + i) for i in range(options.runs))
        mine_ids = ",".join(str(FIRST_JOB + i) for i in range(0, options.runs, options.owners))
        ftc = [sys.executable, "-m", "ftc", "status"]
        cases = {
            "squeue + sacct, the caller's jobs": [["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%M"],
                                                  ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", mine_ids]],
            "squeue + sacct, every job": [["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%M"],
                                          ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ids]],
            "ftc status (the caller's runs)": [ftc],
            "ftc status --all-users": [ftc + ["--all-users"]],
        }
        medians = {}
        for name, commands in cases.items():
            times, cpus = [], []
            for _ in range(options.repeat):
                total = cpu_total = 0.0
                for command in commands:
                    seconds, cpu, done = timed(command, env)
                    cpu_total += cpu
                    if done.returncode != 0:
                        print(f"{name}: {' '.join(command[:4])} failed: {done.stderr.strip()[:300]}", file=sys.stderr)
                        return 1
                    total += seconds
                times.append(total)
                cpus.append(cpu_total)
            medians[name] = statistics.median(times)
            rows = len(done.stdout.splitlines())
            print(f"{name:<36} {medians[name]:6.2f} s wall, {statistics.median(cpus):5.2f} s CPU "
                  f"(medians of {options.repeat}; {rows:,} lines; load average {os.getloadavg()[0]:.1f})")
        own, every = medians["ftc status (the caller's runs)"], medians["ftc status --all-users"]
        bare_own, bare_every = medians["squeue + sacct, the caller's jobs"], medians["squeue + sacct, every job"]
        print(f"caller's runs: {own:.2f} s (target < 1 s), {own / bare_own:.1f}x the bare queries; "
              f"--all-users: {every:.2f} s (target < 3 s), {every / bare_every:.1f}x the bare queries")
        return 0 if own < 1.0 and every < 3.0 else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
