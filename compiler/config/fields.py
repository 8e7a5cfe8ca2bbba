"""Field types the schema modules share: strict models, Slurm times, names, one-line shell text.

Patterns use `fullmatch`: Python's `$` also matches before a trailing newline, so a name ending in
"\n" would otherwise pass.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

Auto = Literal["auto"]
SLURM_TIME = re.compile(r"(?:(\d{1,3})-)?(\d{1,2}):(\d{2}):(\d{2})")
SLURM_MINUTES = re.compile(r"\d{1,7}")
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 100  # names become path components (255 bytes) and part of Slurm's job name
MAX_SLURM_MINUTES = 365 * 1440
MAX_PATH = 4096  # PATH_MAX
MAX_COMPONENT = 255  # NAME_MAX, in bytes
MAX_COUNT = 10**9  # upper bound for steps, sizes and counts: beyond it a value is a typo, not a plan
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class Strict(BaseModel):
    # allow_inf_nan=False: inf and nan would be written to plan.json as null, and mean nothing here.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, allow_inf_nan=False,
                              protected_namespaces=())  # pydantic < 2.10 warns on fields named model_*


def slurm_minutes(value: str) -> int:
    """Minutes in a Slurm time: plain minutes or [D-]HH:MM:SS; at least 1 minute, at most a year."""
    if SLURM_MINUTES.fullmatch(value):
        minutes = int(value)
    else:
        match = SLURM_TIME.fullmatch(value)
        if not match:
            raise ValueError(f"must be a Slurm time like 90, 04:00:00 or 2-00:00:00 (got {value!r})")
        days, hours, mins, seconds = (int(x or 0) for x in match.groups())
        if mins > 59 or seconds > 59 or (match.group(1) and hours > 23):
            raise ValueError(f"minutes and seconds must be 00-59, hours 00-23 after a day count (got {value!r})")
        minutes = days * 1440 + hours * 60 + mins + (1 if seconds else 0)
    if minutes < 1:
        raise ValueError(f"must be at least 1 minute; Slurm reads 0 as no limit at all (got {value!r})")
    if minutes > MAX_SLURM_MINUTES:
        raise ValueError(f"must be at most 365-00:00:00 (got {value!r})")
    return minutes


def identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(f"must start with a letter or digit and hold only letters, digits, '.', '_' or '-' (got {value!r})")
    if len(value) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters (got {len(value)})")
    return value


def _one_line(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"must be one line without control characters (got {value!r})")
    return value


def path_text(value: str) -> str:
    """A path the filesystem can hold: not empty, within PATH_MAX, each component within NAME_MAX."""
    _one_line(value)
    if not value.strip():
        raise ValueError("must not be empty")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"must be valid Unicode (got {value!r})") from None
    if len(encoded) > MAX_PATH:
        raise ValueError(f"is {len(encoded)} bytes; paths hold at most {MAX_PATH}")
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > MAX_COMPONENT:
        raise ValueError(f"has a {len(longest)}-byte component; a file name holds at most {MAX_COMPONENT} bytes")
    return value


def env_name(value: str) -> str:
    if not ENV_NAME.fullmatch(value):
        raise ValueError(f"must be an environment variable name like NCCL_DEBUG (got {value!r})")
    return value


# Any string that reaches a shell script: quoted there, and never more than one line.
ShellText = Annotated[str, AfterValidator(_one_line)]
# A file or folder path: one line, and short enough for the filesystem.
PathText = Annotated[str, AfterValidator(path_text)]
EnvName = Annotated[str, AfterValidator(env_name)]


# Who sets a field (json_schema_extra of a model or a field; the innermost marker wins): the site's
# admins in their config files, or the user on the command line. compiler/config/owners.py reads it.
SET_BY_SITE = {"set_by": "site"}
SET_BY_USER = {"set_by": "user"}


TrainingType = Literal["sft", "dpo", "grpo"]
FinetuningType = Literal["lora", "all_weights"]
