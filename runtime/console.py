"""What the terminal shows during a run, and where everything else the process prints goes.

The terminal (the job's stdout: a person's terminal through the local executor, or Slurm's log file)
gets ftc's own lines: the plan summary, one progress line, ftc's warnings and the end report. Every
other byte the process writes to stdout or stderr (library warnings and logging, progress bars, C++
messages, tracebacks) lands in RUN_DIR/logs/train.log (train-rank<N>.log for the other ranks), with
the per-step detail: the terminal stays readable and nothing is lost.

With FTC_PROGRESS=live (the local executor sets it when its output is a terminal) the progress line
is redrawn in place; otherwise it is a plain line every so often, so a log file holds no carriage returns.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from ftc.compiler.runfolder import open_append

PROGRESS_ENV = "FTC_PROGRESS"
CLEAR = "\r\x1b[K"
PACKAGE = os.path.dirname(os.path.realpath(os.path.join(os.path.dirname(__file__), "__init__.py")))
FTC_ROOT = os.path.dirname(PACKAGE)
# Not for the person watching even when raised at ftc's call site: a library's API change is ftc's to fix.
DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def is_ftc_source(filename: str) -> bool:
    """A file of ftc's own source, not of a library installed under ftc's folder (a checkout's .venv)."""
    relative = os.path.relpath(os.path.realpath(filename), FTC_ROOT)
    parts = relative.split(os.sep)
    return parts[0] != ".." and not any(p.startswith(".") or p in ("site-packages", "dist-packages") for p in parts)


def log_name(rank: int) -> str:
    return "train.log" if rank == 0 else f"train-rank{rank}.log"


class Console:
    """ftc's lines to the terminal; `live` redraws one progress line in place."""

    def __init__(self):
        self.out = sys.stdout
        self.live = os.environ.get(PROGRESS_ENV) == "live"
        self.progress = ""
        self.log_path: Path | None = None
        self.quiet = False  # other ranks print nothing to the terminal
        self._showwarning_to_log = warnings.showwarning

    def capture(self, run_dir: str, rank: int) -> Path:
        """From here on fds 1 and 2 write to the run's log file; the terminal is a private copy of fd 1."""
        logs = Path(run_dir) / "logs"
        logs.mkdir(exist_ok=True)
        self.log_path = logs / log_name(rank)
        sys.stdout.flush()
        sys.stderr.flush()
        self.out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        fd = open_append(self.log_path)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True)
        self.quiet = rank != 0
        warnings.showwarning = self._showwarning
        return self.log_path

    def say(self, text: str) -> None:
        """A line for the person watching (and, for the record, the log file)."""
        print(text, flush=True)  # the log file, once captured
        if self.quiet or self.out is sys.stdout:
            return
        if self.live and self.progress:
            self._write(CLEAR + text + "\n" + self.progress)
        else:
            self._write(text + "\n")

    def show_progress(self, text: str) -> None:
        """The progress line: redrawn in place when live, else one plain line."""
        if self.quiet:
            return
        if self.out is sys.stdout or not self.live:
            self._write(text + "\n")
        else:
            self.progress = text
            self._write(CLEAR + text)

    def end_progress(self) -> None:
        """Leave the last progress line on screen and move below it."""
        if self.live and self.progress and not self.quiet:
            self._write("\n")
        self.progress = ""

    def _write(self, text: str) -> None:
        """A closed terminal (the watcher went away) must not stop the run: the log file has every line."""
        if self.out is None:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, OSError):
            self.out = None

    def _showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """Every warning goes to the log file; ftc's own also to the terminal."""
        self._showwarning_to_log(message, category, filename, lineno, file, line)
        if is_ftc_source(filename) and not issubclass(category, DEVELOPER_WARNINGS):
            self.say(f"[ftc] warning: {message}")


CONSOLE = Console()
