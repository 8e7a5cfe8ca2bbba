"""Customizer's read-only registries: configs, targets (base models) and output models, each a list
with Customizer's envelope and paging, and one entry by `namespace/name`."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ftc.compiler.api.models import CreateTarget
from ftc.compiler.config.validation import format_validation_error
from ftc.compiler.errors import UserError

from ftc.compiler.api.service import JobService, NotFound

PREFIX = "/v1/customization"
Part = Annotated[str, Path(max_length=256)]


def page_of(items: list[dict], page: int, page_size: int) -> dict:
    chosen = items[(page - 1) * page_size: page * page_size]
    return {"object": "list", "data": chosen, "pagination": {
        "page": page, "page_size": page_size, "current_page_size": len(chosen),
        "total_pages": max(1, math.ceil(len(items) / page_size)), "total_results": len(items)}}


def one(items: list[dict], namespace: str, name: str, kind: str) -> dict:
    for item in items:
        if item.get("namespace") == namespace and item.get("name") == name:
            return item
    raise NotFound(f"no {kind} {namespace}/{name}"[:300])


def register(app: FastAPI, service: JobService) -> None:
    paging = {"page": Query(1, ge=1, le=1_000_000), "page_size": Query(100, ge=1, le=1000)}

    @app.get(f"{PREFIX}/configs")
    def list_configs(page: int = paging["page"], page_size: int = paging["page_size"]):
        return page_of(service.configs(), page, page_size)

    @app.get(f"{PREFIX}/configs/{{namespace}}/{{name}}")
    def get_config(namespace: Part, name: Part):
        return one(service.configs(), namespace, name, "config")

    @app.get(f"{PREFIX}/targets")
    def list_targets(page: int = paging["page"], page_size: int = paging["page_size"]):
        return page_of(service.targets(), page, page_size)

    @app.get(f"{PREFIX}/targets/{{namespace}}/{{name}}")
    def get_target(namespace: Part, name: Part):
        return one(service.targets(), namespace, name, "target")

    @app.post(f"{PREFIX}/targets")
    async def create_target(request: Request):
        """Register a user's model folder: read, checked against the site's model paths, then a
        target that configs and jobs name as local/<name>@<version>, as `model=custom model.path=DIR`."""
        from starlette.concurrency import run_in_threadpool

        try:
            body = CreateTarget.model_validate_json(await request.body())
        except ValidationError as exc:
            raise UserError(*format_validation_error(exc)) from None
        target = await run_in_threadpool(service.register_target, body.model_path)
        said = [f"{k}: {v} given, {target[k]} read from the folder; ftc uses what it read"
                for k, v in (("num_parameters", body.num_parameters), ("precision", body.precision))
                if v is not None and v != target[k]]
        return JSONResponse({**target, **({"warning_message": "; ".join(said)} if said else {})})

    @app.get("/v1/models")
    def list_models(page: int = paging["page"], page_size: int = paging["page_size"]):
        return page_of(service.output_models(), page, page_size)

    @app.get("/v1/models/{namespace}/{name}")
    def get_model(namespace: Part, name: Part):
        return one(service.output_models(), namespace, name, "model")
