"""The tiny model: a small Llama built offline from the architecture numbers, so demos and tests need no download.

The weights are random (a fixed seed); the tokenizer is a byte-level BPE trained on the bundled demo
text. Two builds of the same numbers are byte-identical, and the planner's parameter count is exact.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ftc.compiler.checks.datasets import iter_rows, split_files
from ftc.compiler.config.schema import Architecture
from ftc.compiler.errors import UserError

SEED = 0
DEMO = Path(__file__).resolve().parent.parent / "conf" / "datasets" / "demo"
PAD, BOS, IM_START, IM_END = "<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"
SPECIAL = [PAD, BOS, IM_START, IM_END]
MARKER = "ftc-tiny.json"
_SEEDED = threading.Lock()  # the seeded init uses the global torch RNG
# ChatML; {% generation %} marks the assistant tokens for TRL's assistant_only_loss.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def corpus(demo: Path = DEMO) -> list[str]:
    """The tokenizer's training text: every string of the bundled demo data, in file order, plus ASCII."""
    texts = []
    for form in ("sft", "dpo", "grpo"):
        for split in ("training", "validation"):
            for row in iter_rows(split_files(str(demo / form), split)):
                for key in ("prompt", "completion", "chosen", "rejected", "answer"):
                    if isinstance(row.get(key), str):
                        texts.append(row[key])
    texts.append("system user assistant")
    texts.append("".join(chr(c) for c in range(32, 127)))
    return texts


def _fingerprint(arch: Architecture, texts: list[str]) -> dict:
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
    return {"architecture": arch.built_numbers(), "seed": SEED, "corpus_sha256": digest}


def build_tokenizer(arch: Architecture, texts: list[str]):
    """A byte-level BPE with exactly `arch.vocab_size` tokens (reserved tokens fill any merges BPE did not find)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    floor = len(SPECIAL) + 256
    if arch.vocab_size < floor:
        raise UserError(
            f"model.architecture.vocab_size: a byte-level tokenizer needs at least {floor} (got {arch.vocab_size})"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=arch.vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    missing = arch.vocab_size - tok.get_vocab_size(with_added_tokens=True)
    if missing:
        tok.add_special_tokens([f"<|reserved_{i}|>" for i in range(missing)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=arch.max_seq_length,
    )


def build_model(arch: Architecture, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if arch.family != "llama":
        raise UserError(f"model.architecture.family: the tiny model is a llama (got {arch.family})")
    config = LlamaConfig(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.attention_heads,
        num_key_value_heads=arch.kv_heads,
        head_dim=arch.head_dim,
        max_position_embeddings=arch.max_seq_length,
        tie_word_embeddings=arch.tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with _SEEDED, torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    return model


def _check_existing(path: str, fingerprint: dict, what: str) -> None:
    try:
        with open(os.path.join(path, MARKER)) as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        found = None
    if found != fingerprint:
        raise UserError(
            f"model.path: {path} exists but is not {what} (built from other inputs, or not by ftc); "
            f"delete it or point model.path elsewhere"
        )


def _portable(folder: str) -> None:
    """Name the tokenizer class as transformers 4 knows it too (5 calls it TokenizersBackend, an alias)."""
    config_path = os.path.join(folder, "tokenizer_config.json")
    with open(config_path) as handle:
        config = json.load(handle)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(config_path, "w") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)


def ensure_built(path: str, fingerprint: dict, build, what: str) -> str:
    """`build(tmp)` writes a model folder, renamed to `path` whole; safe when several ranks call it at once.

    The fingerprint (what the folder was built from) is written beside the weights; a folder at
    `path` with another fingerprint is refused rather than silently used.
    """
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        _check_existing(path, fingerprint, what)
        return path
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.build-", dir=parent)
    try:
        build(tmp)
        _portable(tmp)
        with open(os.path.join(tmp, MARKER), "w") as handle:
            json.dump(fingerprint, handle, indent=2, sort_keys=True)
        for name in os.listdir(tmp):
            os.chmod(os.path.join(tmp, name), 0o644)
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            _check_existing(path, fingerprint, what)  # another rank won the rename
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def ensure_tiny_model(path: str, arch: Architecture) -> str:
    """Build the tiny model at `path` unless it is there."""
    texts = corpus()

    def build(folder: str) -> None:
        tokenizer = build_tokenizer(arch, texts)
        build_model(arch, tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return ensure_built(path, _fingerprint(arch, texts), build, "this tiny model")
