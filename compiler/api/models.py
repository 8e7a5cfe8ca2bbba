"""Request and response bodies of the job API, under NeMo Customizer's field names.

A request may set only what Customizer's job body has: no overrides, no site or admin fields, no
paths. Every string passes the schema's own checks (identifiers, one line, no control characters);
numbers are strict JSON numbers, finite.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ftc.compiler.config.fields import ShellText, identifier

MAX_TEXT = 256

Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(identifier)]
Text = Annotated[ShellText, Field(min_length=1, max_length=MAX_TEXT)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class DatasetRef(Body):
    name: Name
    namespace: Name = "default"


class LoraHyperparameters(Body):
    adapter_dim: int | None = None
    adapter_dropout: float | None = None
    alpha: Annotated[int, Field(le=65_536)] | None = None


class Hyperparameters(Body):
    training_type: Literal["sft", "dpo", "grpo"] = "sft"
    finetuning_type: Literal["lora", "lora_merged", "all_weights"] = "lora"
    # Upper bounds an HTTP client must not exceed; the schema checks the rest, as for the CLI.
    epochs: Annotated[int, Field(le=10_000)] | None = None
    batch_size: Annotated[int, Field(le=1_048_576)] | None = None
    learning_rate: float | None = None
    lora: LoraHyperparameters | None = None


class CreateJob(Body):
    """POST /v1/customization/jobs."""

    config: Text = Field(description="a model config URN, namespace/name@version[+GPU]")
    dataset: DatasetRef
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    output_model: Annotated[ShellText, Field(min_length=3, max_length=MAX_TEXT)] | None = Field(
        None, description="namespace/name: the job's namespace and name; the output keeps Customizer's form"
    )


class Pagination(BaseModel):
    page: int
    page_size: int
    current_page_size: int
    total_pages: int
    total_results: int


JobStatus = Literal["created", "pending", "running", "completed", "failed", "cancelled", "unknown"]


class Job(BaseModel):
    """A job as the jobs endpoints return it; `id` is ftc's run id."""

    id: str
    object: Literal["customization.job"] = "customization.job"
    namespace: str
    name: str
    created_at: str | None
    updated_at: str | None
    config: str
    dataset: dict
    hyperparameters: dict
    output_model: str
    status: JobStatus
    status_details: dict = Field(default_factory=dict)


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]
    pagination: Pagination
