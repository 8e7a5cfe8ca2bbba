"""Pydantic errors as one line per problem, each naming the dotted field."""

from __future__ import annotations

import re
import typing

from pydantic import BaseModel, ValidationError

from ftc.compiler.config.schema import JobConfig

METHOD_TAGS = ("lora", "sft", "dpo", "grpo")
FIELD_PREFIX = re.compile(r"^[a-z_]+(\.[a-z_]+)+: ")


def _dotted(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "[key]"]
    # A discriminated union puts its tag in the path: method.lora.lora.adapter_dim -> method.lora.adapter_dim
    if len(parts) >= 2 and parts[0] == "method" and parts[1] in METHOD_TAGS:
        parts.pop(1)
    return ".".join(parts)


def _message(error: dict) -> str:
    kind, msg, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        return f"unknown method {error['ctx']['tag']!r}; choose from {', '.join(METHOD_TAGS)}"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("value_error", "assertion_error") and ("(got" in msg or FIELD_PREFIX.match(msg)):
        return msg
    shown = value if not isinstance(value, (dict, list)) else type(value).__name__
    return f"{msg[0].lower()}{msg[1:]} (got {shown!r})"


def format_validation_error(exc: ValidationError) -> list[str]:
    return _merge_union_branches(list(dict.fromkeys(line for _, line in located_problems(exc))))


def located_problems(exc: ValidationError) -> list[tuple[tuple, str]]:
    """(the keys the value sits under, one line naming its dotted field) per error: a site check
    finds the keys' line in the file."""
    out = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # `int | 'auto'` unions report one error per branch; the field is what matters.
        loc = tuple(p for p in loc if p not in ("int", "bool", "str", "float") and not str(p).startswith("literal["))
        field, message = _dotted(loc), _message(error)
        if FIELD_PREFIX.match(message):  # a cross-field check names its own field
            field, message = message.split(": ", 1)
        out.append((loc, f"{field}: {message}" if field else message))
    return out


def _merge_union_branches(lines: list[str]) -> list[str]:
    """Keep one line per field: a union of int and 'auto' fails once per branch."""
    seen: dict[str, str] = {}
    for line in lines:
        field = line.split(": ", 1)[0]
        seen.setdefault(field, line)
    return list(seen.values())


def _model_at(path: str) -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = [JobConfig]
    for part in [p for p in path.split(".") if p]:
        nxt: list[type[BaseModel]] = []
        for model in models:
            field = model.model_fields.get(part)
            if field is not None:
                nxt.extend(_models_in(field.annotation))
        models = nxt
    return models


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def field_names(path: str) -> list[str]:
    """The schema's field names under a dotted path (for "did you mean")."""
    names: list[str] = []
    for model in _model_at(path):
        names.extend(n for n in model.model_fields if n not in names)
    return names
