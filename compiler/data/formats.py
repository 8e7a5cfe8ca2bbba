"""The dataset formats ftc reads, one table row each, and the canonical rows they become.

A format names the fields a row carries (as a user's file has them: ShareGPT's `conversations`,
Alpaca's `instruction`/`output`, ...) and turns one row into a canonical row of one *kind*, the
columns the runtime hands to TRL:

    chat              {"messages": [{"role", "content"}, ...]}
    prompt_completion {"prompt": str, "completion": str}
    text              {"text": str}                       (continued pre-training: loss on every token)
    preference        {"prompt", "chosen", "rejected"}    (strings, or message lists)
    prompt_answer     {"prompt", "answer"}                (prompt a string or a message list)

A converter returns the canonical row, or the reason the row is refused. Adding a format is one
converter and one `Format(...)` line in FORMATS; detection tries the rows in table order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "model": "assistant"}
KINDS = ("chat", "prompt_completion", "text", "preference", "prompt_answer")
METHOD_KINDS = {
    "lora": ("prompt_completion", "chat", "text"),
    "sft": ("prompt_completion", "chat", "text"),
    "dpo": ("preference",),
    "grpo": ("prompt_answer",),
}

Converted = dict | str  # the canonical row, or why the row is refused


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string", bytes: "bytes"}.get(type(value), "null")


def text_field(row: dict, field: str, where: str = "", optional: bool = False) -> str | None:
    """The reason `row[field]` is not a non-empty string, or None when it is (or is optional and absent)."""
    if field not in row:
        return None if optional else f'{where}missing field "{field}"'
    value = row[field]
    if optional and (value is None or value == ""):
        return None
    if not isinstance(value, str):
        return f'{where}field "{field}" must be a string, got {type_name(value)}'
    if not value.strip():
        return f'{where}field "{field}" is empty'
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f'{where}field "{field}" holds a lone surrogate {ascii(value[exc.start])} (\\u escapes must pair up)'
    return None


def messages_of(value: object, field: str, role_key: str = "role", content_key: str = "content",
                roles: dict | None = None) -> list[dict] | str:
    """Canonical {"role", "content"} messages from a list of message objects, or the reason they are refused."""
    if not isinstance(value, list):
        return f'field "{field}" must be an array, got {type_name(value)}'
    if not value:
        return f'field "{field}" is empty'
    out = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]: "
        if not isinstance(message, dict):
            return f"{where}must be an object, got {type_name(message)}"
        if role_key not in message:
            return f'{where}missing field "{role_key}"'
        role = message[role_key]
        if roles is not None:
            role = roles.get(role) if isinstance(role, str) else None
        if role not in ROLES:
            allowed = f"one of {', '.join(roles)}" if roles is not None else "system, user or assistant"
            return f"{where}{role_key} must be {allowed}, got {json.dumps(message[role_key])}"
        if role == "system" and i:
            return f"{where}a system message may only come first"
        problem = text_field(message, content_key, where)
        if problem:
            return problem
        out.append({"role": role, "content": message[content_key]})
    return out


def _conversation(messages: list[dict] | str) -> Converted:
    if isinstance(messages, str):
        return messages
    if messages[-1]["role"] != "assistant":
        return f"the last message must be from the assistant, got {messages[-1]['role']}"
    if not any(m["role"] == "assistant" for m in messages):
        return "no assistant message to train on"
    return {"messages": messages}


def _chat(row: dict) -> Converted:
    if "messages" not in row:
        return 'missing field "messages"'
    return _conversation(messages_of(row["messages"], "messages"))


def _sharegpt(row: dict) -> Converted:
    if "conversations" not in row:
        return 'missing field "conversations"'
    messages = messages_of(row["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    if isinstance(messages, list) and "system" in row:  # LLaMA-Factory's sharegpt keeps the system prompt apart
        problem = text_field(row, "system", optional=True)
        if problem:
            return problem
        if row["system"] and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": row["system"]}, *messages]
    return _conversation(messages)


def _strings(row: dict, fields: tuple[str, ...]) -> str | None:
    return next((p for p in (text_field(row, f) for f in fields) if p), None)


def _prompt_completion(row: dict) -> Converted:
    return _strings(row, ("prompt", "completion")) or {"prompt": row["prompt"], "completion": row["completion"]}


def _alpaca(row: dict) -> Converted:
    """LLaMA-Factory's reading: prompt = instruction, a newline, the input when there is one; an optional system first."""
    problem = _strings(row, ("instruction", "output")) or text_field(row, "input", optional=True) \
        or text_field(row, "system", optional=True)
    if problem:
        return problem
    parts = [row.get("system") or "", row["instruction"], row.get("input") or ""]
    return {"prompt": "\n".join(p for p in parts if p.strip()), "completion": row["output"]}


def _text(row: dict) -> Converted:
    return text_field(row, "text") or {"text": row["text"]}


def _turns(row: dict, field: str, role: str) -> list[dict] | str:
    """A string or a message list, as a message list (a string becomes one `role` turn)."""
    value = row[field]
    if isinstance(value, str):
        return text_field(row, field) or [{"role": role, "content": value}]
    return messages_of(value, field)


def _preference(row: dict) -> Converted:
    """Strings stay strings; when any of the three is a message list, all three become message lists (as TRL reads them)."""
    missing = next((f for f in ("prompt", "chosen", "rejected") if f not in row), None)
    if missing:
        return f'missing field "{missing}"'
    if all(isinstance(row[f], str) for f in ("prompt", "chosen", "rejected")):
        problem = _strings(row, ("prompt", "chosen", "rejected"))
        out = problem or {f: row[f] for f in ("prompt", "chosen", "rejected")}
    else:
        out = {"prompt": _turns(row, "prompt", "user"), "chosen": _turns(row, "chosen", "assistant"),
               "rejected": _turns(row, "rejected", "assistant")}
        out = next((v for v in out.values() if isinstance(v, str)), out)
    if isinstance(out, dict) and out["chosen"] == out["rejected"]:
        return 'fields "chosen" and "rejected" are identical'
    return out


def _prompt_answer(row: dict) -> Converted:
    if isinstance(row.get("prompt"), list):
        prompt = messages_of(row["prompt"], "prompt")
        if isinstance(prompt, str):
            return prompt
    else:
        problem = text_field(row, "prompt")
        if problem:
            return problem
        prompt = row["prompt"]
    return text_field(row, "answer") or {"prompt": prompt, "answer": row["answer"]}


@dataclass(frozen=True)
class Format:
    name: str  # the value of data.format
    label: str  # what people call it
    kind: str  # the canonical kind its rows become
    detect: tuple[str, ...]  # a row with any of these fields is this format (tried in FORMATS order)
    fields: tuple[str, ...]  # the fields it needs (and optional ones in OPTIONAL), for messages and the README
    convert: Callable[[dict], Converted]


FORMATS = (
    Format("chat", "OpenAI/HF chat", "chat", ("messages",), ("messages",), _chat),
    Format("sharegpt", "ShareGPT", "chat", ("conversations",), ("conversations",), _sharegpt),
    Format("preference", "DPO pairs", "preference", ("chosen", "rejected"), ("prompt", "chosen", "rejected"), _preference),
    Format("alpaca", "Alpaca", "prompt_completion", ("instruction", "output"), ("instruction", "output"), _alpaca),
    Format("prompt_completion", "prompt/completion", "prompt_completion", ("completion",), ("prompt", "completion"),
           _prompt_completion),
    Format("prompt_answer", "GRPO prompts", "prompt_answer", ("answer",), ("prompt", "answer"), _prompt_answer),
    Format("text", "plain text", "text", ("text",), ("text",), _text),
)
BY_NAME = {f.name: f for f in FORMATS}
OPTIONAL = {"sharegpt": ("system",), "alpaca": ("input", "system")}
FIELD_NAMES = tuple(sorted({field for f in FORMATS for field in f.fields + OPTIONAL.get(f.name, ())} | {"role", "content"}))


def detect(row: dict) -> Format | None:
    """The format a row's fields point to, before checking them."""
    return next((f for f in FORMATS if any(field in row for field in f.detect)), None)


def describe(fmt: Format) -> str:
    return f"{fmt.name} {{{', '.join(json.dumps(f) for f in fmt.fields)}}}"


def for_method(method: str) -> list[Format]:
    return [f for f in FORMATS if f.kind in METHOD_KINDS[method]]


def rename(row: dict, fields: dict[str, str]) -> dict:
    """`data.fields`: the row with each mapped column under its canonical name (role/content inside messages too)."""
    if not fields:
        return row
    out = dict(row)
    for canonical, column in fields.items():
        if canonical in ("role", "content"):
            continue
        if column in out:
            out[canonical] = out.pop(column)
    inner = {fields[k]: k for k in ("role", "content") if k in fields}
    if inner:
        for key in ("messages", "conversations", "prompt", "chosen", "rejected"):
            if isinstance(out.get(key), list):
                out[key] = [{inner.get(k, k): v for k, v in m.items()} if isinstance(m, dict) else m for m in out[key]]
    return out


def row_size(row: dict) -> int:
    """UTF-8 bytes of a canonical row's text the model sees (the longer answer, for preference rows)."""
    def size(value) -> int:
        if isinstance(value, str):
            return len(value.encode("utf-8"))
        return sum(len(m["content"].encode("utf-8")) for m in value)

    if "chosen" in row:
        return size(row["prompt"]) + max(size(row["chosen"]), size(row["rejected"]))
    return sum(size(v) for v in row.values())
