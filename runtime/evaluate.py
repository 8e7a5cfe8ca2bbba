"""Evaluation before and after training: completion loss, perplexity and the task metric.

The loss is measured on the completion tokens only, tokenized the way TRL's SFTTrainer does
(prompt + completion + EOS for plain text, the chat template for messages), so it is comparable
with the validation loss of training. Generation is greedy, so two runs give the same numbers.
Under DeepSpeed ZeRO-3 every rank must call `evaluate_model` with the same rows.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from pathlib import Path

import torch

FORMATS = ("prompt_completion", "chat", "preference", "prompt_answer")
SAMPLES = 3
PUNCTUATION = frozenset(string.punctuation)


def row_format(row: dict) -> str:
    """The data format a row is in, from its keys (general sets carry no declared format)."""
    if "messages" in row:
        return "chat"
    if "chosen" in row:
        return "preference"
    if "answer" in row:
        return "prompt_answer"
    if "completion" in row:
        return "prompt_completion"
    raise ValueError(f"cannot tell the format of a row with keys {sorted(row)}")


def load_eval_rows(path: str | Path, max_rows: int | None = None) -> list[dict]:
    """NDJSON rows of an eval set: a file, or a folder (its validation/ split when it has one)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "validation" if (path / "validation").is_dir() else path
        files = sorted(p for p in folder.rglob("*") if p.suffix in (".jsonl", ".ndjson", ".json") and p.is_file())
        if not files:
            raise FileNotFoundError(f"no .jsonl/.ndjson files under {folder}")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"eval set not found: {path}")
    rows: list[dict] = []
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{file}:{number}: not JSON ({exc.msg})") from None
                if max_rows is not None and len(rows) >= max_rows:
                    return rows
    return rows


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip().casefold() == reference.strip().casefold())


def _squad_tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1: overlap of normalised word bags."""
    pred, ref = _squad_tokens(prediction), _squad_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _text(value) -> str:
    return value if isinstance(value, str) else str(value[-1]["content"])


def _split(row: dict, data_format: str):
    """(prompt, completion, reference) of a row; reference is None where the data has no answer."""
    if data_format == "chat":
        messages = row["messages"]
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError("a chat row must end with an assistant message")
        return messages[:-1], messages[-1:], str(messages[-1]["content"])
    if data_format == "preference":
        return row["prompt"], row["chosen"], None
    if data_format == "prompt_answer":
        return row["prompt"], str(row["answer"]), str(row["answer"])
    if data_format == "prompt_completion":
        return row["prompt"], row["completion"], _text(row["completion"])
    raise ValueError(f"unknown data format {data_format!r}; expected one of {', '.join(FORMATS)}")


def _ids(tokenizer, value, **kwargs) -> list[int]:
    if isinstance(value, list):
        return list(tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **kwargs)["input_ids"])
    return list(tokenizer(value)["input_ids"])


def encode(tokenizer, row: dict, data_format: str, max_length: int | None = None) -> dict:
    """Token ids of one row: the prompt as generated from, and prompt+completion with the completion start."""
    prompt, completion, reference = _split(row, data_format)
    if isinstance(prompt, list):
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
        full_ids = _ids(tokenizer, prompt + completion)
    else:
        text = _text(completion)
        eos = tokenizer.eos_token or ""
        prompt_ids = _ids(tokenizer, prompt)
        full_ids = _ids(tokenizer, prompt + text + ("" if text.endswith(eos) else eos))
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    if max_length and len(full_ids) > max_length:
        cut = len(full_ids) - max_length
        full_ids, start = full_ids[cut:], max(0, start - cut)
        prompt_ids = prompt_ids[-max_length:]
    return {"prompt_ids": prompt_ids, "input_ids": full_ids, "start": start, "reference": reference}


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _stop_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def _pad_id(tokenizer) -> int:
    return next((v for v in (tokenizer.pad_token_id, tokenizer.eos_token_id) if v is not None), 0)


@torch.no_grad()
def completion_loss(model, tokenizer, encoded: list[dict], batch_size: int = 8) -> tuple[float, int]:
    """Summed negative log-likelihood of the completion tokens, and their count."""
    device, pad = _device(model), _pad_id(tokenizer)
    total, count = 0.0, 0
    for i in range(0, len(encoded), batch_size):
        batch = encoded[i : i + batch_size]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[row, :n] = torch.tensor(e["input_ids"])
            mask[row, :n] = 1
            labels[row, e["start"] : n] = ids[row, e["start"] : n]
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        shifted = labels[:, 1:].to(logits.device)
        total += torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100, reduction="sum"
        ).item()
        count += int((shifted != -100).sum())
    return total, count


@torch.no_grad()
def generate(model, tokenizer, encoded: list[dict], max_new_tokens: int = 32, batch_size: int = 8) -> list[str]:
    """Greedy generations from the prompts, left-padded in batches, cut at the first stop token."""
    from transformers import GenerationConfig

    device, pad, stops = _device(model), _pad_id(tokenizer), _stop_ids(model, tokenizer)
    bos = getattr(getattr(model, "generation_config", None), "bos_token_id", None)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        pad_token_id=pad, eos_token_id=stops or None, bos_token_id=bos,
    )
    texts: list[str] = []
    for i in range(0, len(encoded), batch_size):
        batch = encoded[i : i + batch_size]
        width = max(len(e["prompt_ids"]) for e in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(batch):
            n = len(e["prompt_ids"])
            if n:
                ids[row, width - n :] = torch.tensor(e["prompt_ids"])
                mask[row, width - n :] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
        for new in out[:, width:].tolist():
            end = next((k for k, t in enumerate(new) if t in stops), len(new))
            texts.append(tokenizer.decode(new[:end], skip_special_tokens=True))
    return texts


def evaluate_model(
    model,
    tokenizer,
    rows: list[dict],
    data_format: str,
    max_rows: int,
    max_new_tokens: int = 32,
    *,
    batch_size: int = 8,
    max_length: int | None = None,
) -> dict:
    """Loss/perplexity on completions of the first `max_rows` rows, and exact match / F1 where rows have answers.

    `data_format` may be "auto" (read from the first row). The model's train/eval mode is restored.
    """
    rows = list(rows)[:max_rows]
    if not rows:
        return {"rows": 0}
    if data_format == "auto":
        data_format = row_format(rows[0])
    encoded = [encode(tokenizer, row, data_format, max_length) for row in rows]
    was_training = model.training
    model.eval()
    try:
        nll, tokens = completion_loss(model, tokenizer, encoded, batch_size)
        answered = [e for e in encoded if e["reference"] is not None]
        predictions = generate(model, tokenizer, answered, max_new_tokens, batch_size) if answered else []
    finally:
        model.train(was_training)
    loss = nll / tokens if tokens else float("nan")
    result = {
        "format": data_format,
        "rows": len(rows),
        "tokens": tokens,
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)) if tokens else float("nan"),
    }
    if answered:
        refs = [e["reference"] for e in answered]
        result["exact_match"] = sum(map(exact_match, predictions, refs)) / len(refs)
        result["f1"] = sum(map(token_f1, predictions, refs)) / len(refs)
        result["samples"] = [
            {"prompt": tokenizer.decode(e["prompt_ids"], skip_special_tokens=True), "reference": r, "prediction": p}
            for e, r, p in list(zip(answered, refs, predictions))[:SAMPLES]
        ]
    return result


METRICS = ("loss", "perplexity", "exact_match", "f1")


def _delta(before: dict | None, after: dict | None) -> dict:
    if not before or not after:
        return {}
    both = [k for k in METRICS if all(isinstance(side.get(k), (int, float)) for side in (before, after))]
    return {k: after[k] - before[k] for k in both}


def compare(
    before: dict | None,
    after: dict | None,
    general_before: dict | None = None,
    general_after: dict | None = None,
    max_drop_points: float = 2.0,
) -> dict:
    """The eval.json structure, with a forgetting warning when the general set drops too far.

    The general drop is exact match in percentage points when the set has answers, else the
    perplexity rise in percent of its value before training.
    """
    report = {"before": before, "after": after, "delta": _delta(before, after), "general": {}, "warnings": []}
    if not general_before or not general_after:
        return report
    general = {"before": general_before, "after": general_after, "delta": _delta(general_before, general_after)}
    if "exact_match" in general_before and "exact_match" in general_after:
        metric = "exact_match"
        was, now = 100 * general_before["exact_match"], 100 * general_after["exact_match"]
        drop = was - now
        what = f"exact match fell {drop:.1f} points ({was:.1f}% → {now:.1f}%)"
    else:
        metric = "perplexity"
        drop = 100.0 * (general_after["perplexity"] / general_before["perplexity"] - 1.0)
        what = f"perplexity rose {drop:.1f}% ({general_before['perplexity']:.3g} → {general_after['perplexity']:.3g})"
    general.update(metric=metric, drop_points=drop, max_drop_points=max_drop_points, forgetting=drop > max_drop_points)
    if drop > max_drop_points:
        report["warnings"].append(
            f"forgetting: on the general eval set {what}, more than eval.general.max_drop_points={max_drop_points:g}; "
            "consider data.replay, a lower learning rate or fewer epochs"
        )
    report["general"] = general
    return report
