"""Request and response bodies of the job API, under NeMo Customizer's field names.

A request may set only what Customizer's job body has: no overrides, no site or admin fields, no
paths. Every string passes the schema's own checks (identifiers, one line, no control characters);
numbers are strict JSON numbers, finite.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ftc.compiler.config.fields import ShellText, identifier

MAX_TEXT = 256

Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(identifier)]
Text = Annotated[ShellText, Field(min_length=1, max_length=MAX_TEXT)]


class Body(BaseModel):
    # protected_namespaces=(): pydantic < 2.10 warns on Customizer's model_path and model_uri.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True, protected_namespaces=())


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
    max_steps: Annotated[int, Field(le=1_000_000_000)] | None = None
    batch_size: Annotated[int, Field(le=1_048_576)] | None = None
    learning_rate: float | None = None
    lora: LoraHyperparameters | None = None


class WandbSettings(Body):
    project: Name | None = None
    entity: Name | None = None
    notes: Text | None = None
    tags: Annotated[list[Name], Field(max_length=64)] | None = None


class Integration(Body):
    """Customizer's W&B integration: ftc logs to W&B offline, into the run folder (training.report_to)."""

    type: Literal["wandb"] = "wandb"
    wandb: WandbSettings


class CreateJob(Body):
    """POST /v1/customization/jobs."""

    config: Text = Field(description="a model config URN, namespace/name@version[+GPU]")
    dataset: DatasetRef
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    output_model: Annotated[ShellText, Field(min_length=3, max_length=MAX_TEXT)] | None = Field(
        None, description="namespace/name[@version]: the output's name (and the job's namespace and name)"
    )
    name: Name | None = Field(None, description="the job's name (its run folder <model>-<name>)")
    namespace: Name | None = None
    integrations: Annotated[list[Integration], Field(max_length=4)] | None = None

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_as_text(cls, value):
        """Customizer also takes the dataset as "name" or "namespace/name"."""
        if isinstance(value, str):
            namespace, _, name = value.rpartition("/")
            return {"name": name, "namespace": namespace or "default"}
        return value


JobStatus = Literal["created", "pending", "running", "completed", "failed", "cancelled", "unknown"]


class CreateTarget(Body):
    """POST /v1/customization/targets: Customizer's target body; ftc reads the model from model_path
    (name, version, num_parameters and precision come from the folder, not from what is typed)."""

    model_path: Annotated[ShellText, Field(min_length=1, max_length=4096)]
    num_parameters: Annotated[int, Field(ge=1, le=10**15)] | None = None
    precision: Literal["int8", "bf16", "fp16", "fp32", "fp8-mixed", "bf16-mixed"] | None = None
    name: Name | None = None
    namespace: Name | None = None
    base_model: Text | None = None
    description: Text | None = None
    enabled: bool | None = None
    model_uri: Text | None = None


class Pagination(BaseModel):
    page: int
    page_size: int
    current_page_size: int
    total_pages: int
    total_results: int


class JobWarning(BaseModel):
    """Customizer's JobWarning ({message, explanation}), and the field it is about."""

    message: str
    explanation: str | None = None
    field: str | None = None


class MetricValue(BaseModel):
    step: int
    epoch: float
    value: float


class Metrics(BaseModel):
    keys: list[Literal["train_loss", "val_loss"]]
    metrics: dict[Literal["train_loss", "val_loss"], list[MetricValue]]


class StatusLog(BaseModel):
    updated_at: str
    message: str
    detail: str | None = None


class StatusDetails(BaseModel):
    """Customizer's CustomizationStatusDetails, typed as its SDK types them; ftc's extra fields after."""

    model_config = ConfigDict(extra="allow")

    created_at: str
    updated_at: str
    status: JobStatus
    steps_completed: int | None = None
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    epochs_completed: int | None = None
    best_epoch: int | None = Field(None, description="whole epochs done when the best validation loss was seen")
    percentage_done: float | None = None
    elapsed_time: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    metrics: Metrics | None = None
    status_logs: list[StatusLog] = Field(default_factory=list)


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
    status_details: dict = Field(description="StatusDetails, as JSON (the dashboard reads it as such)")
    warnings: list[JobWarning] = Field(default_factory=list)
    ownership: dict = Field(default_factory=dict,
                            description="Customizer's Ownership: created_by, the login name that owns the run folder")


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]
    pagination: Pagination
