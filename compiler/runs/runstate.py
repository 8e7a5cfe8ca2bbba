"""Job records and run states: what a run folder plus Slurm (or the local process) say about a run.

A run folder with a plan and no job.json is `created`; otherwise job.json names the last job that
ran it, and its state comes from Slurm (one squeue and one sacct for all runs), then the job
script's own end record, then the last state Slurm gave (kept in the run folder for when the
controller does not answer), then the runtime's status.json; for a local run from the process and
its exit record. Every record is read through compiler/records.py: a damaged one is a problem line.
States use NeMo Customizer's words: created, pending, running, completed, failed, cancelled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.records import JOB_FILE
from ftc.compiler.runs import reasons
from ftc.compiler.runs.owner import owner_name, owner_uid
from ftc.compiler.submit import slurm

ACTIVE = ("pending", "running")
LAST_KNOWN_FILE = "logs/slurm-last-known.json"

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
    problems: list[str] = field(default_factory=list)
    error_line: str = ""
    why: str = ""

    misnamed: bool = False
    owner_uid: int | None = None

    @property
    def owner(self) -> str:
        return owner_name(self.owner_uid) if self.owner_uid is not None else "?"

    @property
    def mine(self) -> bool:
        return self.owner_uid == os.getuid()

    @property
    def unreadable(self) -> list[str]:
        """Records this user may not read: the owner's permissions, not damage."""
        return [p for p in self.problems if records.UNREADABLE in p]

    @property
    def run_id(self) -> str:
        """The folder's name: records.folder_problems checks that plan.json says the same."""
        return self.run_dir.name

    @property
    def name(self) -> str:
        return self.run_dir.parent.name  # <model>-<name>: tells the same task on two models apart

    @property
    def job(self) -> str:
        if not self.record:
            return "-"
        return self.record.get("job") or "-"

    @property
    def damaged(self) -> bool:
        """job.json is there but unusable: nothing may be signalled or resubmitted on its word."""
        return self.record is None and any(p.startswith(str(self.run_dir / JOB_FILE)) and records.UNREADABLE not in p
                                           for p in self.problems)

    @property
    def label(self) -> str:
        return f"{self.state} ({self.reason})" if self.state in ("failed", "unknown") and self.reason else self.state

    @property
    def log(self) -> Path | None:
        """The log this run's job writes, derived from the validated job id (never a path from the record)."""
        if not self.record or not self.record.get("job"):
            return None
        if self.record.get("executor") == "local":
            return self.run_dir / "logs" / "local.out"
        return self.run_dir / "logs" / f"slurm-{self.record['job']}.out"


def load(run_dir: Path, plan: bool = True) -> RunView:
    """A run folder's records; without `plan`, plan.json is not read (a table names runs by their folders)."""
    run_dir = Path(run_dir)
    plan, problems = records.read_plan(run_dir) if plan else ({}, [])
    misnamed = records.folder_problems(run_dir, plan if plan else None)
    uid = owner_uid(run_dir)
    if misnamed:  # listed with its problem, never answered from
        return RunView(run_dir, {}, None, {}, state="unknown", reason="misnamed folder", problems=misnamed + problems,
                       misnamed=True, owner_uid=uid)
    record, job_problems = records.load_job(run_dir)
    status, status_problems = records.load(run_dir, records.STATUS_FILE, records.RunStatusRecord)
    return RunView(run_dir, plan, record, status, problems=problems + job_problems + status_problems, owner_uid=uid)


def _end_record(view: RunView) -> dict | None:
    """The job script's own record of how the current job ended (logs/job-end.json)."""
    end, problems = records.load(view.run_dir, records.JOB_END_FILE, records.JobEndRecord)
    view.problems += problems
    return end if end and end.get("job") == view.record.get("job") else None


def _last_known(view: RunView) -> dict | None:
    known, problems = records.load(view.run_dir, LAST_KNOWN_FILE, records.LastKnownRecord)
    view.problems += problems
    return known if known and known.get("job") == view.record.get("job") else None


def _remember(view: RunView, info: slurm.JobInfo) -> None:
    """Keep Slurm's answer in the run folder (only when it changed) for when the controller is down;
    only in the caller's own runs (ftc never writes into another user's run)."""
    if not view.mine:
        return
    known = {"job": view.record["job"], "state": info.state, "reason": info.reason, "exit_code": info.exit_code}
    old = records.read_json(view.run_dir / LAST_KNOWN_FILE) or {}
    if {k: old.get(k) for k in known} != known:
        try:
            records.write_json_record(view.run_dir / LAST_KNOWN_FILE,
                                      {**known, "elapsed": info.elapsed, "seen_at": records.now()})
        except OSError:
            pass


def _slurm_view(view: RunView, answer: slurm.StatusAnswer) -> None:
    ref = view.record.get("job") or ""
    info = answer.infos.get(ref)
    if info is not None:
        view.state, view.reason = slurm_state(info)
        view.source, view.elapsed_s = info.source, seconds(info.elapsed)
        _remember(view, info)
        end = _end_record(view) if view.state == "failed" and view.reason == "failed" else None
        if end is not None and end["state"] == "failed":
            view.reason = f"exit code {end['exit_code']}"
        return
    end = _end_record(view)
    if end is not None and end["state"] != "requeued":
        view.state, view.reason = reasons.from_job_end(end)
        view.source = "the job script's end record"
        return
    known = _last_known(view) if answer.silent else None
    if known is not None:
        info = slurm.JobInfo(known["state"], known.get("reason", ""), known.get("elapsed", ""),
                             known.get("exit_code", ""), "")
        view.state, view.reason = slurm_state(info)
        view.source = f"last known, {known.get('seen_at', '?')}"
        view.elapsed_s = seconds(info.elapsed)
        return
    runtime = view.status.get("state")
    view.state = RUNTIME_STATES.get(runtime, "unknown")
    if answer.silent:
        view.source = "status.json (Slurm does not answer)" if runtime else "nothing: Slurm does not answer"
    else:
        view.source = "status.json (Slurm has no record of the job)" if runtime else "nothing: Slurm has no record"


def resolve_states(views: list[RunView], notes: list[str] | None = None) -> list[RunView]:
    """Fill in each view's state; one batch of Slurm queries for all Slurm runs.

    `notes` gets a line for each Slurm client that did not answer."""
    refs = [v.record["job"] for v in views if v.record and v.record.get("executor") == "slurm" and v.record.get("job")]
    answer = slurm.job_infos(refs) if refs else slurm.StatusAnswer({}, [])
    for view in views:
        record = view.record
        if view.misnamed:
            continue
        if not record:
            if any(p.startswith(str(view.run_dir / JOB_FILE)) for p in view.unreadable):
                view.state, view.reason, view.source = "unknown", records.UNREADABLE, "nothing: job.json is private"
            elif view.damaged:
                view.state, view.reason, view.source = "unknown", "damaged job.json", "nothing: job.json is unusable"
            continue
        if record.get("executor") == "local":
            from ftc.compiler.submit import local

            view.state, view.reason = local.state(view.run_dir, record, view.status, view.problems)
            view.source = "local process"
        else:
            _slurm_view(view, answer)
        if view.status.get("elapsed_s") is not None and (view.elapsed_s is None or view.state != "running"):
            view.elapsed_s = float(view.status["elapsed_s"])
        if view.state == "failed":
            reasons.explain(view)
    if notes is not None:
        notes += answer.silent
    return views


def output_root(option: str | None = None) -> Path:
    """--root / output_root= (else $FTC_OUTPUT_ROOT, else ./runs): a path, one printable line."""
    if option is not None:
        from ftc.compiler.errors import UserError
        from ftc.compiler.runs.terminal import printable

        if not option.strip():
            raise UserError("output_root: empty; name the folder the runs are in (default $FTC_OUTPUT_ROOT or ./runs)")
        if len(option) > 4096 or "\x00" in option or not option.isprintable():
            raise UserError(f"output_root: {printable(option, 60)} is not a folder name (control characters, "
                            "or longer than a path may be)")
    return Path(option or os.environ.get("FTC_OUTPUT_ROOT") or "runs")


def find_runs(root: Path, uid: int | None = None, others: list[str] | None = None) -> list[Path]:
    """Run folders under root (<namespace>/<model>-<name>/<run_id>/plan.json), least recently touched
    first; with `uid`, only the folders that user owns (a stat each: no record of another's run is read),
    the others' folders added to `others`."""
    found = []
    for namespace in _folders(str(root)):
        for group in _folders(namespace.path):
            for run in _folders(group.path):
                try:
                    if uid is not None and run.stat(follow_symlinks=False).st_uid != uid:
                        if others is not None:
                            others.append(run.path)
                        continue
                    os.stat(os.path.join(run.path, records.PLAN_FILE), follow_symlinks=False)
                except OSError:
                    continue
                found.append((_touched(run.path), run.path))
    found.sort()
    return [Path(path) for _, path in found]


def _folders(path: str) -> list[os.DirEntry]:
    """The sub-folders of `path` (no links: a run folder is never reached through one)."""
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _touched(folder: str) -> float:
    for name in (JOB_FILE, records.PLAN_FILE):
        try:
            return os.stat(os.path.join(folder, name)).st_mtime
        except OSError:
            continue
    return 0.0


def answerable(folders: list[Path]) -> list[Path]:
    """The run folders a run id may name: plain ASCII names (records.folder_problems)."""
    return [f for f in folders if not records.folder_problems(f)]


def ambiguous(run_id: str, folders: list[Path], root: Path) -> str | None:
    """The refusal when one run id names several folders (a copy under another name), else None."""
    if len(folders) < 2:
        return None
    where = ", ".join(ascii(str(f.parent.relative_to(root)))[1:-1] if f.is_relative_to(root) else ascii(str(f))[1:-1]
                      for f in folders[:3])
    return f"run: {run_id!r} names {len(folders)} run folders ({where}); give the folder path"
