"""Assistant-only loss for any chat template, and prompt/completion rows in the model's chat format.

TRL masks assistant turns only when a template carries `{% generation %}` markers, which the
published Llama-3.1, Qwen2.5 and SmolLM2 templates do not. Here the mask comes from the template
itself (compiler/data/template.py, the same rule the login node checks templates with): each
assistant turn's answer starts where the generation prompt ends (or, when the template injects text
there, such as a default system prompt before an assistant-first turn, where the content starts) and
ends with its content. The loss covers exactly those tokens plus the end-of-turn token that closes
the turn: the first special token after the content, with only whitespace between, wherever the
template emits it (at the end of the turn, or at the start of the next one).

A token that straddles an answer's start or end (`]<` of `[/INST]<think>`) is re-tokenized at the
boundary: the text is tokenized as the pieces on either side, so the answer starts on a token of its
own, as it does at inference when the model writes after the prompt. Nothing is dropped.
"""

from __future__ import annotations

from ftc.compiler.data.template import ASSISTANT, TemplateError, answer_spans, render  # noqa: F401 - shared
from ftc.compiler.planning.plan import Plan

USER = "user"


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the (start, end) characters each assistant turn trains, before its end-of-turn token."""
    return answer_spans(tokenizer, messages)


def special_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, token in tokenizer.added_tokens_decoder.items() if getattr(token, "special", False))
    return ids


def encode_at(tokenizer, text: str, cuts: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of `text`, re-tokenized at each cut a token straddles."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]
    straddled = sorted({c for s, e in offsets for c in cuts if s < c < e})
    if not straddled:
        return ids, offsets
    ids, offsets = [], []
    bounds = [0, *straddled, len(text)]
    for a, b in zip(bounds, bounds[1:]):
        part = tokenizer(text[a:b], add_special_tokens=False, return_offsets_mapping=True)
        ids += part["input_ids"]
        offsets += [(s + a, e + a) for s, e in part["offset_mapping"]]
    return ids, offsets


def tokenize_chat(tokenizer, messages: list[dict]) -> dict:
    """input_ids of the rendered conversation and assistant_masks (1 on tokens the loss covers)."""
    text, spans = assistant_spans(tokenizer, messages)
    ids, offsets = encode_at(tokenizer, text, [c for span in spans for c in span])
    special = special_ids(tokenizer)
    mask = [0] * len(ids)
    for a, b in spans:
        inside = [k for k, (s, e) in enumerate(offsets) if a <= s < b and e > s]
        for k in inside:
            mask[k] = 1
        k = inside[-1] + 1 if inside else len(ids)
        while k < len(ids) and ids[k] not in special and not text[offsets[k][0]:offsets[k][1]].strip():
            k += 1
        if k < len(ids) and ids[k] in special:
            mask[k] = 1
    return {"input_ids": ids, "assistant_masks": mask}


def last_turn_start(tokenizer, messages: list[dict]) -> dict:
    """Like `tokenize_chat`, with the loss only on the last assistant turn (for evaluation)."""
    out = tokenize_chat(tokenizer, messages)
    mask = out["assistant_masks"]
    ones = [k for k, bit in enumerate(mask) if bit]
    first = ones[-1]
    while first > 0 and mask[first - 1]:
        first -= 1
    out["start"], out["end"] = first, ones[-1] + 1
    return out


def uses_chat_template(plan: Plan, tokenizer) -> bool:
    """data.chat_template=auto: a model with a chat template (not ftc's random tiny one) sees its chat format."""
    if plan.job.data.chat_template == "none" or not getattr(tokenizer, "chat_template", None):
        return False
    return plan.job.model.source != "tiny"


def as_messages(row: dict) -> dict:
    """A prompt/completion, preference or prompt/answer row with its text turned into user and assistant turns."""
    out = dict(row)
    if isinstance(row.get("prompt"), str):
        out["prompt"] = [{"role": USER, "content": row["prompt"]}]
    for key in ("completion", "chosen", "rejected"):
        if isinstance(row.get(key), str):
            out[key] = [{"role": ASSISTANT, "content": row[key].strip()}]
    return out


def prepare(dataset, tokenizer, method: str, chat: bool):
    """The rows TRL's trainer for `method` reads.

    SFT: chat rows, and prompt/completion rows when `chat`, are tokenized here with their assistant
    mask (TRL builds the labels from it); prompt/completion text otherwise goes to TRL as is (loss on
    the completion, EOS appended). DPO and GRPO: the prompt becomes a user turn when `chat`, and TRL
    applies the template.
    """
    columns = dataset.column_names
    if "text" in columns:  # continued pre-training: TRL trains on the whole text
        return dataset
    if method in ("lora", "sft") and "messages" in columns:
        return dataset.map(lambda row: tokenize_chat(tokenizer, row["messages"]), remove_columns=columns)
    if method in ("lora", "sft") and chat:
        def tokenize_pair(row):
            return tokenize_chat(tokenizer, [{"role": USER, "content": row["prompt"]},
                                             {"role": ASSISTANT, "content": row["completion"].strip()}])
        return dataset.map(tokenize_pair, remove_columns=columns)
    if chat:
        return dataset.map(as_messages)
    return dataset
