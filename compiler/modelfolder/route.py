"""The user's own model on the plan's path: `model=custom model.path=DIR`, and `model.path` on a shipped model.

A custom model's architecture, name, version (the hash of its config.json) and training options come from
its folder; a shipped model's typed numbers are checked against the folder it points to when that is
readable. The site decides whether users may bring models and under which folders (cluster.user_models,
cluster.model_paths), checked on the resolved path, so a link cannot lead outside them.
"""

from __future__ import annotations

import os
from functools import lru_cache

from ftc.compiler.errors import UserError
from ftc.compiler.modelfolder.reader import ModelInfo, read_model_folder

# Numbers a shipped model file types that a folder's config.json must agree with.
COMPARED = ("family", "layers", "hidden_size", "attention_heads", "kv_heads", "head_dim", "intermediate_size",
            "vocab_size", "tie_embeddings", "experts", "experts_per_token")
PARAMETER_TOLERANCE = 0.005
METHODS = (("sft", "lora"), ("sft", "all_weights"), ("dpo", "lora"), ("dpo", "all_weights"),
           ("grpo", "lora"), ("grpo", "all_weights"))
VERSION_CHARS = 12
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def _signature(folder: str) -> tuple:
    """What makes a cached read stale: config.json's and every weight file's size and mtime."""
    try:
        names = sorted(n for n in os.listdir(folder) if n == "config.json" or ".safetensors" in n)
        return tuple((n, os.stat(os.path.join(folder, n)).st_size, os.stat(os.path.join(folder, n)).st_mtime_ns)
                     for n in names)
    except OSError:
        return ()


@lru_cache(maxsize=32)
def _read(folder: str, signature: tuple) -> ModelInfo:
    return read_model_folder(folder)


def read_cached(path: str) -> ModelInfo:
    """read_model_folder, once per process for an unchanged folder (a sweep reads it once)."""
    folder = os.path.realpath(path) if isinstance(path, str) and path.strip() else path
    if isinstance(folder, str) and os.path.isdir(folder):
        return _read(folder, _signature(folder))
    return read_model_folder(path)


def check_policy(cluster, path: str) -> None:
    """The site's say: user models allowed at all, and only under its model_paths (links resolved)."""
    if not cluster.user_models:
        raise UserError(f"model.path: cluster {cluster.name} does not allow users' own models; "
                        "choose a shipped model (ftc configs) or ask the site's admins")
    if cluster.model_paths:
        real = os.path.realpath(path)
        allowed = [os.path.realpath(p) for p in cluster.model_paths]
        if not any(real == a or real.startswith(a.rstrip("/") + "/") for a in allowed):
            shown = f" (resolved to {real})" if real != os.path.normpath(path) else ""
            raise UserError(f"model.path: {path}{shown} is outside the folders cluster {cluster.name} allows for "
                            f"models: {', '.join(cluster.model_paths)}")


def training_options(cluster, max_seq_length: int) -> dict:
    """A custom model trains every method on every GPU variant of the cluster, up to its nodes and GPUs."""
    gpus = max(1, max(p.gpus_per_node for p in cluster.partitions.values()))
    nodes = max(p.max_nodes for p in cluster.partitions.values())
    variants = sorted({cluster.gpu_spec(p.gpu).variant for p in cluster.partitions.values()})
    from ftc.compiler.config.schema import TrainingOption

    rows = [TrainingOption(training_type=t, finetuning_type=f, num_gpus=gpus, num_nodes=nodes,
                           tensor_parallel_size=1, max_seq_length=max_seq_length) for t, f in METHODS]
    return {v: rows for v in variants}


def attach_model(job):
    """The job with its model read from its folder: a custom model filled in, a shipped one checked."""
    from ftc.compiler.config.schema import Architecture

    model = job.model
    if model.source == "local" or model.architecture == "auto":
        if model.source == "local":
            check_policy(job.cluster, model.path)
        info = read_cached(model.path)
        if not any(os.path.isfile(os.path.join(info.path, f)) for f in TOKENIZER_FILES):
            raise UserError(f"model.path: {model.path} has no tokenizer ({', '.join(TOKENIZER_FILES)}); save it beside "
                            "the weights: tokenizer.save_pretrained(DIR)")
        arch = Architecture.model_validate(info.architecture())
        update = {
            "name": info.name if model.name == "auto" else model.name,
            "version": info.config_sha256[:VERSION_CHARS] if model.version == "auto" else model.version,
            "architecture": arch,
            "training_options": model.training_options or training_options(job.cluster, arch.max_seq_length),
        }
        return job.model_copy(update={"model": model.model_copy(update=update)})
    if not _readable_folder(model.path):
        return job
    if model.source in ("tiny", "smollm2") and _built_by_ftc(model.path):
        return job
    info = read_cached(model.path)
    differences = differ(model.architecture, info)
    if differences:
        raise UserError(f"model.path: {model.path} does not hold {model.namespace}/{model.name} "
                        f"({'; '.join(differences)}); for your own model use model=custom model.path={model.path}")
    arch = model.architecture.model_copy(update={"linear": {k: list(v) for k, v in info.linear.items()},
                                                 "sources": {**info.sources, "checked": "config.json agrees"}})
    return job.model_copy(update={"model": model.model_copy(update={"architecture": arch})})


def differ(arch, info: ModelInfo) -> list[str]:
    """What a typed architecture says that the folder's config.json and weights do not."""
    read = info.architecture()
    out = [f"{k} {getattr(arch, k)} in the model file, {read[k]} in config.json" for k in COMPARED if getattr(arch, k) != read[k]]
    if abs(arch.parameters - info.num_parameters) > PARAMETER_TOLERANCE * info.num_parameters:
        out.append(f"parameters {arch.parameters} in the model file, {info.num_parameters} in the weights")
    return out


def _readable_folder(path: str) -> bool:
    return os.path.isabs(path) and os.path.isfile(os.path.join(path, "config.json"))


def _built_by_ftc(path: str) -> bool:
    """A tiny or SmolLM2 folder ftc built into its cache (checked by the runtime's own fingerprint)."""
    return any(os.path.isfile(os.path.join(path, marker)) for marker in ("ftc-tiny.json",))


def user_models(cluster) -> list[tuple[str, ModelInfo | str]]:
    """Model folders under the site's allowed paths (one level down): (folder, what it holds or why not)."""
    found = []
    for root in cluster.model_paths if cluster.user_models else []:
        try:
            names = sorted(os.listdir(root))[:500]
        except OSError:
            continue
        for name in names:
            folder = os.path.join(root, name)
            if os.path.isfile(os.path.join(folder, "config.json")):
                try:
                    found.append((folder, read_cached(folder)))
                except UserError as exc:
                    found.append((folder, str(exc)))
    return found
