"""Thin calls to the Slurm clients, each under `timeout` (a client blocks while slurmctld is down).

Submission goes through submitit's own Slurm submission path (`SlurmExecutor._submit_command`),
with ftc's rendered script as the submission file, byte for byte: no pickles and no submitit
wrapper run on the nodes. sacct/squeue answers are parsed by submitit's `SlurmInfoWatcher`,
which also expands pending array ranges like `12_[2-3%2]`.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ftc.compiler.runfolder import make_folders

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
    make_folders(folder)
    executor = _script_executor(folder, script)
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet):
            job = executor._submit_command("")
    except (FailedJobError, FailedSubmissionError) as exc:
        _answered(getattr(exc.__cause__, "returncode", 0), "sbatch")
        raise SlurmError(error_message(str(exc))) from None
    return job.job_id, Path(job.paths.submission_file)


def partition_gres(partition: str) -> list[str] | None:
    """The GRES the partition's nodes offer, as sinfo writes them (`gpu:h100:8`); None: no answer."""
    if not have("sinfo"):
        return None
    proc = call("sinfo", "--noheader", f"--partition={partition}", "--format=%G")
    if proc.returncode != 0:
        return None
    return sorted({item.split("(")[0] for line in proc.stdout.split() for item in line.split(",")
                   if item and item != "(null)"})


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


STATUS_TIMEOUT = 3  # seconds per status query: `ftc status` answers within ~2x this with the controller down
UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
               "Connection timed out", "Zero Bytes were transmitted")


@dataclass
class StatusAnswer:
    """The states Slurm gave for a set of refs, and a line for each client that did not answer."""

    infos: dict[str, JobInfo]
    silent: list[str]


def _start(args: list[str], timeout: int) -> subprocess.Popen | None:
    if not have(args[0]):
        return None
    try:
        return subprocess.Popen(["timeout", str(timeout), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
    except OSError:
        return None


def _finish(proc: subprocess.Popen | None, timeout: int) -> tuple[int, str, str]:
    if proc is None:
        return 127, "", "not found"
    try:
        out, err = proc.communicate(timeout=timeout + 2)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return 124, out, err
    return proc.returncode, out, err


def job_infos(refs: list[str], timeout: int = STATUS_TIMEOUT) -> StatusAnswer:
    """One squeue (the controller's live view, finished jobs included for MinJobAge) and one sacct
    (remembers longer) for all refs, run side by side, each under `timeout` seconds; squeue wins."""
    refs = sorted(set(refs))
    if not refs:
        return StatusAnswer({}, [])
    ids = sorted({ref.split("_")[0] for ref in refs})
    squeue = _start(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%M"], timeout)
    sacct = _start(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Reason,Elapsed,ExitCode", "-j", ",".join(ids)],
                   timeout)
    queue_rc, queue_out, queue_err = _finish(squeue, timeout)
    acct_rc, acct_out, _ = _finish(sacct, timeout)
    found: dict[str, JobInfo] = {}
    if acct_rc == 0:
        found.update(_parse_table("JobID|State|Reason|Elapsed|ExitCode", acct_out, "sacct"))
    silent = []
    if queue_rc == 0:
        for ref, info in _parse_table("JobID|State|Reason|Elapsed", queue_out, "squeue").items():
            remembered = found.get(ref)  # squeue has no exit code; sacct, when it has caught up, does
            code = remembered.exit_code if remembered is not None and remembered.state == info.state else ""
            found[ref] = JobInfo(info.state, info.reason, info.elapsed, code, info.source)
    elif queue_rc == 124 or any(marker in queue_err for marker in UNREACHABLE):
        silent.append(f"Slurm's controller does not answer (squeue, {timeout} s); "
                      "showing the last known states (check with: scontrol ping)")
    elif queue_rc != 127:
        silent.append(f"squeue failed: {error_message(queue_err)}")
    for ref in refs:
        if ref not in found and "_" in ref:
            found[ref] = _array_entry(ref, found)
    wanted = set(refs)
    return StatusAnswer({ref: info for ref, info in found.items() if ref in wanted and info is not None}, silent)


def _array_entry(ref: str, found: dict[str, JobInfo]) -> JobInfo | None:
    """A task that never started (cancelled while pending) is known only by its array's row:
    `123` or `123_[0-3,5]`."""
    array, _, index = ref.partition("_")
    if array in found:
        return found[array]
    for key, info in found.items():
        head, _, ranges = key.partition("_[")
        if head != array or not ranges.endswith("]") or not index.isdigit():
            continue
        for part in ranges[:-1].split("%")[0].split(","):
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= int(index) <= int(high or low):
                return info
    return None


def cancel(ref: str) -> None:
    """scancel one job (or array task); the ref was validated as a job id and goes after `--`."""
    proc = call("scancel", "--", ref)
    _answered(proc.returncode, "scancel")
    if proc.returncode != 0:
        raise SlurmError(error_message(proc.stderr))
