"""The fine-tuning methods and their hyperparameters, under NeMo Customizer's names.

`Method` is the schema's discriminated union on `method.name`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from ftc.compiler.config.fields import MAX_COUNT, FinetuningType, PathText, Strict, TrainingType


class LoraParams(Strict):
    adapter_dim: int = Field(8, description="LoRA rank r: a power of 2 up to 256")
    alpha: int = Field(16, ge=1, le=2**16, description="scaling numerator; the update is scaled by alpha/adapter_dim")
    adapter_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear",
        description="linear layers that get adapters: all-linear (PEFT's meaning: every linear layer of the blocks, "
        "not the LM head), or their names, checked against the model's own (e.g. [q_proj, v_proj]; Phi-3: qkv_proj)",
    )

    @field_validator("adapter_dim")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 1 or value > 256 or value & (value - 1):
            raise ValueError(f"must be a power of 2 up to 256 (got {value})")
        return value

    @field_validator("target_modules")
    @classmethod
    def _module_names(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            return value
        if not 1 <= len(value) <= 64:
            raise ValueError(f"must be all-linear or 1 to 64 module names (got {len(value)})")
        for name in value:
            if not MODULE_NAME.fullmatch(name):
                raise ValueError(f"{name[:60]!r} is not a module name like q_proj or mlp.down_proj")
        return value


MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,4}")


class MethodBase(Strict):
    epochs: int = Field(3, ge=1, le=10_000)
    batch_size: int = Field(16, ge=1, le=2**20, description="global batch size, in sequences per optimizer step")
    learning_rate: float = Field(1e-4, gt=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0, lt=1.0)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "cosine"
    max_steps: int | None = Field(None, ge=1, le=MAX_COUNT, description="stop after this many optimizer steps (overrides epochs)")

    @property
    def training_type(self) -> TrainingType:
        return {"lora": "sft", "sft": "sft", "dpo": "dpo", "grpo": "grpo"}[self.name]  # type: ignore[attr-defined]

    @property
    def uses_lora(self) -> bool:
        return self.finetuning_type in ("lora", "lora_merged")  # type: ignore[attr-defined]

    @property
    def base_finetuning_type(self) -> FinetuningType:
        return "lora" if self.uses_lora else "all_weights"


class LoraMethod(MethodBase):
    """Supervised fine-tuning of LoRA adapters; the base stays frozen."""

    name: Literal["lora"]
    finetuning_type: Literal["lora", "lora_merged"] = "lora"
    lora: LoraParams = Field(default_factory=LoraParams)


class SftMethod(MethodBase):
    """Supervised fine-tuning of all weights."""

    name: Literal["sft"]
    finetuning_type: Literal["all_weights"] = "all_weights"


class DpoMethod(MethodBase):
    """Direct preference optimisation on chosen/rejected pairs."""

    name: Literal["dpo"]
    finetuning_type: Literal["lora", "all_weights"] = "lora"
    beta: float = Field(0.1, gt=0.0, le=1000.0, description="strength of the KL penalty towards the reference")
    lora: LoraParams = Field(default_factory=LoraParams)


class Reward(Strict):
    """A programmatic reward, as the NeMo guide recommends for GRPO."""

    kind: Literal["exact_match", "regex", "json_schema", "function"]
    pattern: str | None = Field(None, description="regex, for kind=regex")
    schema_path: PathText | None = Field(None, description="JSON Schema file, for kind=json_schema")
    function: str | None = Field(None, description="'module:function', for kind=function")
    normalize: bool = Field(False, description="kind=exact_match: ignore case and spacing (else only outer whitespace)")

    @model_validator(mode="after")
    def _needs_its_argument(self) -> "Reward":
        needed = {"regex": "pattern", "json_schema": "schema_path", "function": "function"}.get(self.kind)
        if needed and not getattr(self, needed):
            raise ValueError(f"reward kind {self.kind} needs method.reward.{needed}")
        if self.kind == "regex":
            try:
                re.compile(self.pattern or "")
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from None
        if self.kind == "function" and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", self.function or "", re.ASCII):
            raise ValueError(f"method.reward.function: must be 'module:function' (got {self.function!r})")
        return self


class GrpoMethod(MethodBase):
    """Group relative policy optimisation with a programmatic reward."""

    name: Literal["grpo"]
    finetuning_type: Literal["lora", "all_weights"] = "lora"
    num_generations: int = Field(4, ge=2, le=1024, description="completions sampled per prompt")
    max_completion_length: int = Field(64, ge=1, le=2**20)
    reward: Reward | None = None
    lora: LoraParams = Field(default_factory=LoraParams)


Method = Annotated[Union[LoraMethod, SftMethod, DpoMethod, GrpoMethod], Field(discriminator="name")]
