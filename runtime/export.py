"""`ftc export RUN [--merge] [--to DIR]`: the run's adapter or model as a folder to hand on, with its model card.

Without --merge: the output as trained (adapter, merged or full model). With --merge: the adapter merged
into a fresh copy of the base (a plain HF model that needs no PEFT). The default DIR is
RUN_DIR/export/<kind>, replaced on each export; a --to DIR must not exist yet or be empty. The folder
is built beside DIR and renamed into place, so DIR is whole or absent. Last it prints the line that
serves the result with vLLM: one LoRA among many on the base, or the model itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ftc.compiler.errors import UserError
from ftc.compiler.runfolder import umask_for
from ftc.compiler.runs.owner import mine, owner_name, owner_uid
from ftc.runtime import trained as trained_runs
from ftc.runtime.modelcard import serve_command, write_card

EXPORT_DIR = "export"
EXPORT_LOG = "logs/export.log"
NAMES = {"adapter": "LoRA adapter", "merged": "merged model", "model": "full model"}


@contextlib.contextmanager
def library_output_to(log: Path):
    """Everything libraries print while exporting (DeepSpeed's accelerator line, notices) goes to `log`, not the terminal."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o664)  # never through a planted link
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for saved_fd, target in zip(saved, (1, 2)):
            os.dup2(saved_fd, target)
            os.close(saved_fd)
        os.close(fd)


def parser() -> trained_runs.Parser:
    parser = trained_runs.Parser(prog="ftc export")
    trained_runs.add_run_arguments(parser)
    parser.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base weights")
    parser.add_argument("--to", metavar="DIR", help="where to write it (default RUN_DIR/export/<kind>)")
    return parser


def destination(option: str | None, run_dir: Path, kind: str) -> Path:
    """Where the export goes: checked before anything is loaded or written."""
    if option is None:
        return run_dir / EXPORT_DIR / kind
    if not option.strip() or any(not c.isprintable() for c in option):
        raise UserError(f"--to: {option[:80]!r} is not a usable folder name")
    target = Path(option).expanduser().absolute()
    if len(os.fsencode(target)) > 4000 or any(len(os.fsencode(part)) > 255 for part in target.parts):
        raise UserError("--to: the path is too long for the file system")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"--to: {target} exists and is not an empty folder; give a new one")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--to: cannot write in {parent}")
    return target


def _kind(found: trained_runs.Trained, merge: bool) -> str:
    if not merge:
        return found.pick()[0]
    if "merged" not in found.paths and "adapter" not in found.paths:
        raise UserError(f"run {found.plan.run_id} trained all weights: there is no adapter to merge; "
                        "export without --merge")
    return "merged"


def _build(found: trained_runs.Trained, kind: str, folder: Path) -> None:
    """Fill `folder` with the export: a copy of the output, or the adapter merged into the base now."""
    if kind in found.paths:
        shutil.copytree(found.paths[kind], folder)
        return
    from transformers import AutoTokenizer

    from ftc.runtime.outputs import merge_adapter

    trained_runs.quiet_loading()
    adapter = found.paths["adapter"]
    tokenizer = AutoTokenizer.from_pretrained(str(adapter), local_files_only=True)
    _, dtype = trained_runs.device_and_dtype()
    merge_adapter(trained_runs.base_path(found.plan), adapter, folder, tokenizer, dtype)


def export(found: trained_runs.Trained, merge: bool, to: str | None) -> tuple[str, Path]:
    """Build the export beside its destination, then rename it into place."""
    kind = _kind(found, merge)
    target = destination(to, found.run_dir, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build(found, kind, staging / "out")
        write_card(found.plan, kind, staging / "out", found.report, served_from=target)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging / "out", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return kind, target


def export_command(args: list[str]) -> int:
    options = parser().parse_args(args)
    found = trained_runs.find(options.run, options.root)
    log = found.run_dir / EXPORT_LOG
    if not mine(found.run_dir):  # ftc never writes into another user's run: the export and its log go elsewhere
        if options.to is None:
            raise UserError(f"run {found.run_dir.name} belongs to {owner_name(owner_uid(found.run_dir))}, and ftc "
                            "never writes into another user's run: export it to a folder of yours with --to DIR")
        log = Path(f"{Path(options.to).absolute()}.export.log")
    in_run = umask_for(found.run_dir) if options.to is None else contextlib.nullcontext()  # export/ as the run
    with in_run, library_output_to(log):
        kind, target = export(found, options.merge, options.to)
    print(f"exported the {NAMES[kind]} of {found.plan.output_name} to {target}")
    print(f"base model {trained_runs.base_path(found.plan) if kind == 'adapter' else target}")
    print("serve it with:")
    print(f"  {serve_command(found.plan, kind, target)}")
    return 0
