"""Why a run failed, in words: the job's exit code, Slurm's state, and the first error line of its log."""

from __future__ import annotations

import re
from pathlib import Path

from ftc.compiler import records

LOG_SCAN_BYTES = 1 << 20  # the tail of the log that is searched (the last attempt of a requeued job)
EXIT_MEANINGS = {
    2: "ftc refused the plan or its input",
    69: "the container runtime is missing on the node (the log's error line names it)",
    126: "a command could not be executed",
    127: "command not found: a setup line or the launcher is missing on the node",
    130: "interrupted",
    134: "aborted (SIGABRT)",
    137: "killed by SIGKILL: out of memory, or the kill after a cancel or the time limit",
    139: "segmentation fault",
    143: "terminated by SIGTERM",
}
STATE_MEANINGS = {
    "out of memory": "the kernel's OOM killer ended it (ask for more memory, or a smaller micro batch)",
    "timeout": "the job reached its time limit",
    "node fail": "a node of the job stopped answering",
}
SLURM_WRAPPERS = ("srun:", "slurmstepd:")
ERROR_LINE = re.compile(
    r"command not found|No such file or directory|CUDA out of memory|OutOfMemoryError|out of memory|oom[-_ ]kill"
    r"|^\s*\w+(\.\w+)*(Error|Exception|Interrupt)\b:?|\berror:|Killed|Segmentation fault|DUE TO TIME LIMIT",
    re.IGNORECASE,
)




def from_job_end(end: dict) -> tuple[str, str]:
    """(state, reason) from the job script's end record."""
    if end["state"] == "completed":
        return "completed", ""
    if end["state"] == "terminated":
        return "cancelled", "terminated by Slurm: scancel, the time limit or preemption"
    return "failed", f"exit code {end['exit_code']}"


def first_error(log: Path, run_dir: Path) -> str:
    """The first line of the log's tail that reads like an error (`module: command not found`, a
    Python exception line, `CUDA out of memory`); empty when none. Reads a bounded tail of a regular
    file inside the run folder only."""
    try:
        data = (records.read_tail(log, LOG_SCAN_BYTES, inside=run_dir) or ("", False))[0]
    except records.RecordError:
        return ""
    found = [line.strip() for line in data.splitlines()
             if ERROR_LINE.search(line) and "warning" not in line.lower() and not line.startswith("== ftc")]
    # srun's and slurmstepd's own lines only report the task's exit, and can land before its output
    own = [line for line in found if not line.startswith(SLURM_WRAPPERS)]
    return (own or found or [""])[0]


def meaning(reason: str) -> str:
    """What a short failure reason (`exit code 137`, `timeout`) means, or empty."""
    match = re.fullmatch(r"exit code (\d+)", reason)
    if match:
        return EXIT_MEANINGS.get(int(match.group(1)), "")
    return STATE_MEANINGS.get(reason, "")


HARD_ENDS = ("timeout", "node fail", "out of memory")


def resume_note(run_dir: Path) -> str:
    """What submitting the run again does, honestly: the newest complete checkpoint, or none."""
    from ftc.runtime.checkpoints import last_complete  # no torch: the login node may import it

    newest = last_complete(run_dir)
    if newest is None:
        return "no checkpoint was saved, it starts over"
    return f"it resumes from {newest.name}, the newest complete checkpoint (verified before use)"


def explain(view) -> None:
    """What the failure means, and the first error line of the runtime's status or of the log."""
    view.why = meaning(view.reason)
    if view.reason in HARD_ENDS:
        view.why = f"{view.why}; submitted again, {resume_note(view.run_dir)}"
    if view.status.get("error"):
        view.error_line = view.status["error"].splitlines()[0] if view.status["error"] else ""
    elif view.log is not None:
        view.error_line = first_error(view.log, view.run_dir)
