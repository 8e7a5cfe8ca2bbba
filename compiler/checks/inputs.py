"""The files and folders a request names, checked on the login node before anything is written or queued.

A path that is missing, unreadable, a device, or a whole pseudo filesystem (`/proc`) fails here as
one line naming the field, not as a traceback in the compiler or a crash hours later in the queue.
A reward function is found without importing it: its module is located with importlib's finders
(which import nothing, not even its parent packages) and its source parsed with `ast`, so the
login node never imports torch.
"""

from __future__ import annotations

import ast
import errno
import importlib.machinery
import importlib.util
import json
import os
import sys

from ftc.compiler.checks import ownership
from ftc.compiler.config.fields import MAX_PATH
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError

MAX_WALKED = 100_000  # entries under a data folder; a dataset is not a whole filesystem
MIN_FREE_BYTES = 1 << 20
MAX_SCHEMA_BYTES = 10 << 20
EVAL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _why(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def check_output_root(root: str, run_dir: str | None = None) -> None:
    """output_root is a folder this user can write into, or can be created as one, on a filesystem with room."""
    path = os.path.abspath(root)
    if run_dir is not None and len(run_dir.encode("utf-8", "surrogateescape")) > MAX_PATH - 64:
        raise UserError(f"output_root: the run folder {run_dir} would be longer than paths may be")
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        if existing == path:
            raise UserError(f"output_root: {path} is not a folder")
        raise UserError(f"output_root: cannot create {path}: {existing} is not a folder")
    try:
        stats = os.statvfs(existing)
    except OSError as exc:
        raise UserError(f"output_root: cannot inspect {existing}: {_why(exc)}") from None
    if stats.f_blocks == 0:
        raise UserError(f"output_root: {existing} is on a pseudo filesystem (like /proc), not a disk")
    if stats.f_flag & os.ST_RDONLY:
        raise UserError(f"output_root: {existing} is on a read-only filesystem")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output_root: {existing} is not writable by this user")
    ownership.check_parents(existing, "output_root")  # no one else may swap the run folders for links
    if existing != path:
        ownership.check(existing, "output_root: the folder it is made in,")
    if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
        raise UserError(f"output_root: the filesystem holding {existing} is full")


GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF)  # what pathlib's is_file() reads as "no file"


def _walk(field: str, folder: str):
    """Every entry under `folder`, bounded. As the compiler's own walk (pathlib's rglob) does, a folder
    it may not list is skipped and a dangling link is no file; an entry that cannot be looked at is an
    error here, as one line, rather than a traceback there."""
    seen = 0
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except PermissionError:
            continue
        except OSError as exc:
            raise UserError(f"{field}: cannot read {current}: {_why(exc)}") from None
        for entry in entries:
            seen += 1
            if seen > MAX_WALKED:
                raise UserError(f"{field}: more than {MAX_WALKED:,} entries under {folder}; "
                                "point it at the dataset's own folder")
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat()
            except OSError as exc:
                if exc.errno in GONE:
                    continue
                raise UserError(f"{field}: cannot read {entry.path}: {_why(exc)}") from None
            yield entry


def check_readable_folder(field: str, path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"{field}: no such folder: {path}")
    if not os.path.isdir(path):
        raise UserError(f"{field}: {path} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"{field}: {path} is not readable by this user")
    if os.statvfs(path).f_blocks == 0:
        raise UserError(f"{field}: {path} is on a pseudo filesystem (like /proc), not a dataset folder")
    for _ in _walk(field, path):
        pass


def check_eval_set(field: str, path: str) -> None:
    """An eval set as the runtime reads it: an NDJSON file, or a folder (its validation/ when it has one)."""
    if os.path.isdir(path):
        check_readable_folder(field, path)
        folder = os.path.join(path, "validation") if os.path.isdir(os.path.join(path, "validation")) else path
        if not any(e.name.endswith(EVAL_SUFFIXES) and e.is_file() for e in _walk(field, folder)):
            raise UserError(f"{field}: no .jsonl or .ndjson files under {folder}")
        return
    _regular_file(field, path)


def _regular_file(field: str, path: str) -> int:
    if not os.path.lexists(path):
        raise UserError(f"{field}: no such file: {path}")
    if not os.path.isfile(path):
        raise UserError(f"{field}: {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{field}: {path} is not readable by this user")
    return os.path.getsize(path)


def check_schema_file(field: str, path: str) -> None:
    if _regular_file(field, path) > MAX_SCHEMA_BYTES:
        raise UserError(f"{field}: {path} is larger than {MAX_SCHEMA_BYTES >> 20} MiB; not a JSON Schema")
    try:
        with open(path, encoding="utf-8") as handle:
            schema = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UserError(f"{field}: {path} is not a JSON file: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(schema, (dict, bool)):
        raise UserError(f"{field}: {path} holds a JSON {type(schema).__name__}, not a JSON Schema object")


def _module_spec(name: str):
    """The spec of a dotted module, found without importing it or its parent packages."""
    spec = None
    search = None
    for depth, part in enumerate(name.split(".")):
        qualified = ".".join(name.split(".")[: depth + 1])
        if depth == 0:
            if qualified in sys.builtin_module_names:
                return importlib.machinery.BuiltinImporter.find_spec(qualified)
            spec = importlib.machinery.PathFinder.find_spec(qualified, sys.path)
        else:
            spec = importlib.machinery.PathFinder.find_spec(qualified, search) if search else None
        if spec is None:
            return None
        search = spec.submodule_search_locations
    return spec


def _defines(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
    return False


def check_reward_function(field: str, spec_text: str) -> None:
    module, _, name = spec_text.partition(":")
    spec = _module_spec(module)
    if spec is None:
        raise UserError(f"{field}: no module {module!r} on this Python's path (the job runs the same environment)")
    origin = spec.origin or ""
    if not origin.endswith(".py"):
        return  # a compiled or built-in module: found, but its names cannot be read without importing it
    try:
        with open(origin, "rb") as handle:
            tree = ast.parse(handle.read(), filename=origin)
    except (OSError, SyntaxError, ValueError, RecursionError) as exc:
        raise UserError(f"{field}: cannot read module {module} ({origin}): {exc}") from None
    if not _defines(tree, name):
        raise UserError(f"{field}: module {module} ({origin}) defines no {name!r}")


def check_inputs(job: JobConfig) -> None:
    """Every path the request names, and the reward it names, as the login node can see them."""
    check_output_root(job.output_root)
    path = job.data.path
    if os.path.isdir(path):  # a folder of data files, training/ and validation/, or a save_to_disk folder
        check_readable_folder("data.path", path)
        unreadable = [e.path for e in _walk("data.path", path) if e.is_file() and not os.access(e.path, os.R_OK)]
        if unreadable:
            raise UserError(f"data.path: {unreadable[0]} is not readable by this user")
    elif not os.path.lexists(path):
        raise UserError(f"data.path: no such file or folder: {path}")
    else:  # one data file, split for validation by the reader
        _regular_file("data.path", path)
    if job.data.replay.path:
        path = job.data.replay.path
        if os.path.isdir(path):
            check_readable_folder("data.replay.path", path)
        else:
            _regular_file("data.replay.path", path)
    if job.eval.general.path:
        check_eval_set("eval.general.path", job.eval.general.path)
    reward = getattr(job.method, "reward", None)
    if reward is not None and reward.kind == "json_schema" and reward.schema_path:
        check_schema_file("method.reward.schema_path", reward.schema_path)
    if reward is not None and reward.kind == "function" and reward.function:
        check_reward_function("method.reward.function", reward.function)


def model_path_warnings(job: JobConfig) -> list[str]:
    """A hub model's weights must exist where this node can see them; say so when it cannot look."""
    model = job.model
    if model.source != "hub":
        return []
    path = model.path
    if not os.path.isabs(path):
        return [f"model.path: {path} is not an absolute path on this node, so its weights cannot be checked here"]
    path = os.path.normpath(path)
    if os.path.isdir(path):
        return []
    existing = os.path.dirname(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"model.path: no such folder: {path} ({existing} is not a folder)")
    if existing == os.path.dirname(path) or os.path.lexists(path):
        raise UserError(f"model.path: no such folder: {path} (its parent {existing} exists on this node)")
    missing = path
    while os.path.dirname(missing) != existing:
        missing = os.path.dirname(missing)
    return [f"model.path: cannot check {path} from this node ({missing} is not here); "
            "the job fails if the weights are not on the compute nodes"]
