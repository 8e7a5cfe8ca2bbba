"""The run's deliverables: a PEFT adapter, a merged model or a full model, and outputs.json.

Call `save_outputs` on every rank: with a trainer, `trainer.save_model` gathers ZeRO-3 shards
(a collective), and only the main process writes files. outputs.json is written last, so its
presence means the folders are complete.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from ftc.compiler.runfolder import write_json

KINDS = {"lora": "adapter", "lora_merged": "merged", "all_weights": "model"}
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
DROPPED = ("training_args.bin",)


def is_main_process(trainer=None) -> bool:
    if trainer is not None:
        return bool(trainer.args.should_save)
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _partitioned(model) -> bool:
    return any(hasattr(p, "ds_id") for p in model.parameters())


def _dtype(model):
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _save(model, tokenizer, folder: Path, trainer, main: bool) -> str:
    """save_pretrained through the trainer when there is one, so ZeRO-3 weights are gathered first."""
    if main and folder.exists():
        shutil.rmtree(folder)
    if trainer is not None:
        trainer.save_model(str(folder))
    elif _partitioned(model):
        raise RuntimeError("the model is partitioned by DeepSpeed ZeRO-3: pass the trainer to save_outputs")
    elif main:
        model.save_pretrained(str(folder))
    if main:
        for name in DROPPED:
            (folder / name).unlink(missing_ok=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder))
        if not any((folder / name).exists() for name in WEIGHTS):
            raise RuntimeError(
                f"no safetensors weights in {folder}; under ZeRO-3 the DeepSpeed config needs "
                "zero_optimization.stage3_gather_16bit_weights_on_model_save=true"
            )
    return str(folder)


def _set_base_model(folder: Path, base_path: str) -> None:
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("base_model_name_or_path") != base_path:
        config["base_model_name_or_path"] = base_path
        write_json(config_path, config)


@contextlib.contextmanager
def _zero3_off():
    """Load a model whole on this rank alone: transformers would otherwise shard it with zero.Init (a collective)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def merge_adapter(base_path: str, adapter_dir: str | Path, merged_dir: str | Path, tokenizer=None, dtype=None) -> str:
    """Merge a saved adapter into a fresh copy of the base, as a serving stack would: no trained state is touched."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = Path(merged_dir)
    if merged_dir.exists():
        shutil.rmtree(merged_dir)
    with _zero3_off():
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype or "auto")
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(merged_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(merged_dir))
    return str(merged_dir)


def file_entries(root: Path, folders: list[str]) -> list[dict]:
    """path (relative to root), bytes and sha256 of every file under the folders."""
    from ftc.runtime.checkpoints import file_digest

    entries = []
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            size, sha = file_digest(path)
            entries.append({"path": str(path.relative_to(root)), "bytes": size, "sha256": sha})
    return entries


def save_outputs(model, tokenizer, plan, trainer=None, report: dict | None = None) -> dict:
    """Write <run_dir>/output/{adapter,merged,model} by plan.job.method.finetuning_type, each with ftc's
    model card (its evaluation from `report`), then outputs.json.

    Returns the outputs.json content (on other ranks: without files).
    """
    from ftc.runtime.modelcard import write_card

    finetuning_type = plan.job.method.finetuning_type
    if finetuning_type not in KINDS:
        raise ValueError(f"unknown finetuning_type {finetuning_type!r}")
    run_dir = Path(plan.run_dir)
    out = run_dir / "output"
    main = is_main_process(trainer)
    paths: dict[str, str] = {}
    if finetuning_type in ("lora", "lora_merged"):
        from peft import PeftModel

        trained = trainer.model if trainer is not None else model
        if trainer is not None:
            trained = trainer.accelerator.unwrap_model(trained)
        if not isinstance(trained, PeftModel):
            raise TypeError(f"finetuning_type {finetuning_type} needs a PeftModel, got {type(trained).__name__}")
        paths["adapter"] = _save(model, tokenizer, out / "adapter", trainer, main)
        if main:
            _set_base_model(out / "adapter", plan.job.model.path)
        if finetuning_type == "lora_merged":
            paths["merged"] = str(out / "merged")
            if main:
                merge_adapter(plan.job.model.path, paths["adapter"], paths["merged"], tokenizer, _dtype(trained))
    else:
        paths["model"] = _save(model, tokenizer, out / "model", trainer, main)

    manifest = {
        "name": plan.output_name,
        "run_id": plan.run_id,
        "kind": KINDS[finetuning_type],
        "base_model_urn": plan.model_urn,
        "paths": paths,
    }
    if main:
        for kind, folder in paths.items():
            write_card(plan, kind, folder, report)
        manifest["files"] = file_entries(run_dir, list(paths.values()))
        manifest["total_bytes"] = sum(f["bytes"] for f in manifest["files"])
        write_json(run_dir / "outputs.json", manifest)
    return manifest
