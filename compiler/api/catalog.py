"""Customizer's registries over ftc's own facts: configs and targets from the model configs, output
models from the run folders.

A target is a base model (Customizer's `CustomizationTarget`); a config is a target and its
training options per GPU (`CustomizationConfig`); an output model is a completed run's adapter or
weights (`Model`, under the run's output name). Nothing here is stored apart from what it
describes: a shipped model's numbers come from its config, an output model from its run's plan.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from ftc.compiler.runs.runstate import RunView

# Precision the runtime trains in on a GPU (bf16; fp32 on a CPU partition): what a target is served in.
PRECISION = "bf16"
# A folder's weight dtype, as modelfolder's reader names it -> Customizer's precision.
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "int8": "int8"}


def precision_of(model) -> str:
    """A user's folder: the dtype of its weights, as read; a shipped model: what ftc trains it in."""
    if model.source != "local":
        return PRECISION
    from ftc.compiler.modelfolder.route import read_cached

    return DTYPES.get(read_cached(model.path).dtype, PRECISION)


def _iso(path: str | None) -> str | None:
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc).isoformat(timespec="seconds") if path else None
    except OSError:
        return None


def target_of(model) -> dict:
    """A shipped model config or a user's folder (a validated ModelConfig) as Customizer's target."""
    ready = model.source != "hub" or os.path.isdir(model.path)  # tiny and smollm2 are built by the runtime itself
    return {
        "id": f"{model.namespace}/{model.name}@{model.version}",
        "namespace": model.namespace, "name": f"{model.name}@{model.version}",
        "base_model": f"{model.namespace}/{model.name}",
        "model_path": model.path, "model_uri": f"{model.source}://{model.namespace}/{model.name}",
        "model_type": "hf", "num_parameters": model.architecture.parameters, "precision": precision_of(model),
        "status": "ready" if ready else "created", "enabled": True,
        "created_at": _iso(model.path if ready and model.source in ("hub", "local") else None),
        "family": model.architecture.family, "max_seq_length": model.architecture.max_seq_length,
        "gpus": sorted(model.training_options),
    }


def config_of(model, variant: str, options: list) -> dict:
    """One model and GPU variant as Customizer's config (name = the URN the jobs endpoint takes)."""
    return {
        "id": model.urn(variant), "name": model.urn(variant).partition("/")[2], "namespace": model.namespace,
        "base_model": model.name, "version": model.version, "gpu": variant,
        "target": f"{model.namespace}/{model.name}@{model.version}", "training_precision": PRECISION,
        "max_seq_length": model.architecture.max_seq_length,
        # micro_batch_size is Customizer's required per-GPU batch; ftc solves it per job (plan.topology), 1 is its floor.
        "training_options": [{**o.model_dump(), "micro_batch_size": 1} for o in options],
    }


def output_model(view: RunView) -> dict | None:
    """A completed run's output as Customizer's Model: `namespace/name@version` = the plan's output name."""
    if view.state != "completed":
        return None
    plan = view.plan
    name = plan.get("output_name") or ""
    namespace, _, rest = name.partition("/")
    method = (plan.get("job") or {}).get("method") or {}
    finetuning = method.get("finetuning_type") or "all_weights"
    outputs = str(view.run_dir / "output")
    model = {
        "id": name, "namespace": namespace, "name": rest, "base_model": plan.get("model_urn", "").partition("+")[0],
        "created_at": _iso(outputs) or _iso(str(view.run_dir / "plan.json")),
        "description": f"ftc run {view.run_id}",
        "artifact": {"files_url": f"file://{outputs}", "status": "upload_completed",
                     "backend_engine": "hugging_face", "precision": plan.get("precision")},
        "peft": {"finetuning_type": finetuning},
        "custom_fields": {"ftc_run_id": view.run_id, "run_dir": str(view.run_dir)},
    }
    return model
