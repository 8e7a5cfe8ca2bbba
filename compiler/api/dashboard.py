"""The run dashboard: server-rendered pages over the same service the JSON API uses.

`/` lists the runs (state, progress, loss sparkline, eval before/after, output name); `/runs/ID`
shows one run's loss curves, plan summary, exact script and log tail; `/sweeps/ID` puts a sweep's
runs side by side, as `ftc compare ID` does. Pages refresh themselves
while a run is pending or running. Jinja2 autoescapes everything a run folder holds.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ftc.compiler import records
from ftc.compiler.api import metrics, svg
from ftc.compiler.errors import UserError
from ftc.compiler.runs import compare
from ftc.compiler.runs.runstate import ACTIVE, RunView, clock

LOG_TAIL_BYTES = 16 * 1024
REFRESH_S = 3


@lru_cache(maxsize=1)
def environment() -> Environment:
    folder = Path(str(resources.files("ftc.templates")))
    return Environment(loader=FileSystemLoader(str(folder)), autoescape=select_autoescape(default=True),
                       trim_blocks=True, lstrip_blocks=True)


def plan_details(view: RunView) -> dict:
    """The plan summary lines, the exact script and the warnings: what `ftc status RUN` prints."""
    from pydantic import ValidationError

    from ftc.compiler.planning.plan import Plan
    from ftc.compiler.report import summary

    try:
        lines = summary(Plan.model_validate(view.plan)).splitlines()
    except (ValidationError, TypeError, ValueError, AttributeError, KeyError):
        lines = [f"run        {view.plan.get('output_name', view.run_id)}"]
    script, problems = _script(view)
    return {"plan_summary": lines, "script": script, "warnings": list(view.plan.get("warnings") or []),
            "decisions": list(view.plan.get("decisions") or []), "run_dir": str(view.run_dir),
            "problems": view.problems + problems}


def _script(view: RunView) -> tuple[str, list[str]]:
    """job.sbatch as ftc wrote it: a regular file inside the run folder, bounded (records.read_text)."""
    try:
        return records.read_text(view.run_dir / "job.sbatch", records.RECORD_LIMIT, inside=view.run_dir) or "", []
    except records.RecordError as exc:
        return "", [str(exc)]


def log_tail(view: RunView) -> str:
    """The end of the job's own log: the path derived from the run folder (never job.json's `log`)."""
    if view.log is None or view.misnamed:
        return ""
    if not records.is_inside(view.log.parent, view.run_dir):
        return f"({view.log.parent}: not inside the run folder; not shown)"
    try:
        return (records.read_tail(view.log, LOG_TAIL_BYTES, inside=view.run_dir) or ("", False))[0]
    except records.RecordError as exc:
        return f"({exc}; not shown)"


def _eval_line(details: dict) -> str:
    report = details.get("eval") or {}
    before, after = report.get("before") or {}, report.get("after") or {}
    for key, label, form in (("exact_match", "exact match", "{:.1%}"), ("loss", "loss", "{:.3f}")):
        if isinstance(after.get(key), (int, float)):
            b = before.get(key)
            return f"{label} {form.format(b) if isinstance(b, (int, float)) else '-'} → {form.format(after[key])}"
    return ""


def register(app: FastAPI, service) -> None:
    from ftc.compiler.api.service import NotFound, describe

    env = environment()

    def row(view: RunView) -> dict:
        job = describe(view)
        history = metrics.read(view.run_dir)
        details = job.status_details
        percent = details.get("percentage_done")
        return {"job": job, "owner": view.owner, "state": view.label, "active": view.state in ACTIVE,
                "progress": f"{percent:.0f}%" if isinstance(percent, (int, float)) else "-",
                "elapsed": clock(view.elapsed_s), "eval": _eval_line(details),
                "sparkline": Markup(svg.sparkline(history.train, history.val))}

    @app.get("/", response_class=HTMLResponse)
    def runs_page(page: int = Query(1, ge=1, le=1_000_000)):
        views, total = service.views(page, 50, True, {})
        rows = [row(v) for v in views]
        refresh = REFRESH_S if any(r["active"] for r in rows) else None
        return env.get_template("dashboard_runs.html.j2").render(
            rows=rows, total=total, page=page, pages=max(1, -(-total // 50)), refresh=refresh)

    @app.get("/runs/{job_id}", response_class=HTMLResponse)
    def run_page(job_id: str):
        view = service.view(job_id)
        history = metrics.read(view.run_dir)
        data = row(view)
        return env.get_template("dashboard_run.html.j2").render(
            **data, details=data["job"].status_details, plan=plan_details(view), log=log_tail(view),
            sweep=None if view.misnamed else compare.sweep_of(view.run_dir),
            chart=Markup(svg.loss_chart(history.train, history.val)), refresh=REFRESH_S if data["active"] else None)

    @app.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
    def sweep_page(sweep_id: str, sort: str | None = Query(None, max_length=200), reverse: bool = False):
        """`ftc compare SWEEP_ID` as a page: a bad record or sort key is named on it, never a 500."""
        if not compare.SWEEP_ID.fullmatch(sweep_id):
            raise NotFound(f"no sweep {sweep_id[:40]!r}")
        try:
            folders = compare.sweep_runs(service.output_root, sweep_id)
            if folders is None:
                raise NotFound(f"no sweep {sweep_id}")
            header, cells = compare.columns(compare.compared(folders, sort, reverse))
            problem = None
        except UserError as exc:
            header, cells, problem = [], [], exc.problems[0]
        ids = [row[0] for row in cells]
        return env.get_template("dashboard_sweep.html.j2").render(
            sweep_id=sweep_id, header=header, rows=list(zip(ids, cells)), sort=sort, reverse=reverse, problem=problem)
