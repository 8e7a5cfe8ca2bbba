"""plan.json across releases: its schema version, and the migrations that bring an older plan up to date.

A shared environment is upgraded under queued jobs: a job compiled by ftc 0.1.0 may start (or be
requeued) under 0.1.1. The runtime therefore reads every plan schema the same major release wrote,
migrating it step by step here; a plan from another major release, or a newer schema than this ftc
knows, is refused in one line, on the login node when it is submitted again (see submit/kept.py).
Each version has a stored plan under tests/data/plans/ that a test migrates and runs.
"""

from __future__ import annotations

from collections.abc import Callable

import ftc

# 1: ftc 0.1.0 (no schema field). 2: plan_schema; run ids no longer hash ftc's version.
PLAN_SCHEMA = 2
SCHEMA_FIELD = "plan_schema"


def _from_1(plan: dict) -> dict:
    return {**plan, SCHEMA_FIELD: 2}


MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _from_1}


def major(version: object) -> str:
    return str(version).split(".", 1)[0]


def schema_of(plan: dict) -> object:
    return plan.get(SCHEMA_FIELD, 1)


def unreadable(plan: dict) -> str | None:
    """Why this ftc cannot run a plan another release wrote, or None."""
    written_by = plan.get("ftc_version")
    schema = schema_of(plan)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        return f"{SCHEMA_FIELD}: must be a whole number from 1 (got {str(schema)[:40]!r})"
    if isinstance(written_by, str) and major(written_by) != major(ftc.__version__):
        return (f"written by ftc {written_by[:40]}, another major release than this ftc {ftc.__version__}: "
                "a queue is drained before a major upgrade; recompile the run")
    if schema > PLAN_SCHEMA:
        return (f"{SCHEMA_FIELD} {schema} is newer than this ftc {ftc.__version__} reads ({PLAN_SCHEMA}): "
                f"it was written by ftc {str(written_by)[:40]}; run it with that release, or recompile the run")
    return None


def migrate(plan: dict) -> dict:
    """The plan as this release writes it; a dict that is not a plan passes through for the schema to refuse."""
    if not isinstance(plan, dict):
        return plan
    problem = unreadable(plan)
    if problem is not None:
        raise ValueError(problem)
    while schema_of(plan) < PLAN_SCHEMA:
        plan = MIGRATIONS[schema_of(plan)](plan)
    return plan
