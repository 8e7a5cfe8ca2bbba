"""The plan: everything the nodes need, decided on the login node and written once as plan.json.

The runtime reads nothing else. It is a pure value: building it has no side effects.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ftc.compiler.config.schema import JobConfig
from ftc.compiler.planning.versions import PLAN_SCHEMA


class Frozen(BaseModel):
    # protected_namespaces=(): pydantic before 2.10 warns on the field `model_urn` (prefix "model_").
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Topology(Frozen):
    """The resolved layout: no `auto` is left here."""

    nodes: int = Field(ge=1)
    gpus_per_node: int = Field(ge=1, description="processes per node (GPUs; CPU workers on a CPU partition)")
    tensor_parallel: int = Field(1, ge=1)
    zero_stage: Literal[0, 1, 2, 3] = 0
    micro_batch_size: int = Field(ge=1)
    gradient_accumulation_steps: int = Field(ge=1)
    gradient_checkpointing: bool = False

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def data_parallel(self) -> int:
        return self.world_size // self.tensor_parallel


class DatasetSummary(Frozen):
    """What the compile step learned by reading every dataset line."""

    path: str
    format: Literal["prompt_completion", "chat", "text", "preference", "prompt_answer"] = Field(
        description="the kind of canonical rows the runtime trains on"
    )
    row_format: str = Field("", description="the format the rows were read as (data.format, or detected)")
    validation_from: str = Field("folder", description="folder: the data's own validation split; else the split rule")
    rows: dict[str, int] = Field(description="rows per split: training, validation (and replay)")
    long_rows: dict[str, int] = Field(default_factory=dict, description="rows estimated above max_seq_length, per split")
    tokens: dict[str, int] = Field(
        default_factory=dict, description="estimated tokens per split (UTF-8 bytes / 4, after truncation)"
    )

    longest_row_bytes: int = Field(
        0, description="UTF-8 bytes of the longest row: a bound on its tokens for byte-level tokenizers"
    )

    def mean_tokens(self, split: str = "training") -> float | None:
        rows = self.rows.get(split, 0)
        return self.tokens.get(split, 0) / rows if rows and self.tokens.get(split) else None


class MemoryItem(Frozen):
    name: str
    gib: float


class MemoryEstimate(Frozen):
    """Per-GPU memory, item by item, against what the GPU holds."""

    items: list[MemoryItem]
    total_gib: float
    capacity_gib: float
    headroom: float
    sequence_length: int = Field(description="tokens per sequence the activations are sized for")
    model_states_gib: float | None = Field(None, description="weights, gradients and optimizer states (with ZeRO's buffers)")
    deepspeed_estimator: str | None = Field(None, description="the DeepSpeed function whose figure model states never go below")
    deepspeed_gib: float | None = Field(None, description="that function's figure for this stage and layout")


class TimeEstimate(Frozen):
    tokens_per_epoch: int
    total_flops: float
    hours: float
    requeues: int = Field(0, description="times the job checkpoints and requeues because it outlasts the partition max")
    parts: dict[str, float] = Field(default_factory=dict, description="seconds: train, generation, eval, load, checkpoints")


class Plan(Frozen):
    plan_schema: int = Field(PLAN_SCHEMA, ge=1, description="plan.json's schema version (see planning/versions.py)")
    ftc_version: str = Field(description="the ftc release that compiled the plan")
    run_id: str
    run_dir: str = Field(description="absolute path of the run folder")
    output_name: str = Field(description="job.output_model (+ @<run_id> without a version), else "
                             "namespace/<base>-<dataset>-<finetuning>@<run_id>, as NeMo Customizer names them")
    model_urn: str
    gpu: str = Field(description="GPU catalogue key of the partition")
    precision: Literal["bf16", "fp32"]
    max_seq_length: int
    job: JobConfig = Field(description="the validated request; resources still as asked (may say auto)")
    topology: Topology
    dataset: DatasetSummary
    deepspeed: dict | None = Field(None, description="the DeepSpeed config written to ds_config.json, when ZeRO is used")
    memory: MemoryEstimate | None = None
    estimate: TimeEstimate | None = None
    time_limit: str = Field(description="sbatch --time")
    lora_targets: list[str] = Field(default_factory=list, description="LoRA: the model's linear layers that get adapters")
    trainable_parameters: int = Field(0, ge=0, description="what the optimizer updates; the runtime checks PEFT's count")
    decisions: list[str] = Field(default_factory=list, description="why each `auto` became what it is")
    warnings: list[str] = Field(default_factory=list)
