"""The FastAPI application: NeMo Customizer's job endpoints, the dashboard, and their guards.

Errors are Customizer-shaped JSON, `{"detail": "<one line>"}`, with the CLI's lines under
`problems`: 400 bad request, 401 no token, 404 unknown job, config or dataset, 409 already
running, 413 body too large, 422 validation, 429 too many requests.
"""

from __future__ import annotations

import math

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ftc.compiler.api import dashboard, registry
from ftc.compiler.api.datasets import UnknownDataset
from ftc.compiler.api.guard import BodyTooLarge, Guard
from ftc.compiler.api.limits import Limits
from ftc.compiler.api.models import CreateJob, Job, JobList, Pagination
from ftc.compiler.api.service import Conflict, JobService, NotFound
from ftc.compiler.api.translate import MissingVersion, UnknownConfig
from ftc.compiler.config.validation import format_validation_error
from ftc.compiler.errors import UserError

PREFIX = "/v1/customization"
CUSTOMIZER_NO_VERSION = "Version is not specified in the config URN"
STATUSES = ("created", "pending", "running", "completed", "failed", "cancelled", "unknown")


def error(status: int, problems: list[str], **extra) -> JSONResponse:
    detail = problems[0] if len(problems) == 1 else "; ".join(problems)
    return JSONResponse({"detail": detail, "problems": problems, **extra}, status_code=status)


def create_app(service: JobService, token: str, limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    app = FastAPI(title="ftc: NeMo Customizer API on Slurm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(MissingVersion)
    def _no_version(request: Request, exc: MissingVersion):
        return JSONResponse({"detail": CUSTOMIZER_NO_VERSION, "problems": exc.problems}, status_code=400)

    @app.exception_handler(UnknownConfig)
    def _no_config(request: Request, exc: UnknownConfig):
        return error(404, exc.problems)

    @app.exception_handler(UnknownDataset)
    def _no_dataset(request: Request, exc: UnknownDataset):
        return error(404, [str(exc)])

    @app.exception_handler(NotFound)
    def _no_job(request: Request, exc: NotFound):
        return error(404, [str(exc)])

    @app.exception_handler(Conflict)
    def _conflict(request: Request, exc: Conflict):
        return error(409, [exc.detail], id=exc.job_id)

    @app.exception_handler(RequestValidationError)
    def _bad_query(request: Request, exc: RequestValidationError):
        lines = []
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem.get("loc", ())[1:]) or "request"
            lines.append(f"{where}: {problem.get('msg', 'invalid')}"[:300])
        return error(422, lines or ["request: invalid"])

    @app.exception_handler(BodyTooLarge)
    def _too_large(request: Request, exc: BodyTooLarge):
        return error(413, [f"body: larger than {limits.max_body} bytes"])

    @app.exception_handler(UserError)
    def _user_error(request: Request, exc: UserError):
        return error(422, exc.problems)

    @app.post(f"{PREFIX}/jobs", response_model=Job)
    async def create_job(request: Request):
        body = await request.body()
        try:
            job = CreateJob.model_validate_json(body)
        except ValidationError as exc:
            return error(422, format_validation_error(exc))
        from starlette.concurrency import run_in_threadpool

        _, view = await run_in_threadpool(service.create, job)
        return JSONResponse(service.describe(view).model_dump(mode="json"), status_code=200)

    @app.get(f"{PREFIX}/jobs", response_model=JobList)
    def list_jobs(
        page: int = Query(1, ge=1, le=1_000_000),
        page_size: int = Query(10, ge=1, le=100),
        sort: str = Query("-created_at", pattern="^-?created_at$"),
        status: str | None = Query(None, alias="filter[status]", pattern=f"^({'|'.join(STATUSES)})$"),
        config: str | None = Query(None, alias="filter[config]", max_length=256),
        dataset: str | None = Query(None, alias="filter[dataset]", max_length=128),
        training_type: str | None = Query(None, alias="filter[training_type]", pattern="^(sft|dpo|grpo)$"),
        finetuning_type: str | None = Query(None, alias="filter[finetuning_type]",
                                            pattern="^(lora|lora_merged|all_weights)$"),
    ):
        filters = {k: v for k, v in (("status", status), ("config", config), ("dataset", dataset),
                                     ("training_type", training_type), ("finetuning_type", finetuning_type)) if v}
        views, total = service.views(page, page_size, sort.startswith("-"), filters)
        data = [service.describe(v) for v in views]
        return JobList(data=data, pagination=Pagination(
            page=page, page_size=page_size, current_page_size=len(data),
            total_pages=max(1, math.ceil(total / page_size)), total_results=total))

    @app.get(f"{PREFIX}/jobs/{{job_id}}")
    def get_job(job_id: str):
        view = service.view(job_id)
        # the job's fields last: its `warnings` are the plan's, as Customizer's JobWarning objects
        return {**dashboard.plan_details(view), **service.describe(view).model_dump(mode="json")}

    @app.get(f"{PREFIX}/jobs/{{job_id}}/status")
    def get_status(job_id: str):
        view = service.view(job_id)
        job = service.describe(view)
        return {"id": job.id, "output_model": job.output_model, **job.status_details}

    @app.post(f"{PREFIX}/jobs/{{job_id}}/cancel")
    def cancel_job(job_id: str):
        views = service.cancel(job_id)
        if len(views) == 1 and views[0].run_id == job_id:
            return service.describe(views[0]).model_dump(mode="json")
        # A whole array: Customizer's job object is its first run's; `data` lists every run.
        data = [service.describe(v).model_dump(mode="json") for v in views]
        return {**data[0], "data": data}

    @app.get("/health")
    async def health():  # on the event loop: answers while every worker thread is busy reading runs
        return {"status": "ok"}

    registry.register(app, service)
    dashboard.register(app, service)
    return Guard(app, token, limits)

