"""Job records and run states: what a run folder plus Slurm (or the local process) say about a run.

A run folder with a plan and no job.json is `created`; otherwise job.json names the last job that
ran it, and its state comes from Slurm (sacct, then squeue, then scontrol), or for a local run from
the process and its exit record, with the runtime's status.json as the last word when Slurm forgot.
States use NeMo Customizer's words: created, pending, running, completed, failed, cancelled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ftc.compiler.records import JOB_FILE, STATUS_FILE, read_json, read_record
from ftc.compiler.submit import slurm

ACTIVE = ("pending", "running")

SLURM_STATES = {
    **dict.fromkeys(("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"), "pending"),
    **dict.fromkeys(("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"), "running"),
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
    **dict.fromkeys(("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
                     "SPECIAL_EXIT", "REVOKED"), "failed"),
}
RUNTIME_STATES = {"running": "running", "completed": "completed", "failed": "failed",
                  "cancelled": "cancelled", "preempted": "cancelled"}


def slurm_ref(job_id: str, array_index: int | None) -> str:
    return job_id if array_index is None else f"{job_id}_{array_index}"


def slurm_state(info: slurm.JobInfo) -> tuple[str, str]:
    """Slurm's state -> (Customizer state, reason); e.g. TIMEOUT -> ('failed', 'timeout')."""
    state = SLURM_STATES.get(info.state, "unknown")
    if state == "failed":
        if info.state == "FAILED":
            code = info.exit_code.split(":")[0]
            return state, f"exit code {code}" if code not in ("", "0") else "failed"
        return state, info.state.lower().replace("_", " ")
    if state == "pending":
        return state, "requeued" if info.state.startswith("REQUEUE") else info.reason
    return state, ""


def seconds(elapsed: str) -> float | None:
    """Slurm's [D-][HH:]MM:SS -> seconds."""
    try:
        days, _, clock = elapsed.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
    except ValueError:
        return None
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def clock(value: float | None) -> str:
    if value is None:
        return "-"
    value = int(value)
    days, rest = divmod(value, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


@dataclass
class RunView:
    """One run as `status` shows it."""

    run_dir: Path
    plan: dict
    record: dict | None
    status: dict = field(default_factory=dict)
    state: str = "created"
    reason: str = ""
    source: str = ""
    elapsed_s: float | None = None

    @property
    def run_id(self) -> str:
        return self.plan.get("run_id", self.run_dir.name)

    @property
    def name(self) -> str:
        return self.run_dir.parent.name  # <model>-<name>: tells the same task on two models apart

    @property
    def job(self) -> str:
        if not self.record:
            return "-"
        return self.record.get("job") or "-"

    @property
    def label(self) -> str:
        return f"{self.state} ({self.reason})" if self.state == "failed" and self.reason else self.state


def load(run_dir: Path) -> RunView:
    run_dir = Path(run_dir)
    return RunView(run_dir, read_json(run_dir / "plan.json") or {}, read_record(run_dir),
                   read_json(run_dir / STATUS_FILE) or {})


def resolve_states(views: list[RunView]) -> list[RunView]:
    """Fill in each view's state; one batch of Slurm queries for all Slurm runs."""
    refs = [v.record["job"] for v in views if v.record and v.record.get("executor") == "slurm" and v.record.get("job")]
    infos = slurm.job_infos(refs) if refs else {}
    for view in views:
        record = view.record
        if not record:
            continue
        if record.get("executor") == "local":
            from ftc.compiler.submit import local

            view.state, view.reason = local.state(view.run_dir, record, view.status)
            view.source = "local process"
        else:
            info = infos.get(record.get("job", ""))
            if info is not None:
                view.state, view.reason = slurm_state(info)
                view.source = info.source
                view.elapsed_s = seconds(info.elapsed)
            else:
                runtime = view.status.get("state")
                view.state = RUNTIME_STATES.get(runtime, "unknown")
                view.source = "status.json (Slurm has no record of the job)" if runtime else "nothing: Slurm has no record"
        if view.status.get("elapsed_s") is not None and (view.elapsed_s is None or view.state != "running"):
            view.elapsed_s = float(view.status["elapsed_s"])
    return views


def output_root(option: str | None = None) -> Path:
    return Path(option or os.environ.get("FTC_OUTPUT_ROOT") or "runs")


def find_runs(root: Path) -> list[Path]:
    """Run folders under root (<namespace>/<model>-<name>/<run_id>/plan.json), least recently touched first."""
    folders = [p.parent for p in root.glob("*/*/*/plan.json")]

    def touched(folder: Path) -> float:
        for name in (JOB_FILE, "plan.json"):
            try:
                return (folder / name).stat().st_mtime
            except OSError:
                continue
        return 0.0

    return sorted(folders, key=touched)
