"""Thin calls to the Slurm clients, each under `timeout` (a client blocks while slurmctld is down).

Submission goes through submitit's own Slurm submission path (`SlurmExecutor._submit_command`),
with ftc's rendered script as the submission file, byte for byte: no pickles and no submitit
wrapper run on the nodes. sacct/squeue answers are parsed by submitit's `SlurmInfoWatcher`,
which also expands pending array ranges like `12_[2-3%2]`.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLIENT_TIMEOUT = 30
NO_SBATCH = "sbatch not found: ftc submits to Slurm from a login node; use cluster=local to run here"


class SlurmError(Exception):
    """Slurm refused; the message is Slurm's own reason, without prefixes."""


class SlurmUnavailable(SlurmError):
    """No Slurm client here, or no answer from the controller: nothing was asked, nothing refused."""


def have(command: str) -> bool:
    return shutil.which(command) is not None


def call(*args: str, timeout: int = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a client; a missing binary or a timeout is an answer (rc 127 / 124), not an exception."""
    try:
        return subprocess.run(
            ["timeout", str(timeout), *args], capture_output=True, text=True, timeout=timeout + 10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(args), 124, "", str(exc))


def error_message(stderr: str) -> str:
    """Slurm's reason, without prefixes: the last line that is not a warning wins, e.g.
    `sbatch: error: Batch job submission failed: X` or `allocation failure: X` -> `X`."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "warning:" not in line]
    message = lines[-1] if lines else "no answer"
    for prefix in ("error:", "Batch job submission failed:", "allocation failure:"):
        if prefix in message:
            message = message.split(prefix, 1)[1].strip()
    return message


def _answered(returncode: int, what: str) -> None:
    if returncode == 124:
        raise SlurmUnavailable(f"Slurm did not answer {what} within {CLIENT_TIMEOUT} s (is slurmctld up? try scontrol ping)")
    if returncode == 127:
        raise SlurmUnavailable(f"{what.split()[0]} not found on PATH")


def test_only(script: Path) -> None:
    """`sbatch --test-only`: returns when Slurm could place the job, raises SlurmError otherwise."""
    if not have("sbatch"):
        raise SlurmUnavailable(NO_SBATCH)
    proc = call("sbatch", "--test-only", str(script))
    _answered(proc.returncode, "sbatch --test-only")
    if proc.returncode != 0 or " to start at " not in proc.stderr:
        raise SlurmError(error_message(proc.stderr or proc.stdout))


def _script_executor(folder: Path, script: str):
    from submitit.slurm.slurm import SlurmExecutor

    class ScriptExecutor(SlurmExecutor):
        """submitit's sbatch submission, with a finished script instead of a pickled function."""

        def _make_submission_file_text(self, command: str, uid: str) -> str:
            return script

        def _make_submission_command(self, submission_file_path: Path) -> list[str]:
            return ["timeout", str(CLIENT_TIMEOUT), "sbatch", str(submission_file_path)]

        @classmethod
        def affinity(cls) -> int:
            return 2 if have("sbatch") else -1

    return ScriptExecutor(folder)


def submit(script: str, folder: Path) -> tuple[str, Path]:
    """Submit `script` as is; returns the job id and the file submitit handed to sbatch.

    submitit keeps its copy as `<folder>/<job id>_submission.sh`: the exact bytes Slurm received.
    """
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    if not have("sbatch"):
        raise SlurmUnavailable(NO_SBATCH)
    folder.mkdir(parents=True, exist_ok=True)
    executor = _script_executor(folder, script)
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet):
            job = executor._submit_command("")
    except (FailedJobError, FailedSubmissionError) as exc:
        _answered(getattr(exc.__cause__, "returncode", 0), "sbatch")
        raise SlurmError(error_message(str(exc))) from None
    return job.job_id, Path(job.paths.submission_file)


@dataclass(frozen=True)
class JobInfo:
    """What Slurm says about one job (or one array task)."""

    state: str  # Slurm's word, e.g. RUNNING, CANCELLED, TIMEOUT
    reason: str = ""
    elapsed: str = ""
    exit_code: str = ""
    source: str = ""


def _parse_table(header: str, text: str, source: str) -> dict[str, JobInfo]:
    from submitit.slurm.slurm import SlurmInfoWatcher

    rows = SlurmInfoWatcher().read_info(header + "\n" + text)
    return {
        ref: JobInfo(
            state=(row.get("State") or "").split(" ")[0].rstrip("+"),
            reason="" if row.get("Reason") in (None, "None") else row["Reason"],
            elapsed=row.get("Elapsed", ""),
            exit_code=row.get("ExitCode", ""),
            source=source,
        )
        for ref, row in rows.items()
        if row.get("State")
    }


def _sacct(refs: list[str]) -> dict[str, JobInfo]:
    if not have("sacct"):
        return {}
    proc = call("sacct", "-X", "-n", "-P", "-o", "JobID,State,Reason,Elapsed,ExitCode", "-j", ",".join(refs))
    if proc.returncode != 0:
        return {}
    return _parse_table("JobID|State|Reason|Elapsed|ExitCode", proc.stdout, "sacct")


def _squeue(refs: list[str]) -> dict[str, JobInfo]:
    if not have("squeue"):
        return {}
    proc = call("squeue", "-h", "-t", "all", "-j", ",".join(refs), "-o", "%i|%T|%r|%M")
    if proc.returncode != 0:
        return {}
    return _parse_table("JobID|State|Reason|Elapsed", proc.stdout, "squeue")


def _scontrol(ref: str) -> JobInfo | None:
    if not have("scontrol"):
        return None
    proc = call("scontrol", "show", "job", ref)
    if proc.returncode != 0:
        return None
    fields = dict(re.findall(r"(\w+)=(\S*)", proc.stdout))
    if "JobState" not in fields:
        return None
    reason = fields.get("Reason", "")
    return JobInfo(fields["JobState"], "" if reason == "None" else reason, fields.get("RunTime", ""),
                   fields.get("ExitCode", ""), "scontrol")


def job_infos(refs: list[str]) -> dict[str, JobInfo]:
    """squeue first (the controller's live view, finished jobs included for MinJobAge), then sacct
    (lags the controller by a second or two, but remembers), then `scontrol show job`, ref by ref."""
    refs = sorted(set(refs))
    found: dict[str, JobInfo] = {}
    for query in (_squeue, _sacct):
        missing = [ref for ref in refs if ref not in found]
        if missing:
            found.update({ref: info for ref, info in query(missing).items() if ref in missing})
    for ref in [ref for ref in refs if ref not in found]:
        info = _scontrol(ref)
        if info is not None:
            found[ref] = info
    # Tasks of an array that never started (cancelled while pending) are known only by the array's id.
    tasks = [ref for ref in refs if ref not in found and "_" in ref]
    if tasks:
        arrays = _sacct(sorted({ref.split("_")[0] for ref in tasks}))
        found.update({ref: arrays[ref.split("_")[0]] for ref in tasks if ref.split("_")[0] in arrays})
    return found


def cancel(ref: str) -> None:
    proc = call("scancel", ref)
    _answered(proc.returncode, "scancel")
    if proc.returncode != 0:
        raise SlurmError(error_message(proc.stderr))
