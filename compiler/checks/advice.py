"""The NeMo Customizer guide's advice, as checks on a request and its training-set size.

Warnings are risks a user may knowingly take (`strict` turns them into errors); errors are
requests that cannot train as asked.
"""

from __future__ import annotations

from ftc.compiler.config.schema import JobConfig

LORA_MAX_LEARNING_RATE = 5e-4  # above this LoRA training tends to diverge
LARGE_ADAPTER_DIM = 32
SMALL_FOR_LARGE_ADAPTER = 1_000  # rows under which a rank >= 32 adapter overfits
FULL_SFT_MIN_ROWS = 2_000  # rows under which all-weights SFT mostly forgets
DPO_MIN_PAIRS = 5_000


def advise(job: JobConfig, training_rows: int | None) -> tuple[list[str], list[str]]:
    """(warnings, errors), each a line naming the field to change. Row-count checks are skipped
    when `training_rows` is unknown."""
    method, warnings, errors = job.method, [], []
    # The advice is for pretrained bases. ftc's tiny model is random-init and learns the demo task from
    # scratch: its recipe (conf/recipe/tiny-*.yaml) sets 5e-3 deliberately, so it gets no warning.
    if method.uses_lora and method.learning_rate > LORA_MAX_LEARNING_RATE and job.model.source != "tiny":
        warnings.append(
            f"method.learning_rate: {method.learning_rate:g} is above {LORA_MAX_LEARNING_RATE:g} for LoRA; "
            "adapters tend to diverge at such rates (1e-4 to 2e-4 is the usual range)"
        )
    if method.name == "grpo" and method.reward is None:
        errors.append(
            "method.reward: GRPO needs a programmatic reward (kind exact_match, regex, json_schema or function); "
            "set method.reward.kind"
        )
    if training_rows is None:
        return warnings, errors
    rows = f"{training_rows:,} training rows"
    if method.uses_lora and method.lora.adapter_dim >= LARGE_ADAPTER_DIM and training_rows < SMALL_FOR_LARGE_ADAPTER:
        warnings.append(
            f"method.lora.adapter_dim: {method.lora.adapter_dim} with {rows} risks overfitting; "
            f"use 8 or 16 below {SMALL_FOR_LARGE_ADAPTER:,} rows"
        )
    full_sft = method.training_type == "sft" and method.base_finetuning_type == "all_weights"
    if full_sft and training_rows < FULL_SFT_MIN_ROWS and not job.data.replay.path:
        warnings.append(
            f"method.finetuning_type: all_weights SFT on {rows} (under {FULL_SFT_MIN_ROWS:,}) risks catastrophic "
            "forgetting; use method=lora or mix in general data with data.replay.path"
        )
    if method.name == "dpo" and training_rows < DPO_MIN_PAIRS:
        warnings.append(
            f"data.path: DPO on {training_rows:,} preference pairs (under {DPO_MIN_PAIRS:,}) gives a noisy "
            "preference signal; collect more pairs or lower method.learning_rate"
        )
    return warnings, errors
