"""Assistant-only loss for any chat template, and prompt/completion rows in the model's chat format.

TRL masks assistant turns only when a template carries `{% generation %}` markers, which the
published Llama-3.1, Qwen2.5 and SmolLM2 templates do not. Here the mask comes from the template
itself: for each assistant turn, the conversation up to it is rendered with the generation prompt
(where the model starts writing) and again with the turn (where it stops). The characters between
the two, trailing whitespace aside, are the assistant's: its content and end-of-turn token. Tokens
that start inside such a span are trained. A template whose shorter rendering is not a prefix of
the longer one (it rewrites earlier turns) is refused rather than trained wrong.
"""

from __future__ import annotations

from ftc.compiler.planning.plan import Plan

USER, ASSISTANT = "user", "assistant"


class TemplateError(ValueError):
    """The chat template cannot give an assistant mask for this conversation."""


def render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the (start, end) characters of each assistant turn in it."""
    text = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != ASSISTANT:
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1])
        if not (text.startswith(through) and through.startswith(before)):
            raise TemplateError(
                f"the chat template renders turn {i + 1} differently once later turns follow; "
                "it cannot be trained turn by turn"
            )
        end = len(through.rstrip())
        if end <= len(before):
            raise TemplateError(f"the chat template renders assistant turn {i + 1} as nothing")
        spans.append((len(before), end))
    return text, spans


def tokenize_chat(tokenizer, messages: list[dict]) -> dict:
    """input_ids of the rendered conversation and assistant_masks (1 on tokens the loss covers)."""
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(a <= start < b for a, b in spans)) for start, _ in encoded["offset_mapping"]]
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}


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
