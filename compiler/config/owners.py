"""Who sets a field: the site's admins, in their config files, or the user, on the command line.

The schema says it once, as `set_by` in a model's or a field's json_schema_extra (the innermost
marker wins; unmarked means the user's). The cluster is the site's: its partitions' limits, GPUs,
memory, raw shell, container and ports are facts and policy a command line must not rewrite, since
the plan, the estimate and the refusal hints all trust them. A user picks the partition, account
and QoS, which Slurm checks against what the user may use.
"""

from __future__ import annotations

import typing
from functools import lru_cache

from pydantic import BaseModel

from ftc.compiler.config.schema import JobConfig

SITE, USER = "site", "user"


def _marker(extra) -> str | None:
    return extra.get("set_by") if isinstance(extra, dict) else None


def _inner(annotation) -> tuple[type[BaseModel] | None, int]:
    """The model a field holds, and how many key parts (dict keys, list indexes) come before it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, 0
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _inner(args[0])
    if origin in (dict, list):
        model, skip = _inner(args[-1])
        return model, skip + 1
    models = [m for m in (_inner(a)[0] for a in args) if m is not None]
    return (models[0], 0) if len(models) == 1 else (None, 0)  # a union of models (method): unmarked


@lru_cache(maxsize=1024)
def owner(key: str) -> str:
    """Who sets the dotted `key` (e.g. cluster.partitions.h100.max_time): SITE or USER.

    A key the schema does not know is left to the user's side, where composing or validating it
    names it as an unknown field (with a did-you-mean)."""
    model: type[BaseModel] | None = JobConfig
    who, skip = USER, 0
    for part in key.split("."):
        if skip:
            skip -= 1
            continue
        if model is None:
            break
        who = _marker(model.model_config.get("json_schema_extra")) or who
        field = model.model_fields.get(part)
        if field is None:
            return USER
        who = _marker(field.json_schema_extra) or who
        model, skip = _inner(field.annotation)
    return who


def user_choices(group: str) -> list[str]:
    """The user's fields of a site-owned group (cluster): what a refusal offers instead."""
    model, _ = _inner(JobConfig.model_fields[group].annotation)
    if model is None or _marker(model.model_config.get("json_schema_extra")) != SITE:
        return []
    return [f"{group}.{name}" for name in model.model_fields if owner(f"{group}.{name}") == USER]


def site_line(key: str) -> str:
    """The one line refusing an override of a site field, naming what the user may set instead."""
    group = key.split(".", 1)[0]
    choices = user_choices(group) if group in JobConfig.model_fields else []
    instead = f"; a user sets only {', '.join(choices[:-1])} and {choices[-1]}" if len(choices) > 1 else ""
    return (f"{key}: set in the site's config files, not on the command line "
            f"(the site's admins own its limits, raw shell and guard rails{instead})")
