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

FORMATS = ("prompt_completion", "chat", "text", "preference", "prompt_answer")
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


def normalise(text: str) -> str:
    """Case folded, whitespace runs made one space: what eval.normalize_answers compares."""
    return " ".join(text.split()).casefold()


def exact_match(prediction: str, reference: str, normalize: bool = False) -> float:
    """Equal texts, outer whitespace aside (a completion starts after the prompt's space); case and inner
    whitespace count unless `normalize`."""
    if normalize:
        return float(normalise(prediction) == normalise(reference))
    return float(prediction.strip() == reference.strip())


def _squad_tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def token_f1(prediction: str, reference: str, normalize: bool = False) -> float:
    """Overlap of word bags: exact words, or SQuAD's normalised ones (lower case, no punctuation or articles)."""
    words = _squad_tokens if normalize else str.split
    pred, ref = words(prediction), words(reference)
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
    if data_format == "text":  # continued pre-training: the loss over the whole text
        return "", row["text"], None
    raise ValueError(f"unknown data format {data_format!r}; expected one of {', '.join(FORMATS)}")


def _ids(tokenizer, value, **kwargs) -> list[int]:
    if isinstance(value, list):
        return list(tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **kwargs)["input_ids"])
    return list(tokenizer(value)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def encode(
    tokenizer, row: dict, data_format: str, max_length: int | None = None, *, chat: bool = False, answer: str | None = None
) -> dict:
    """Token ids of one row: the prompt as generated from, and prompt+completion with the completion's [start, end).

    `chat` puts text prompts in the model's chat format, as training does (runtime/chat.py); `answer`
    names another column to score as the completion (a preference row's "rejected").
    """
    from ftc.runtime.chat import TemplateError, last_turn_start

    prompt, completion, reference = _split(row, data_format)
    if answer is not None:
        completion = row[answer]
    if chat and isinstance(prompt, str) and data_format != "text":
        prompt, completion = [{"role": "user", "content": prompt}], _text(completion).strip()
    if isinstance(prompt, list):
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
        try:
            turn = last_turn_start(tokenizer, prompt + completion)
            full_ids, start, end = turn["input_ids"], turn["start"], turn["end"]
        except TemplateError:
            full_ids = _ids(tokenizer, prompt + completion)
            start, end = _common_prefix(prompt_ids, full_ids), len(full_ids)
    else:
        text = _text(completion)
        eos = tokenizer.eos_token or ""
        prompt_ids = _ids(tokenizer, prompt)
        full_ids = _ids(tokenizer, prompt + text + ("" if text.endswith(eos) else eos))
        start, end = _common_prefix(prompt_ids, full_ids), len(full_ids)
    if max_length and len(full_ids) > max_length:
        cut = len(full_ids) - max_length
        full_ids, start, end = full_ids[cut:], max(0, start - cut), max(0, end - cut)
        prompt_ids = prompt_ids[-max_length:]
    return {"prompt_ids": prompt_ids, "input_ids": full_ids, "start": start, "end": end, "reference": reference}


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _stop_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def _pad_id(tokenizer) -> int:
    return next((v for v in (tokenizer.pad_token_id, tokenizer.eos_token_id) if v is not None), 0)


def completion_loss(model, tokenizer, encoded: list[dict], batch_size: int = 8) -> tuple[float, int]:
    """Summed negative log-likelihood of the completion tokens, and their count."""
    rows = row_nll(model, tokenizer, encoded, batch_size)
    return sum(n for n, _ in rows), sum(c for _, c in rows)


@torch.no_grad()
def row_nll(model, tokenizer, encoded: list[dict], batch_size: int = 8) -> list[tuple[float, int]]:
    """Per row: summed negative log-likelihood of its completion tokens, and their count."""
    device, pad = _device(model), _pad_id(tokenizer)
    out: list[tuple[float, int]] = []
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
            end = min(n, e.get("end", n))
            labels[row, e["start"] : end] = ids[row, e["start"] : end]
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        shifted = labels[:, 1:].to(logits.device)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), shifted, ignore_index=-100, reduction="none"
        ).sum(dim=1)
        out += list(zip(nll.tolist(), (shifted != -100).sum(dim=1).tolist()))
    return out


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
    chat: bool = False,
    normalize: bool = False,
) -> dict:
    """Loss/perplexity on completions of the first `max_rows` rows, and exact match / F1 where rows have answers.

    `data_format` may be "auto" (read from the first row). Preference rows also get preference
    accuracy (the chosen answer more likely than the rejected one) and the mean log-likelihood margin
    log p(chosen) - log p(rejected): DPO's implicit reward margin is beta times its rise over training.
    The model's train/eval mode is restored.
    """
    rows = list(rows)[:max_rows]
    if not rows:
        return {"rows": 0}
    if data_format == "auto":
        data_format = row_format(rows[0])
    encoded = [encode(tokenizer, row, data_format, max_length, chat=chat) for row in rows]
    was_training = model.training
    model.eval()
    try:
        nll, tokens = completion_loss(model, tokenizer, encoded, batch_size)
        preference = _preference(model, tokenizer, rows, encoded, max_length, chat, batch_size) if data_format == "preference" else {}
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
        **preference,
    }
    if answered:
        refs = [e["reference"] for e in answered]
        result["exact_match"] = sum(exact_match(p, r, normalize) for p, r in zip(predictions, refs)) / len(refs)
        result["f1"] = sum(token_f1(p, r, normalize) for p, r in zip(predictions, refs)) / len(refs)
        result["normalized"] = normalize
        result["samples"] = [
            {"prompt": tokenizer.decode(e["prompt_ids"], skip_special_tokens=True), "reference": r, "prediction": p}
            for e, r, p in list(zip(answered, refs, predictions))[:SAMPLES]
        ]
    return result


def _preference(model, tokenizer, rows, chosen: list[dict], max_length, chat: bool, batch_size: int) -> dict:
    rejected = [encode(tokenizer, row, "preference", max_length, chat=chat, answer="rejected") for row in rows]
    good = row_nll(model, tokenizer, chosen, batch_size)
    bad = row_nll(model, tokenizer, rejected, batch_size)
    margins = [b - g for (g, _), (b, _) in zip(good, bad)]  # nll(rejected) - nll(chosen) = log p(c) - log p(r)
    return {
        "preference_accuracy": sum(m > 0 for m in margins) / len(margins),
        "margin": sum(margins) / len(margins),
    }


def eval_options(plan, tokenizer) -> dict:
    """The evaluate_model keywords a plan implies: the chat format training used, and answer normalisation."""
    from ftc.runtime.chat import uses_chat_template

    return {"chat": uses_chat_template(plan, tokenizer), "normalize": plan.job.eval.normalize_answers}


METRICS = ("loss", "perplexity", "exact_match", "f1", "preference_accuracy", "margin")


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
