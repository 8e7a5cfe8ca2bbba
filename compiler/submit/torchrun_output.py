"""What the terminal shows of a local launch: torchrun's own failure report left to the log file.

When a worker fails it has already printed its one `[ftc] error:` line; torchrun then adds a
ChildFailedError traceback, a failure table and an `E...` log line that only repeat "rank 0 failed".
The log file keeps every byte; the terminal gets everything but that report. Partial lines (the live
progress line, redrawn with carriage returns) pass through at once.
"""

from __future__ import annotations

import re

START = b"Traceback (most recent call last):"
AGENT_LINE = re.compile(rb"^[EWI]\d{4} [^\n]*torch/distributed/elastic/")


class ChildFailedFilter:
    def __init__(self) -> None:
        self.pending = b""  # an unfinished line
        self.held: list[bytes] = []  # a traceback, until its last line says whose it is
        self.rules = 0  # ===== lines of torchrun's failure table still to skip

    def feed(self, chunk: bytes) -> bytes:
        self.pending += chunk
        out = []
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            out.append(self._line(line + b"\n"))
        if self.pending and not self.held and not self.rules and not self._may_begin_report(self.pending):
            out.append(self.pending)
            self.pending = b""
        return b"".join(out)

    @staticmethod
    def _may_begin_report(partial: bytes) -> bool:
        """A partial line that could grow into the traceback's first line or an agent log line is held."""
        return START.startswith(partial[: len(START)]) or re.match(rb"^[EWI]\d{0,4}( |$)", partial[:6]) is not None

    def flush(self) -> bytes:
        rest = b"".join(self.held) + self.pending
        self.held, self.pending = [], b""
        return rest

    def _line(self, line: bytes) -> bytes:
        if self.rules:
            if line.startswith(b"====="):
                self.rules -= 1
            return b""
        if AGENT_LINE.match(line):
            return b""
        if line.startswith(START):
            self.held = [line]
            return b""
        if not self.held:
            return line
        if line.startswith((b" ", b"\t")):
            self.held.append(line)
            return b""
        held, self.held = b"".join(self.held), []
        if b"ChildFailedError" in line:
            self.rules = 2  # the table opens and closes with a ===== line
            return b""
        return held + line
