"""Field types the schema modules share: strict models, Slurm times, names, one-line shell text."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

Auto = Literal["auto"]
SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,2}):(\d{2}):(\d{2})$")
SLURM_MINUTES = re.compile(r"^\d+$")
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def slurm_minutes(value: str) -> int:
    """Minutes in a Slurm time: plain minutes or [D-]HH:MM:SS."""
    if SLURM_MINUTES.match(value):
        return int(value)
    match = SLURM_TIME.match(value)
    if not match:
        raise ValueError(f"must be a Slurm time like 90, 04:00:00 or 2-00:00:00 (got {value!r})")
    days, hours, minutes, seconds = (int(x or 0) for x in match.groups())
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"must start with a letter or digit and hold only letters, digits, '.', '_' or '-' (got {value!r})")
    return value


def _one_line(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"must be one line without control characters (got {value!r})")
    return value


# Any string that reaches a shell script: quoted there, and never more than one line.
ShellText = Annotated[str, AfterValidator(_one_line)]


TrainingType = Literal["sft", "dpo", "grpo"]
FinetuningType = Literal["lora", "all_weights"]
