"""One TRL trainer per method, with every knob taken from the plan.

TRL's configs carry defaults meant for a GPU notebook (bf16 on, gradient checkpointing on, 8
generations); each is set here explicitly, so the plan alone decides how the run trains.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import warnings
from pathlib import Path

import torch

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.planning.plan import Plan
from ftc.runtime import distributed

CONFIGS = {"lora": "SFTConfig", "sft": "SFTConfig", "dpo": "DPOConfig", "grpo": "GRPOConfig"}
TRAINERS = {"lora": "SFTTrainer", "sft": "SFTTrainer", "dpo": "DPOTrainer", "grpo": "GRPOTrainer"}


def use_bf16(plan: Plan) -> bool:
    """bf16 on GPUs when the plan says so; fp32 on CPU whatever TRL's default."""
    return plan.precision == "bf16" and distributed.has_gpu()


def load_dtype(plan: Plan) -> torch.dtype:
    """Frozen bases and DeepSpeed runs (which keep fp32 master weights) load in bf16; the rest in fp32 with autocast."""
    if use_bf16(plan) and (plan.job.method.uses_lora or plan.deepspeed):
        return torch.bfloat16
    return torch.float32


def attention(plan: Plan) -> str | None:
    """Packed batches want varlen flash attention; without it (CPU, sdpa) the flattened batch's mask costs O(n^2)."""
    packed = plan.job.data.packing and plan.job.method.name in ("lora", "sft")
    if packed and use_bf16(plan) and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def ds_config_path(plan: Plan) -> str | dict | None:
    """RUN_DIR/ds_config.json; a corrected copy when a bf16 plan lands on a node without a GPU."""
    if not plan.deepspeed:
        return None
    path = Path(plan.run_dir) / "ds_config.json"
    try:
        config = records.read_json_file(path, inside=path.parent) or copy.deepcopy(plan.deepspeed)
    except records.RecordError as exc:
        raise UserError(f"{exc}; recompile the run") from None
    if bool(config.get("bf16", {}).get("enabled")) != use_bf16(plan):
        if distributed.is_main():
            warnings.warn("no GPU here: training in fp32, not the plan's bf16", stacklevel=2)
        config["bf16"] = {"enabled": use_bf16(plan)}
        return config
    return str(path) if path.is_file() else config


def report_to(plan: Plan) -> list[str]:
    """The loggers asked for that are installed here; the others are skipped with a warning."""
    wanted = list(plan.job.training.report_to)
    found = []
    for name in wanted:
        module = name  # tensorboard, mlflow, wandb: each imports by its report_to name
        if importlib.util.find_spec(module) is None:
            if distributed.is_main():
                warnings.warn(f"training.report_to: {name} is not installed on this node; not logging to it", stacklevel=2)
            continue
        found.append(name)
    if "tensorboard" in found:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(Path(plan.run_dir) / "tensorboard"))
    if "mlflow" in found:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (Path(plan.run_dir) / "mlruns").as_uri())
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3.x refuses a file store without it
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", plan.job.name)
        os.environ.setdefault("MLFLOW_RUN_NAME", plan.run_id)
    return found or ["none"]


def _grad_clip(plan: Plan) -> float:
    return float((plan.deepspeed or {}).get("gradient_clipping", 1.0))


def common_args(plan: Plan) -> dict:
    """TrainingArguments shared by all methods."""
    method, training, topo = plan.job.method, plan.job.training, plan.topology
    return {
        "output_dir": str(Path(plan.run_dir) / "checkpoints"),
        "per_device_train_batch_size": topo.micro_batch_size,
        "per_device_eval_batch_size": topo.micro_batch_size,
        "gradient_accumulation_steps": topo.gradient_accumulation_steps,
        "activation_checkpointing": topo.gradient_checkpointing,
        "num_train_epochs": method.epochs,
        "max_steps": method.max_steps or -1,
        "learning_rate": method.learning_rate,
        "lr_scheduler_type": method.lr_scheduler,
        "warmup_steps": method.warmup_ratio,
        "weight_decay": method.weight_decay,
        "max_grad_norm": _grad_clip(plan),
        "seed": training.seed,
        "eval_strategy": "steps",
        "eval_steps": training.eval_steps,
        "save_strategy": "steps",
        "save_steps": training.save_steps,
        "save_total_limit": None,
        "logging_strategy": "steps",
        "logging_steps": training.logging_steps,
        "report_to": report_to(plan),
        "bf16": use_bf16(plan),
        "fp16": False,
        "deepspeed": ds_config_path(plan),
        "use_cpu": not distributed.has_gpu() and not plan.deepspeed,
        "ddp_backend": "gloo" if distributed.world_size() > 1 and not distributed.has_gpu() else None,
        "ddp_find_unused_parameters": False if distributed.world_size() > 1 else None,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": distributed.has_gpu(),
        "disable_tqdm": False,
        "log_level": "warning",
        "save_only_model": False,
        "accelerator_config": {"use_configured_state": distributed.needs_configured_state(bool(plan.deepspeed))},
    }


def build_args(plan: Plan):
    """The TRL config; built before the model so ZeRO-3 can partition the model as it loads."""
    import trl

    from ftc.compiler.planning.memory import plan_gathers_for_generation

    method = plan.job.method
    kwargs = common_args(plan)
    if method.name in ("lora", "sft"):
        kwargs.update(max_length=plan.max_seq_length, packing=plan.job.data.packing, packing_strategy="bfd")
        if plan.job.data.packing:
            kwargs.update(padding_free=True)
    elif method.name == "dpo":
        # TRL zeroes every dropout for DPO by default; ftc keeps what method.lora.adapter_dropout says.
        kwargs.update(max_length=plan.max_seq_length, beta=method.beta, disable_dropout=False)
    elif method.name == "grpo":
        ng = method.num_generations
        global_micro = plan.topology.micro_batch_size * plan.topology.world_size
        per_step = global_micro * plan.topology.gradient_accumulation_steps
        kwargs.update(
            num_generations=ng,
            max_completion_length=method.max_completion_length,
            generation_batch_size=per_step * ng // math.gcd(per_step, ng),
            per_device_eval_batch_size=ng,
            use_vllm=False,
            log_completions=False,
            # Under ZeRO-3: gather the whole model for generation only where the planner counted it.
            ds3_gather_for_generation=plan_gathers_for_generation(plan),
        )
    return getattr(trl, CONFIGS[method.name])(**kwargs)


def lora_config(plan: Plan):
    from peft import LoraConfig

    lora = plan.job.method.lora
    return LoraConfig(
        r=lora.adapter_dim,
        lora_alpha=lora.alpha,
        lora_dropout=lora.adapter_dropout,
        target_modules=list(plan.lora_targets) or lora.target_modules,  # resolved at compile time
        bias="none",
        task_type="CAUSAL_LM",
    )


def reference_model(plan: Plan, model):
    """DPO's frozen reference for all-weights training; under ZeRO-3 TRL reloads it partitioned instead."""
    if plan.job.method.uses_lora or plan.topology.zero_stage == 3:
        return None
    ref = copy.deepcopy(model)
    ref.eval()
    for param in ref.parameters():
        param.requires_grad_(False)
    return ref


def build_trainer(plan: Plan, args, model, tokenizer, train_ds, val_ds, callbacks: list):
    """The TRL trainer for the plan's method; LoRA methods wrap the base in a fresh adapter.

    GRPO validates by sampling completions, so its validation set is capped at eval.max_rows prompts.
    """
    import trl

    from ftc.runtime.chat import prepare, uses_chat_template

    method = plan.job.method
    if method.name == "grpo" and len(val_ds) > plan.job.eval.max_rows:
        val_ds = val_ds.select(range(plan.job.eval.max_rows))
    chat = uses_chat_template(plan, tokenizer)
    train_ds, val_ds = (prepare(ds, tokenizer, method.name, chat) for ds in (train_ds, val_ds))
    common = {
        "model": model,
        "args": args,
        "train_dataset": train_ds,
        "eval_dataset": val_ds,
        "processing_class": tokenizer,
        "callbacks": callbacks,
        "peft_config": lora_config(plan) if method.uses_lora else None,
    }
    if method.name == "dpo":
        common["ref_model"] = reference_model(plan, model)
    if method.name == "grpo":
        from ftc.runtime.reward_watch import ZeroRewardWarning
        from ftc.runtime.rewards import build_rewards

        common["reward_funcs"] = build_rewards(method.reward)
        # The run's status (held by ftc's callbacks) also carries the warning.
        status = next((c.status for c in callbacks if hasattr(c, "status") and hasattr(c.status, "data")), None)
        common["callbacks"] = [*callbacks, ZeroRewardWarning(status)]
    return getattr(trl, TRAINERS[method.name])(**common)


def describe(plan: Plan, args) -> str:
    """One line for the log: what trains, and how."""
    topo = plan.topology
    parts = {
        "method": plan.job.method.name,
        "finetuning": plan.job.method.finetuning_type,
        "world": topo.world_size,
        "zero": topo.zero_stage,
        "micro_batch": topo.micro_batch_size,
        "grad_accum": topo.gradient_accumulation_steps,
        "bf16": args.bf16,
        "max_len": plan.max_seq_length,
    }
    return json.dumps(parts)
