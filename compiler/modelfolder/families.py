"""The model families ftc trains: one row each, what the planner needs to know beyond config.json.

A new decoder family is one row here (and a tiny random-init folder in tests/model_folders.py). The
rows say how transformers lays a block out, so the parameter count and the LoRA targets follow from
config.json alone: which linear layers a block has, whether attention has biases, how many norms.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str  # what the plan calls it
    model_types: tuple[str, ...]  # config.json model_type values it covers
    tied_default: bool = False  # tie_word_embeddings when config.json leaves it out
    fused: bool = False  # Phi-3: one qkv_proj and one gate_up_proj instead of q/k/v and gate/up
    qkv_bias: bool = False  # Qwen2: q, k and v projections carry biases whatever the config says
    layer_norms: int = 2  # per-block RMSNorm weights of hidden_size (Gemma-2 has four)
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on queries and keys
    moe: str | None = None  # "mixtral" or "qwen": where experts live and what they are called

    @property
    def router(self) -> str | None:
        """The router's weight: a plain parameter in transformers 5 (not a Linear, so no LoRA)."""
        return {"mixtral": "block_sparse_moe.gate", "qwen": "mlp.gate"}.get(self.moe or "")

    @property
    def experts(self) -> str | None:
        """Where the routed experts' weights live; transformers 5 fuses them (no Linear modules)."""
        return {"mixtral": "block_sparse_moe.experts", "qwen": "mlp.experts"}.get(self.moe or "")


FAMILIES = (
    Family("llama", ("llama",)),  # Llama 2/3, SmolLM2, TinyLlama
    Family("mistral", ("mistral",)),
    Family("mixtral", ("mixtral",), moe="mixtral"),
    Family("qwen2", ("qwen2",), qkv_bias=True),  # Qwen2 and Qwen2.5, tied (0.5B-3B) and untied
    Family("qwen2_moe", ("qwen2_moe",), qkv_bias=True, moe="qwen"),
    Family("qwen3", ("qwen3",), qk_norm=True),
    Family("qwen3_moe", ("qwen3_moe",), qk_norm=True, moe="qwen"),
    Family("gemma", ("gemma",), tied_default=True),
    Family("gemma2", ("gemma2",), tied_default=True, layer_norms=4),
    Family("phi3", ("phi3",), fused=True),  # Phi-3 and Phi-3.5 mini
)
BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}
FAMILY_NAMES = tuple(f.name for f in FAMILIES)

# What ftc cannot train, by model_type, with the reason given to the user.
ENCODER_ONLY = ("bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra", "xlm-roberta", "modernbert")
ENCODER_DECODER = ("t5", "mt5", "bart", "mbart", "pegasus", "marian", "umt5", "longt5")


def supported_line() -> str:
    return "ftc trains decoder-only causal LMs of these model_types: " + ", ".join(BY_MODEL_TYPE)


def unsupported_kind(model_type: str, config: dict) -> str:
    """Why a model_type outside the table is refused: encoder-only, encoder-decoder, vision-language, unknown."""
    if model_type in ENCODER_ONLY:
        return "an encoder-only model"
    if model_type in ENCODER_DECODER or config.get("is_encoder_decoder") is True:
        return "an encoder-decoder model"
    if any(k in config for k in ("vision_config", "vision_tower", "image_token_index", "image_token_id")):
        return "a vision-language model"
    return "an unknown model_type"
