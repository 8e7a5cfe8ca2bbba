"""The job schema: the one source of truth for every field, its type, range and default.

Hydra composes a plain config; `JobConfig` validates it. The README's config reference and
`python -m ftc schema` are both generated from these classes.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ftc.compiler.config.fields import (
    MAX_COUNT,
    Auto,
    EnvName,
    FinetuningType,
    PathText,
    ShellText,
    Strict,
    TrainingType,
    identifier,
    slurm_minutes,
)
from ftc.compiler.config.gpus import GPUS
from ftc.compiler.config.methods import Method

# ---------------------------------------------------------------- model configs


class Architecture(Strict):
    """The numbers the planner needs; the real ones of the published checkpoint."""

    family: Literal["llama", "mistral", "qwen2"]
    parameters: int = Field(gt=0, description="total parameter count")
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_seq_length: int = Field(gt=0)
    tie_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.attention_heads


class TrainingOption(Strict):
    """One supported way to train a model config, as NeMo Customizer's configs endpoint lists them."""

    training_type: TrainingType
    finetuning_type: FinetuningType
    num_gpus: int = Field(ge=1)
    num_nodes: int = Field(default=1, ge=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    max_seq_length: int = Field(gt=0)


class ModelConfig(Strict):
    namespace: str
    name: str
    version: str
    source: Literal["hub", "tiny"] = Field("hub", description="'tiny' is built offline by the runtime")
    path: ShellText = Field(description="where the weights are on the cluster; an admin may use ${oc.env:...}")
    architecture: Architecture
    training_options: dict[str, list[TrainingOption]] = Field(
        description="supported options per GPU variant (A100, H100, ...)"
    )
    variant: str | None = Field(None, description="the +VARIANT asked for by model.urn; must match the partition's GPU")

    @field_validator("namespace", "name")
    @classmethod
    def _names(cls, value: str) -> str:
        return identifier(value)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"v\d{1,9}(\.\d{1,9}){0,5}", value):
            raise ValueError(f"must look like v1.0.0 (got {value!r})")
        return value

    def urn(self, variant: str) -> str:
        return f"{self.namespace}/{self.name}@{self.version}+{variant}"


# ---------------------------------------------------------------- data


class Replay(Strict):
    path: PathText | None = Field(None, description="general instruction data mixed in against forgetting")
    fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share of training rows taken from the replay set")


class DataConfig(Strict):
    name: str = Field(description="dataset name; part of the output name")
    path: PathText = Field(description="folder holding training/ and validation/ NDJSON files")
    format: Literal["auto", "prompt_completion", "chat", "preference", "prompt_answer"] = "auto"
    max_seq_length: int | Auto = "auto"
    packing: bool = False
    replay: Replay = Field(default_factory=Replay)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return identifier(value)

    @field_validator("max_seq_length")
    @classmethod
    def _seq_len(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= MAX_COUNT:
            raise ValueError(f"must be auto or a whole number of tokens from 1 to {MAX_COUNT} (got {value})")
        return value


# ---------------------------------------------------------------- cluster


class Partition(Strict):
    gpu: str = Field(description=f"one of {', '.join(GPUS)}")
    gpus_per_node: int = Field(ge=0)
    max_nodes: int = Field(1, ge=1)
    max_time: str = "1-00:00:00"
    cpus_per_node: int = Field(8, ge=1)
    mem_per_node_gb: int = Field(64, ge=1)
    constraint: ShellText | None = Field(None, description="sbatch --constraint, e.g. h100")

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, value: str) -> str:
        if value not in GPUS:
            raise ValueError(f"unknown GPU {value!r}; known: {', '.join(GPUS)}")
        return value

    @field_validator("max_time")
    @classmethod
    def _time(cls, value: str) -> str:
        slurm_minutes(value)
        return value


class Container(Strict):
    kind: Literal["none", "pyxis", "apptainer"] = "none"
    image: ShellText | None = None
    mounts: list[ShellText] = Field(default_factory=list)

    @model_validator(mode="after")
    def _image(self) -> "Container":
        if self.kind != "none" and not self.image:
            raise ValueError(f"cluster.container.image: container kind {self.kind} needs cluster.container.image")
        return self


class ClusterConfig(Strict):
    name: str
    executor: Literal["local", "slurm"]
    partition: str = Field(description="the partition to run in; a key of cluster.partitions")
    partitions: dict[str, Partition] = Field(min_length=1)
    account: ShellText | None = None
    qos: ShellText | None = None
    gpu_request: Literal["gpus-per-node", "gres"] = Field(
        "gpus-per-node", description="how GPUs are asked for: --gpus-per-node=N or --gres=gpu:TYPE:N"
    )
    gres_name: ShellText | None = Field(None, description="the TYPE in --gres=gpu:TYPE:N; defaults to the partition name")
    srun_mpi: ShellText | None = Field(None, description="srun --mpi value, e.g. pmix")
    container: Container = Field(default_factory=Container)
    setup: list[str] = Field(default_factory=list, description="admin shell lines run before the launch (module load ...)")
    env: dict[EnvName, ShellText] = Field(default_factory=dict, description="environment exported in the job")
    sbatch_extra: dict[str, ShellText | None] = Field(
        default_factory=dict, description="extra #SBATCH directives admins allow; null: an option without a value")
    template_dir: str | None = Field(None, description="folder of Jinja2 templates that override ftc's blocks")
    array_parallelism: int = Field(8, ge=1, description="K in --array=0-N%K for sweeps")
    requeue_signal_seconds: int = Field(300, ge=30, le=65535, description="Slurm sends USR1 this long before the time limit")

    @model_validator(mode="after")
    def _partition_exists(self) -> "ClusterConfig":
        if self.partition not in self.partitions:
            raise ValueError(
                f"cluster.partition: unknown partition {self.partition!r}; choose from {', '.join(self.partitions)}"
            )
        return self

    @property
    def chosen(self) -> Partition:
        return self.partitions[self.partition]


# ---------------------------------------------------------------- resources and training


class Resources(Strict):
    """Topology and memory knobs; `auto` lets the planner choose."""

    nodes: int | Auto = Field("auto")
    gpus_per_node: int | Auto = Field("auto")
    tensor_parallel: int | Auto = Field("auto")
    zero_stage: Literal[0, 1, 2, 3] | Auto = Field("auto")
    micro_batch_size: int | Auto = Field("auto")
    gradient_checkpointing: bool | Auto = Field("auto")
    time: str | Auto = Field("auto", description="sbatch --time; auto is the estimate plus a margin")
    headroom: float = Field(0.10, ge=0.0, lt=0.5, description="GPU memory kept free by the fit check")
    mfu: float = Field(0.35, ge=0.01, le=1.0, description="assumed model FLOP utilisation for the run-time estimate")

    @field_validator("nodes", "gpus_per_node", "tensor_parallel", "micro_batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= MAX_COUNT:
            raise ValueError(f"must be auto or from 1 to {MAX_COUNT} (got {value})")
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        if value != "auto":
            slurm_minutes(value)
        return value


class EarlyStopping(Strict):
    enabled: bool = True
    patience: int = Field(10, ge=1, le=MAX_COUNT, description="validation checks without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, le=1e6)


class Training(Strict):
    seed: int = Field(42, ge=0, le=2**32 - 1, description="0 to 2**32-1, the range numpy's seed takes")
    eval_steps: int = Field(10, ge=1, le=MAX_COUNT, description="validate every this many optimizer steps")
    save_steps: int = Field(50, ge=1, le=MAX_COUNT, description="checkpoint every this many optimizer steps")
    logging_steps: int = Field(1, ge=1, le=MAX_COUNT)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list)


class GeneralEval(Strict):
    path: PathText | None = Field(None, description="a general NDJSON set; its drop after training warns of forgetting")
    max_drop_points: float = Field(2.0, ge=0.0, le=100.0)


class EvalConfig(Strict):
    before: bool = True
    max_rows: int = Field(200, ge=1, le=MAX_COUNT)
    general: GeneralEval = Field(default_factory=GeneralEval)


class JobConfig(Strict):
    """A whole fine-tuning request, as composed by Hydra."""

    name: str = Field(description="job name; part of the run folder")
    namespace: str = "default"
    output_root: PathText = Field(description="run folders go to <output_root>/<namespace>/<name>/<run_id>")
    dry_run: bool = False
    strict: bool = Field(False, description="turn warnings into errors")
    preflight: bool = Field(True, description="ask Slurm with sbatch --test-only before submitting")
    detach: bool = Field(False, description="local executor: run in the background")
    model: ModelConfig
    method: Method
    data: DataConfig
    cluster: ClusterConfig
    resources: Resources = Field(default_factory=Resources)
    training: Training = Field(default_factory=Training)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("name", "namespace")
    @classmethod
    def _names(cls, value: str) -> str:
        return identifier(value)


# Fields that change nothing in the files a plan writes, so they stay out of the run id.
RUN_ID_EXCLUDED = ("dry_run", "strict", "preflight", "detach")
# Admin-only fields: raw shell, templates and guard rails never come from a command-line override.
ADMIN_ONLY = ("cluster.setup", "cluster.template_dir", "cluster.sbatch_extra", "cluster.env", "model.training_options")
