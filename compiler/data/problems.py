"""Dataset problems grouped by cause: one line each, with the first `file:line`, however many rows fail.

A cause is the reason with its numbers taken out (`messages[3]: ...` and `messages[1]: ...` are one
cause; so are JSON errors at different columns). A cause seen once reads `file:line: reason`; seen
more often, `N rows: reason (first at file:line)`. At most MAX_LINES lines are listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINES = 10


@dataclass
class _Cause:
    where: str
    reason: str
    count: int = 1


class Problems:
    def __init__(self):
        self.causes: dict[str, _Cause] = {}
        self.total = 0

    def __bool__(self) -> bool:
        return bool(self.causes)

    def add(self, where: str, reason: str) -> None:
        self.total += 1
        key = re.sub(r"\d+", "#", reason)
        if key in self.causes:
            self.causes[key].count += 1
        else:
            self.causes[key] = _Cause(where, reason)

    def lines(self, limit: int = MAX_LINES) -> list[str]:
        causes = list(self.causes.values())
        shown = causes if len(causes) <= limit else causes[: limit - 1]
        out = [f"{c.where}: {c.reason}" if c.count == 1 else f"{c.count} rows: {c.reason} (first at {c.where})"
               for c in shown]
        rest = causes[len(shown):]
        if rest:
            out.append(f"... and {sum(c.count for c in rest)} more problems of {len(rest)} other kinds")
        return out
