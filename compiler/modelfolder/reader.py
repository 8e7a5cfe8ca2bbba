"""Read a Hugging Face model folder on the login node: config.json and the safetensors headers, no torch.

`read_model_folder(path)` is the one public entry: it returns a `ModelInfo` (family, the planner's
numbers, the exact parameter count and dtype, the LoRA-able linear layers, and where each number came
from), or raises a one-line UserError naming the folder and what is wrong or unsupported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field

from ftc.compiler.errors import UserError
from ftc.compiler.modelfolder.families import BY_MODEL_TYPE, Family, supported_line, unsupported_kind
from ftc.compiler.modelfolder.layout import Dims, expected_tensors, linear_modules
from ftc.compiler.modelfolder.safetensors import json_object, read_weights

MAX_CONFIG_BYTES = 1_000_000
MAX_DIM = 2**31 - 1
DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


@dataclass(frozen=True)
class ModelInfo:
    """What a model folder holds, read from its files."""

    name: str  # the folder's name, made a valid identifier
    path: str  # the folder, resolved
    family: str
    model_type: str
    num_parameters: int  # transformers' num_parameters(): a tied LM head counted once
    dtype: str  # the weights' dtype (most parameters), else config.json's
    config_sha256: str
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    max_positions: int
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    sliding_window: int | None = None
    linear: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # kind -> (d_in, d_out, count)
    sources: dict[str, str] = field(default_factory=dict)  # number -> where it came from

    @property
    def precision(self) -> str:
        return self.dtype

    def architecture(self) -> dict:
        """The schema's model.architecture for this folder."""
        return {
            "family": self.family, "parameters": self.num_parameters, "layers": self.layers,
            "hidden_size": self.hidden_size, "attention_heads": self.attention_heads, "kv_heads": self.kv_heads,
            "head_dim": self.head_dim, "intermediate_size": self.intermediate_size, "vocab_size": self.vocab_size,
            "max_seq_length": self.max_positions, "tie_embeddings": self.tie_embeddings, "experts": self.experts,
            "experts_per_token": self.experts_per_token, "shared_experts": self.shared_experts,
            "moe_intermediate_size": self.moe_intermediate_size, "sliding_window": self.sliding_window,
            "shared_expert_intermediate_size": self.shared_expert_intermediate_size,
            "linear": {k: list(v) for k, v in self.linear.items()}, "sources": dict(self.sources),
        }


def read_config(folder: str) -> tuple[dict, str]:
    """config.json as a dict and its sha256; one line when it is missing, too large or not a JSON object."""
    path = os.path.join(folder, "config.json")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"model.path: {folder} has no config.json; a Hugging Face model folder "
                        "(save_pretrained) holds config.json, *.safetensors and the tokenizer files") from None
    except OSError as exc:
        raise UserError(f"model.path: {path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"model.path: {path}: larger than {MAX_CONFIG_BYTES} bytes; not a model config")
    return json_object(raw, path), hashlib.sha256(raw).hexdigest()


class _Config:
    """Typed reads of config.json, each recording where its number came from."""

    def __init__(self, config: dict, path: str):
        self.config, self.path, self.sources = config, path, {}

    def int(self, key: str, default: int | None = None, minimum: int = 1, as_: str | None = None) -> int:
        value = self.config.get(key)
        if value is None:
            if default is None:
                raise UserError(f"model.path: {self.path}: no {key}; a {self.config.get('model_type')} config has one")
            self.sources[as_ or key] = f"default {default} ({key} not in config.json)"
            return default
        if type(value) is not int or not minimum <= value <= MAX_DIM:
            raise UserError(f"model.path: {self.path}: {key} must be a whole number from {minimum} (got {_show(value)})")
        self.sources[as_ or key] = f"config.json {key}"
        return value

    def bool(self, key: str, default: bool, as_: str | None = None) -> bool:
        value = self.config.get(key)
        if value is None:
            self.sources[as_ or key] = f"default {str(default).lower()} for this family ({key} not in config.json)"
            return default
        if type(value) is not bool:
            raise UserError(f"model.path: {self.path}: {key} must be true or false (got {_show(value)})")
        self.sources[as_ or key] = f"config.json {key}"
        return value


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def folder_name(folder: str) -> str:
    """The folder's name as an identifier (letters, digits, . _ -), for URNs and run folders."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.basename(folder.rstrip("/"))).strip("-._")[:64]
    return name or "model"


def family_of(config: dict, where: str) -> Family:
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise UserError(f"model.path: {where}: config.json has no model_type; {supported_line()}")
    family = BY_MODEL_TYPE.get(model_type)
    architectures = config.get("architectures")
    if family is not None and isinstance(architectures, list) and architectures and not all(
            isinstance(a, str) and a.endswith("ForCausalLM") for a in architectures):
        family = None
    if family is None:
        shown = json.dumps(model_type[:60])
        raise UserError(f"model.path: {where} is {unsupported_kind(model_type, config)} (model_type {shown}); {supported_line()}")
    return family


def read_model_folder(path: str, config_only: bool = False) -> ModelInfo:
    """Everything ftc plans from, read from the folder; weights are checked against config.json.

    `config_only`: a folder may hold only config.json (a published config, or weights still to copy);
    then the parameter count comes from the family's layout."""
    _check_path_text(path)
    folder = os.path.realpath(path)
    if not os.path.isdir(folder):
        raise UserError(f"model.path: no such folder: {path}")
    config, digest = read_config(folder)
    return info_from_config(config, digest, folder, None if config_only else read_weights(folder))


def _check_path_text(path: str) -> None:
    if not isinstance(path, str) or not path.strip():
        raise UserError("model.path: empty; give the model folder, e.g. model.path=/project/models/qwen2.5-7b")
    if any(ord(c) < 32 or ord(c) == 127 for c in path) or len(path.encode("utf-8", "replace")) > 4096:
        raise UserError(f"model.path: {path[:80]!r}: not one line of at most 4096 bytes")


def info_from_config(config: dict, digest: str, folder: str, weights) -> ModelInfo:
    where = os.path.join(folder, "config.json")
    family = family_of(config, folder)
    c = _Config(config, where)
    layers, hidden = c.int("num_hidden_layers", as_="layers"), c.int("hidden_size")
    heads = c.int("num_attention_heads", as_="attention_heads")
    kv = c.int("num_key_value_heads", heads, as_="kv_heads")
    if heads % kv:
        raise UserError(f"model.path: {where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    head_dim = c.int("head_dim", hidden // heads if hidden % heads == 0 else 0 or None)
    vocab, tied = c.int("vocab_size"), c.bool("tie_word_embeddings", family.tied_default, as_="tie_embeddings")
    moe = _moe_numbers(c, family, layers)
    dims = Dims(layers, hidden, heads, kv, head_dim, c.int("intermediate_size", moe.get("moe_intermediate_size")), vocab,
                tied, moe.get("experts", 0), moe.get("moe_intermediate_size", 0), moe.get("shared", 0),
                moe.get("sparse", ()), c.bool("attention_bias", False), c.bool("mlp_bias", False))
    expected = expected_tensors(family, dims)
    parameters = sum(_numel(s) for s in expected.values())
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "unknown")[:20]
    c.sources["parameters"] = f"config.json through the {family.name} layout (no safetensors headers)"
    if weights is not None:
        _compare(folder, expected, weights, tied)
        parameters = sum(weights[n].numel for n in expected)
        counts = Counter()
        for n in expected:
            counts[weights[n].dtype] += weights[n].numel
        dtype = DTYPES.get(counts.most_common(1)[0][0], counts.most_common(1)[0][0].lower())
        c.sources["parameters"] = "safetensors headers"
    window = config.get("sliding_window") if config.get("use_sliding_window", True) is not False else None
    if window is not None and (type(window) is not int or window < 0):
        raise UserError(f"model.path: {where}: sliding_window must be a whole number or null (got {_show(window)})")
    return ModelInfo(
        name=folder_name(folder), path=folder, family=family.name, model_type=config["model_type"],
        num_parameters=parameters, dtype=dtype, config_sha256=digest, layers=layers, hidden_size=hidden,
        attention_heads=heads, kv_heads=kv, head_dim=head_dim, intermediate_size=dims.intermediate, vocab_size=vocab,
        tie_embeddings=tied, max_positions=c.int("max_position_embeddings", as_="max_seq_length"),
        experts=dims.experts, experts_per_token=moe.get("per_token", 0), shared_experts=1 if dims.shared_intermediate else 0,
        moe_intermediate_size=dims.moe_intermediate, shared_expert_intermediate_size=dims.shared_intermediate,
        sliding_window=window or None,
        linear=linear_modules(family, expected), sources=dict(sorted(c.sources.items())),
    )


def _moe_numbers(c: _Config, family: Family, layers: int) -> dict:
    if family.moe is None:
        return {}
    if family.moe == "mixtral":
        experts = c.int("num_local_experts", as_="experts")
        return {"experts": experts, "per_token": c.int("num_experts_per_tok", as_="experts_per_token"),
                "moe_intermediate_size": c.int("intermediate_size"), "sparse": tuple(range(layers))}
    key = "num_experts" if "num_experts" in c.config else "num_local_experts"  # transformers 5 writes the latter
    experts = c.int(key, as_="experts")
    step = c.int("decoder_sparse_step", 1)
    only = c.config.get("mlp_only_layers") or []
    if not isinstance(only, list) or not all(type(i) is int for i in only):
        raise UserError(f"model.path: {c.path}: mlp_only_layers must be a list of layer numbers")
    sparse = tuple(i for i in range(layers) if i not in only and (i + 1) % step == 0)
    shared = c.int("shared_expert_intermediate_size", 0, minimum=0) if family.name == "qwen2_moe" else 0
    return {"experts": experts, "per_token": c.int("num_experts_per_tok", as_="experts_per_token"),
            "moe_intermediate_size": c.int("moe_intermediate_size"), "shared": shared, "sparse": sparse}


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


IGNORED = re.compile(r".*(rotary_emb\.inv_freq|\.masked_bias|\.attn\.bias)$")


def _compare(folder: str, expected: dict, weights: dict, tied: bool) -> None:
    """Refuse a folder whose weights are not what its config.json describes, naming the first difference."""
    for name, shape in expected.items():
        got = weights.get(name)
        if got is None:
            raise UserError(f"model.path: {folder}: the weights lack {name} {list(shape)} that config.json implies; "
                            "the weights and config.json disagree")
        if got.shape != shape:
            raise UserError(f"model.path: {folder}: {name} is {list(got.shape)} in the weights but config.json implies "
                            f"{list(shape)}; the weights and config.json disagree")
    extra = sorted(n for n in weights if n not in expected and not IGNORED.match(n) and not (tied and n == "lm_head.weight"))
    if extra:
        raise UserError(f"model.path: {folder}: the weights hold {extra[0]}, which config.json does not describe "
                        f"({len(extra)} such tensors); the weights and config.json disagree")
