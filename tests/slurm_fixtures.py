"""Fixtures for tests that submit to the local Slurm cluster of .ci/slurm.sh, through the ftc CLI.

Until the runtime trains for real, jobs launch FAKE_TORCHRUN: a `torchrun` put first on PATH (sbatch's
default --export=ALL carries PATH into the job and srun carries it to every node). It records its
arguments, host and SLURM_NODEID in RUN_DIR/fake-torchrun/, writes status.json like the runtime and
sleeps FAKE_TORCHRUN_SECONDS. Only these tests use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CI_SITE = REPO / ".ci" / "site"
CLIENT_TIMEOUT = 20
FINAL = ("completed", "failed", "cancelled")

FAKE_TORCHRUN = r"""#!/bin/bash
# FAKE torchrun for ftc's Slurm tests only: records how it was launched, then pretends to train.
run_dir="${@: -1}"
node="${SLURM_NODEID:-0}"
mkdir -p "$run_dir/fake-torchrun"
args=$(printf '"%s",' "$@")
printf '{"args": [%s], "host": "%s", "slurmd_node": "%s", "node_id": "%s", "nnodes": "%s", "job": "%s"}\n' \
  "${args%,}" "$(hostname)" "${SLURMD_NODENAME:-}" "$node" "${SLURM_JOB_NUM_NODES:-}" "${SLURM_JOB_ID:-}" \
  > "$run_dir/fake-torchrun/node-$node.json"
echo "FAKE torchrun on ${SLURMD_NODENAME:-$(hostname)} (node $node): $*"
status() { [ "$node" = 0 ] && printf '%s\n' "$1" > "$run_dir/status.json.tmp" && mv "$run_dir/status.json.tmp" "$run_dir/status.json"; true; }
status '{"state": "running", "step": 1, "max_steps": 4, "percent": 25.0, "elapsed_s": 1.0, "train_loss": 2.5}'
sleep "${FAKE_TORCHRUN_SECONDS:-2}"
status '{"state": "completed", "step": 4, "max_steps": 4, "percent": 100.0, "elapsed_s": 2.0, "train_loss": 1.25, "val_loss": 1.5}'
echo "FAKE torchrun done"
"""


def require_slurm() -> None:
    if not os.environ.get("SLURM_CONF"):
        msg = 'SLURM_CONF is not set (start the cluster: .ci/slurm.sh start; eval "$(.ci/slurm.sh env)")'
        if os.environ.get("FTC_REQUIRE_SLURM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def slurm(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """A Slurm client command under `timeout` (a client blocks while slurmctld is down)."""
    proc = subprocess.run(["timeout", str(CLIENT_TIMEOUT), *args], capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT + 10)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_dataset(folder: Path, rows: int = 32) -> Path:
    for split, count in (("training", rows), ("validation", 8)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"prompt": f"question {i}?", "completion": f"answer {i}."}) for i in range(count)]
        (folder / split / "part-0.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@dataclass
class Cli:
    code: int
    out: str
    err: str


@dataclass
class SlurmSite:
    """Runs `python -m ftc` against the CI site with FAKE_TORCHRUN on PATH."""

    root: Path
    data: Path
    env: dict

    def ftc(self, *args: str, timeout: float = 120, **env: str) -> Cli:
        proc = subprocess.run([sys.executable, "-m", "ftc", *args], capture_output=True, text=True,
                              env={**self.env, **env}, timeout=timeout, cwd=self.root.parent)
        return Cli(proc.returncode, proc.stdout, proc.stderr)

    def compile_args(self, *overrides: str) -> list[str]:
        return ["cluster=ci", f"data.path={self.data}", *overrides]

    def run_dir(self, cli: Cli) -> Path:
        for line in cli.out.splitlines():
            if line.startswith("run folder "):
                return Path(line.split(" ", 2)[2])
        raise AssertionError(f"no run folder in output:\n{cli.out}\n{cli.err}")

    def record(self, run_dir: Path) -> dict:
        return json.loads((run_dir / "job.json").read_text())

    def state(self, run: str) -> str:
        cli = self.ftc("status", run)
        assert cli.code == 0, cli.err
        for line in cli.out.splitlines():
            if line.startswith("state "):
                return line.split(None, 1)[1].split(" [from")[0]
        raise AssertionError(cli.out)

    def wait(self, run: str, until: tuple[str, ...] = FINAL, deadline: float = 90) -> tuple[str, list[str]]:
        """Poll `ftc status RUN` until its state starts with one of `until`; returns it and all states seen."""
        seen: list[str] = []
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            state = self.state(run)
            if not seen or seen[-1] != state:
                seen.append(state)
            if state.startswith(until):
                return state, seen
            time.sleep(0.5)
        raise AssertionError(f"run {run}: states {seen} after {deadline}s, wanted {until}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> SlurmSite:
    require_slurm()
    ping = slurm("scontrol", "ping")
    assert ping.returncode == 0 and "UP" in ping.stdout, f"slurmctld does not answer:\n{ping.stdout}{ping.stderr}"
    base = tmp_path_factory.mktemp("slurm-site")
    fake_bin = base / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "torchrun").write_text(FAKE_TORCHRUN)
    (fake_bin / "torchrun").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "FTC_SITE_CONFIG": str(CI_SITE),
        "FTC_OUTPUT_ROOT": str(base / "runs"),
        "FAKE_TORCHRUN_SECONDS": "2",
    }
    return SlurmSite(base / "runs", write_dataset(base / "data"), env)


@pytest.fixture
def jobs():
    """Slurm job ids a test queued; cancelled afterwards, whatever happened."""
    ids: list[str] = []
    yield ids
    if ids:
        slurm("scancel", *ids)


def queued_names() -> list[str]:
    return slurm("squeue", "-h", "-o", "%j").stdout.split()
