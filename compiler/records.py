"""The records in a run folder (job.json, status.json, eval.json, outputs.json, logs/local-exit.json), read as input.

A run folder is data anyone with write access can change, so every record is read like user input:
a regular file inside the folder (no symlink, FIFO or device), of bounded size, parsed as JSON and
validated by a schema. A job id that goes to scancel must look like a Slurm job id; a pid must be a
pid. A damaged record is a problem line naming the file and field, never a traceback. The
submitters write job.json, the run commands read them all; both sides import this light module.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from ftc.compiler.record_schemas import (  # noqa: F401  (re-exported: readers import records alone)
    LOCAL_REF,
    OWNER,
    RUN_ID,
    SLURM_JOB_ID,
    SLURM_REF,
    EvalRecord,
    JobEndRecord,
    JobRecord,
    LastKnownRecord,
    LocalExitRecord,
    OutputsRecord,
    PlanRecord,
    RunStatusRecord,
    _Record,
)
from ftc.compiler.runfolder import write_atomic

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
EVAL_FILE = "eval.json"
OUTPUTS_FILE = "outputs.json"
LOCAL_EXIT_FILE = "logs/local-exit.json"
JOB_END_FILE = "logs/job-end.json"  # written by the job script's last lines (templates/job.sbatch.j2)
PLAN_FILE = "plan.json"
RECORD_LIMIT = 1 << 20  # bytes; ftc's own records are a few KiB
PLAN_LIMIT = 16 << 20
METRICS_LIMIT = 256 << 20  # metrics.jsonl read whole (the runtime trims it on resume); readers tail it

class RecordError(Exception):
    """A record that cannot be used: `file: field: reason`, one line."""


UNREADABLE = "not readable by you"  # a permission, not damage: another user's run with a private umask


class RecordUnreadable(RecordError):
    """A record this user may not read (EACCES): the run is someone else's, its file intact."""



def open_regular(path: Path, inside: Path | None = None) -> int | None:
    """A descriptor on a regular file (None when absent); RecordError when it is a link, a FIFO, a
    device or outside `inside`. Opens without following a final symlink and without blocking, so a
    FIFO or /dev/zero put in its place cannot hang or flood the reader. A path below `inside` is
    opened folder by folder from it, none of them followed if a link: nothing outside is opened."""
    path = str(path)
    try:
        below = _below(path, str(inside)) if inside is not None else None
        if inside is not None and below is None and not os.path.islink(path) and not is_inside(path, inside):
            raise RecordError(f"{path}: outside the run folder {inside}")
        fd = _open_from(str(inside), below) if below else os.open(path, _READ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path) or exc.errno == errno.ELOOP:
            raise RecordError(f"{path}: a symbolic link, not a file ftc wrote") from None
        if isinstance(exc, PermissionError):
            raise RecordUnreadable(f"{path}: {UNREADABLE} (its owner's permissions)") from None
        raise RecordError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordError(f"{path}: not a regular file")
    return fd


_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _below(path: str, folder: str) -> list[str] | None:
    """The names leading from `folder` to `path` (None unless `path` is spelled below it)."""
    folder = folder.rstrip("/")
    if not path.startswith(folder + "/"):
        return None
    names = path[len(folder) + 1:].split("/")
    return None if {"", ".", ".."} & set(names) else names


def _open_from(folder: str, names: list[str]) -> int:
    """openat from `folder` through `names`: a folder or file that is a link fails (ELOOP/ENOTDIR)."""
    if len(names) == 1:
        return os.open(os.path.join(folder, names[0]), _READ)  # the folder itself is what the caller named
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names[:-1]:
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise RecordError(f"{os.path.join(folder, *names)}: {name} is a link or a file, not a folder: "
                                  f"it may lead outside the run folder {folder}") from None
            os.close(fd)
            fd = inner
        return os.open(names[-1], _READ, dir_fd=fd)
    finally:
        os.close(fd)


def read_text(path: Path, limit: int = RECORD_LIMIT, inside: Path | None = None) -> str | None:
    """A regular file's text (see open_regular), or None when absent; RecordError when it is larger
    than `limit` or not UTF-8."""
    fd = open_regular(path, inside)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise RecordError(f"{path}: {size} bytes, more than the {limit} a record may have")
        data = os.pread(fd, min(size, limit) + 1, 0)  # one byte more shows a file that grew past the limit
    finally:
        os.close(fd)
    if len(data) > limit:
        raise RecordError(f"{path}: more than the {limit} bytes a record may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_tail(path: Path, limit: int, inside: Path | None = None) -> tuple[str, bool] | None:
    """(the last `limit` bytes of a regular file as text starting at a whole line, cut): for logs and
    metrics.jsonl, which grow without bound. None when absent; RecordError as open_regular."""
    fd = open_regular(path, inside)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, limit, max(0, size - limit))
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace")
    cut = size > limit
    return (text.split("\n", 1)[-1] if cut else text), cut


def is_inside(path: Path, folder: Path) -> bool:
    """True when `path`, its links resolved, lies within `folder` (also resolved). A path named
    below the folder by names that are no links is inside without resolving it from / (a listing
    of 10,000 runs asks this for every record)."""
    path, folder = str(path), str(folder).rstrip("/")
    if path.startswith(folder + "/") and not {"", ".", ".."} & set(path[len(folder) + 1:].split("/")):
        between = path
        while len(between) > len(folder):
            if os.path.islink(between):
                break
            between = os.path.dirname(between)
        else:
            return True
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except (OSError, ValueError):
        return False


def read_json_file(path: Path, limit: int = RECORD_LIMIT, inside: Path | None = None) -> dict | None:
    """A JSON object from `path` (None when absent); RecordError for anything else."""
    text = read_text(path, limit, inside)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"{path}: not JSON ({str(exc).splitlines()[0][:120]})") from None
    except RecursionError:
        raise RecordError(f"{path}: not JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object")
    return data


def _problem(path: Path, exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "record"
    return f"{path}: {field}: {error['msg']}"


def parse(path: Path, model: type[_Record], lenient: bool = False,
          inside: Path | None = None) -> tuple[_Record | None, list[str]]:
    """(record or None, problems). Lenient: fields that do not validate are dropped and named."""
    try:
        data = read_json_file(path, inside=inside)
    except RecordError as exc:
        return None, [str(exc)]
    if data is None:
        return None, []
    return validate(path, data, model, lenient)


def validate(path: Path, data: dict, model: type[_Record], lenient: bool = False) -> tuple[_Record | None, list[str]]:
    problems: list[str] = []
    for _ in range(len(model.model_fields) + 1):
        try:
            return model.model_validate(data), problems
        except ValidationError as exc:
            problems.append(_problem(path, exc))
            field = exc.errors()[0]["loc"][:1]
            if not lenient or not field or field[0] not in data:
                return None, problems
            data = {k: v for k, v in data.items() if k != field[0]}
    return None, problems


def read_json(path: Path) -> dict | None:
    """A JSON object, or None when absent or unusable (for callers that only want what is readable)."""
    try:
        return read_json_file(path)
    except RecordError:
        return None


def read_plan(run_dir: Path) -> tuple[dict, list[str]]:
    """plan.json as a dict whose fields the listings read have their types (PlanRecord; a field that
    does not validate is dropped and named); the whole Plan model validates it where it is shown."""
    path = Path(run_dir) / PLAN_FILE
    try:
        data = read_json_file(path, PLAN_LIMIT, inside=Path(run_dir)) or {}
    except RecordError as exc:
        return {}, [str(exc)]
    record, problems = validate(path, data, PlanRecord, lenient=True)
    return (record.model_dump(exclude_unset=True) if record else {}), problems


def _last3(path) -> tuple[str, ...]:
    """<namespace>, <model>-<name>, <run id>: Path.parts[-3:] without its cost (a listing asks 10,000 times)."""
    return tuple(part for part in os.fspath(path).split("/") if part)[-3:]


def folder_problems(run_dir: Path, plan: dict | None = None) -> list[str]:
    """Why a run folder may not be answered from: its <namespace>/<model>-<name>/<run id> names are
    not plain ASCII (a look-alike of another run), or differ from what its plan.json says."""
    run_dir = Path(run_dir)
    parts = _last3(run_dir)
    if not all(part.isascii() and part.isprintable() for part in parts) or not re.match(RUN_ID, run_dir.name):
        return [f"{run_dir}: folder name is not the plain ASCII a run folder has (a look-alike of another run?)"]
    if plan is None:
        return []
    if plan.get("run_id") != run_dir.name:
        return [f"{run_dir / PLAN_FILE}: run_id {plan.get('run_id')!r} is not the folder's name"]
    planned = plan.get("run_dir")
    if isinstance(planned, str) and _last3(planned) != parts:
        return [f"{run_dir / PLAN_FILE}: run_dir {planned!r} does not end in the folder's own path"]
    return []


def load_job(run_dir: Path) -> tuple[dict | None, list[str]]:
    record, problems = parse(os.path.join(run_dir, JOB_FILE), JobRecord)  # a string: 10,000 of them in a listing
    return (record.model_dump() if record else None), problems


def read_record(run_dir: Path) -> dict | None:
    return load_job(run_dir)[0]


def load(run_dir: Path, name: str, model: type[_Record]) -> tuple[dict, list[str]]:
    """A record other than job.json, field by field: what validates, and what did not."""
    record, problems = parse(os.path.join(run_dir, name), model, lenient=True, inside=run_dir)
    return (record.model_dump(exclude_none=True) if record else {}), problems


def write_record(run_dir: Path, record: dict) -> None:
    JobRecord.model_validate(record)  # ftc never writes a record it would refuse to read
    write_atomic(Path(run_dir) / JOB_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def write_json_record(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(run_dir: Path, executor: str, **fields) -> dict:
    """A record for a new submission; earlier job ids of the same run are kept under `previous`."""
    old = read_record(run_dir) or {}
    previous = list(old.get("previous", []))
    if old.get("job"):
        previous.append(old["job"])
    return {"executor": executor, "submitted_at": now(), "previous": previous, **_owner(), **fields}


def _owner() -> dict:
    """The submitting user's login name, when the machine has one that fits OWNER."""
    import pwd

    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return {}
    return {"owner": name} if re.fullmatch(OWNER, name) else {}
