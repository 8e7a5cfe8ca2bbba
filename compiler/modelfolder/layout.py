"""Every tensor a family's transformers implementation holds, by name and shape, from config numbers.

The reader checks a folder's weights against this (a folder whose weights disagree with its
config.json is refused) and counts parameters with it where there are no safetensors headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ftc.compiler.modelfolder.families import Family


@dataclass(frozen=True)
class Dims:
    """The numbers of config.json the layout depends on."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    experts: int = 0
    moe_intermediate: int = 0
    shared_intermediate: int = 0  # Qwen2-MoE's shared expert; 0 without one
    sparse_layers: tuple[int, ...] = ()  # the layers whose MLP is routed experts
    attention_bias: bool = False  # Llama/Mistral's config.attention_bias: q, k, v and o get biases
    mlp_bias: bool = False


def _mlp(prefix: str, inner: int, hidden: int, fused: bool, bias: bool, names=("gate_proj", "up_proj", "down_proj")):
    gate, up, down = names
    if fused:
        out = {f"{prefix}.gate_up_proj.weight": (2 * inner, hidden), f"{prefix}.{down}.weight": (hidden, inner)}
    else:
        out = {f"{prefix}.{gate}.weight": (inner, hidden), f"{prefix}.{up}.weight": (inner, hidden),
               f"{prefix}.{down}.weight": (hidden, inner)}
    if bias:
        out.update({name.replace(".weight", ".bias"): (shape[0],) for name, shape in list(out.items())})
    return out


def _attention(p: str, family: Family, d: Dims) -> dict[str, tuple[int, ...]]:
    q, kv = d.heads * d.head_dim, d.kv_heads * d.head_dim
    if family.fused:
        out = {f"{p}.qkv_proj.weight": (q + 2 * kv, d.hidden), f"{p}.o_proj.weight": (d.hidden, q)}
    else:
        out = {f"{p}.q_proj.weight": (q, d.hidden), f"{p}.k_proj.weight": (kv, d.hidden),
               f"{p}.v_proj.weight": (kv, d.hidden), f"{p}.o_proj.weight": (d.hidden, q)}
    if family.qkv_bias or d.attention_bias:
        out.update({f"{p}.q_proj.bias": (q,), f"{p}.k_proj.bias": (kv,), f"{p}.v_proj.bias": (kv,)})
    if d.attention_bias:
        out[f"{p}.o_proj.bias"] = (d.hidden,)
    if family.qk_norm:
        out.update({f"{p}.q_norm.weight": (d.head_dim,), f"{p}.k_norm.weight": (d.head_dim,)})
    return out


def _moe(p: str, family: Family, d: Dims) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {f"{p}.{family.router}.weight": (d.experts, d.hidden)}
    for e in range(d.experts):
        where = f"{p}.{family.experts}.{e}"
        if family.moe == "mixtral":
            out.update(_mlp(where, d.moe_intermediate, d.hidden, False, False, ("w1", "w3", "w2")))
        else:
            out.update(_mlp(where, d.moe_intermediate, d.hidden, False, False))
    if d.shared_intermediate:
        out.update(_mlp(f"{p}.mlp.shared_expert", d.shared_intermediate, d.hidden, False, False))
        out[f"{p}.mlp.shared_expert_gate.weight"] = (1, d.hidden)
    return out


NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")


def expected_tensors(family: Family, d: Dims) -> dict[str, tuple[int, ...]]:
    """name -> shape of every parameter of `family` at these numbers (a tied LM head counted once)."""
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (d.vocab, d.hidden), "model.norm.weight": (d.hidden,)}
    if not d.tied:
        out["lm_head.weight"] = (d.vocab, d.hidden)
    for i in range(d.layers):
        p = f"model.layers.{i}"
        out.update({f"{p}.{norm}.weight": (d.hidden,) for norm in NORMS[:family.layer_norms]})
        out.update(_attention(f"{p}.self_attn", family, d))
        if i in d.sparse_layers:
            out.update(_moe(p, family, d))
        else:
            out.update(_mlp(f"{p}.mlp", d.intermediate, d.hidden, family.fused, d.mlp_bias))
    return out


def linear_modules(family: Family, tensors: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int, int]]:
    """The Linear layers of the blocks, as PEFT's all-linear sees them in transformers 5: kind (the
    module's own name) -> (d_in, d_out, how many). Routers and routed experts are fused parameters
    there, not Linear modules; the embedding and the LM head are never targets."""
    found: dict[str, tuple[int, int, int]] = {}
    skip = tuple(f".{s}." for s in (family.router, family.experts) if s)
    for name, shape in tensors.items():
        if not name.startswith("model.layers.") or not name.endswith(".weight") or len(shape) != 2:
            continue
        if any(s in name + "." for s in skip):
            continue
        kind = name[: -len(".weight")].rsplit(".", 1)[-1]
        d_out, d_in = shape
        seen = found.get(kind)
        if seen is not None and (seen[0], seen[1]) != (d_in, d_out):
            kind = name[: -len(".weight")].split(".", 3)[-1]  # same name, other shape: keep both apart
            seen = found.get(kind)
        found[kind] = (d_in, d_out, (seen[2] if seen else 0) + 1)
    return found


def dims_of(arch) -> tuple[Family, Dims]:
    """The family row and layout numbers of a schema Architecture (typed in a model file)."""
    from ftc.compiler.modelfolder.families import FAMILIES

    family = next(f for f in FAMILIES if f.name == arch.family)
    sparse = tuple(range(arch.layers)) if arch.experts else ()
    shared = (arch.shared_expert_intermediate_size or arch.intermediate_size) if arch.shared_experts else 0
    return family, Dims(arch.layers, arch.hidden_size, arch.attention_heads, arch.kv_heads, arch.head_dim,
                        arch.intermediate_size, arch.vocab_size, arch.tie_embeddings, arch.experts,
                        arch.moe_intermediate_size or arch.intermediate_size, shared, sparse)


def typed_linear(arch) -> dict[str, list[int]]:
    """The linear layers of a typed architecture, from its family's layout (once per set of numbers:
    every point of a sweep validates the same architecture)."""
    family, dims = dims_of(arch)
    return {k: list(v) for k, v in _linear_of(family, dims).items()}


@lru_cache(maxsize=64)
def _linear_of(family: Family, dims: Dims) -> dict[str, tuple[int, int, int]]:
    return linear_modules(family, expected_tensors(family, dims))
