"""Recorded values on the terminal: control characters escaped, length bounded.

Everything `ftc status|logs|cancel` prints from a run folder (names, states, errors, paths, metric
names) went through files anyone could edit; an escape sequence in them must not reach the terminal.
"""

from __future__ import annotations

import unicodedata

SHOWN_CHARS = 300


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` as text without control, format or separator characters (escaped as \\xNN), at most `limit` chars."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():  # none of the categories escaped below (the common case, kept cheap)
        return text
    return "".join(_escape(c) if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else c
                   for c in text)
