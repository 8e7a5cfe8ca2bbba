"""Tiny random-init model folders, one per architecture, saved with save_pretrained (safetensors), offline.

Built once per session (a few seconds) into a temporary folder; each entry records transformers' own
num_parameters() for the planner's count to be checked against. Sizes are the smallest that keep every
feature (GQA, explicit head_dim, tied heads, experts, a shared expert, fused projections).
"""

from __future__ import annotations

import json
from pathlib import Path

VOCAB = 384  # the smallest byte-level tokenizer ftc's tiny model builds (256 bytes + specials + merges)
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 48, "vocab_size": VOCAB, "max_position_embeddings": 256, "pad_token_id": 0,
         "bos_token_id": 1, "eos_token_id": 3}
# name -> (model_type, extra config): every supported family, Qwen2 tied and untied.
SUPPORTED = {
    "llama-tiny": ("llama", {}),
    "mistral-tiny": ("mistral", {"sliding_window": 64}),
    "mixtral-tiny": ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "qwen2-tiny": ("qwen2", {"tie_word_embeddings": True}),
    "qwen2-untied": ("qwen2", {"tie_word_embeddings": False}),
    "qwen2-moe-tiny": ("qwen2_moe", {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 24,
                                     "shared_expert_intermediate_size": 40}),
    "qwen3-moe-tiny": ("qwen3_moe", {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 24, "head_dim": 16}),
    "gemma-tiny": ("gemma", {"head_dim": 16}),
    "gemma2-tiny": ("gemma2", {"head_dim": 24, "sliding_window": 64}),
    "phi3-tiny": ("phi3", {}),
}
UNSUPPORTED = {
    "bert-tiny": ("bert", "encoder-only"),
    "t5-tiny": ("t5", "encoder-decoder"),
    "llava-tiny": ("llava", "vision-language"),
}


def build(root: Path) -> dict[str, dict]:
    """Every folder: name -> {"path", "model_type", "num_parameters" (transformers'), "linear" (PEFT's all-linear kinds)}."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig, LlavaConfig, T5Config

    from ftc.compiler.config.schema import Architecture
    from ftc.runtime.tiny import build_tokenizer, corpus

    shape = {"family": "llama", "parameters": 1, "layers": 2, "hidden_size": 32, "attention_heads": 4, "kv_heads": 2,
             "intermediate_size": 48, "vocab_size": VOCAB, "max_seq_length": 256}
    tokenizer = build_tokenizer(Architecture(**shape), corpus())  # ChatML, like the tiny model's
    out = {}
    for name, (model_type, extra) in SUPPORTED.items():
        torch.manual_seed(0)
        config = AutoConfig.for_model(model_type, **SMALL, **extra)
        model = AutoModelForCausalLM.from_config(config)
        shards = {"max_shard_size": "40KB"} if name == "llama-tiny" else {}  # one saved in shards, with its index
        model.save_pretrained(root / name, **shards)
        tokenizer.save_pretrained(root / name)
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear) and n != "lm_head"})
        out[name] = {"path": str(root / name), "model_type": model_type, "num_parameters": model.num_parameters(),
                     "linear": linear}
    tiny = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 48, "vocab_size": VOCAB}
    configs = {
        "bert-tiny": BertConfig(num_hidden_layers=1, **tiny),
        "t5-tiny": T5Config(d_model=32, d_ff=48, num_layers=1, num_heads=4, d_kv=8, vocab_size=VOCAB),
        "llava-tiny": LlavaConfig(text_config=LlamaConfig(num_hidden_layers=1, **tiny)),
    }
    for name, config in configs.items():
        folder = root / name
        if name == "llava-tiny":  # the config is what refuses it; no need for its vision weights
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(config.to_dict()))
        else:
            AutoModel.from_config(config).save_pretrained(folder)
        out[name] = {"path": str(folder), "model_type": UNSUPPORTED[name][0]}
    return out
