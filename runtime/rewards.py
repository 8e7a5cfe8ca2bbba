"""GRPO rewards: programmatic scores of each completion, as TRL's GRPOTrainer calls them.

TRL calls a reward as `f(prompts=..., completions=..., completion_ids=..., **columns)` where the
dataset's other columns (here `answer`) arrive as lists aligned with the completions.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable

from ftc.compiler.config.methods import Reward

RewardFunc = Callable[..., list[float]]


def text_of(completion) -> str:
    """A completion's text; conversational completions are lists of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def _norm(text: str, normalize: bool) -> str:
    return " ".join(text.split()).casefold() if normalize else text.strip()


def matches_answer(completion: str, answer: str, normalize: bool = False) -> bool:
    """The answer exactly (outer whitespace aside), or the answer then a line break (the model rambles on).

    Case and inner whitespace count unless `normalize` (method.reward.normalize).
    """
    head = completion.strip()
    if _norm(head, normalize) == _norm(answer, normalize):
        return True
    first = head.split("\n", 1)[0]
    return "\n" in head and _norm(first, normalize) == _norm(answer, normalize)


def exact_match(prompts=None, completions=(), answer=None, normalize: bool = False, **kwargs) -> list[float]:
    answers = answer or [""] * len(completions)
    return [1.0 if matches_answer(text_of(c), str(a), normalize) else 0.0 for c, a in zip(completions, answers)]


def normalized_exact_match(prompts=None, completions=(), answer=None, **kwargs) -> list[float]:
    return exact_match(prompts, completions, answer, normalize=True)


def capital_letter(prompts=None, completions=(), **kwargs) -> list[float]:
    """1 for a completion holding one of the demo's upper-case letters A-J: a first step of the demo task
    that a random-init model meets by chance a quarter of the time, so GRPO has something to reinforce
    (the exact answer it never meets, and a reward that is always 0 teaches nothing)."""
    return [1.0 if re.search("[A-J]", text_of(c)) else 0.0 for c in completions]


def regex_reward(pattern: str) -> RewardFunc:
    compiled = re.compile(pattern)

    def regex(prompts=None, completions=(), **kwargs) -> list[float]:
        return [1.0 if compiled.search(text_of(c)) else 0.0 for c in completions]

    return regex


# ---------------------------------------------------------------- JSON Schema

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES.get(name, ()))


def schema_errors(value, schema: dict) -> list[str]:
    """The common core of JSON Schema (type, enum, const, properties, required, items, bounds, pattern)."""
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            return [f"expected {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append("not in enum")
    if "const" in schema and value != schema["const"]:
        errors.append("not the const")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"missing {k}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key])
            elif schema.get("additionalProperties") is False:
                errors.append(f"unexpected {key}")
    if isinstance(value, list):
        if "items" in schema and isinstance(schema["items"], dict):
            for item in value:
                errors += schema_errors(item, schema["items"])
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append("item count out of range")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            errors.append("length out of range")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append("pattern")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append("below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append("above maximum")
    return errors


def _validator(schema: dict) -> Callable[[object], bool]:
    try:
        import jsonschema
    except ImportError:
        return lambda value: not schema_errors(value, schema)
    checker = jsonschema.validators.validator_for(schema)(schema)
    return checker.is_valid


def _parse_json(text: str):
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    return json.loads(body)


def json_schema_reward(schema_path: str) -> RewardFunc:
    """1 for a completion that is JSON valid against the schema, 0.5 for JSON that is not, else 0."""
    try:
        with open(schema_path) as handle:
            schema = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"method.reward.schema_path: cannot read a JSON Schema from {schema_path}: {exc}") from None
    valid = _validator(schema)

    def json_schema(prompts=None, completions=(), **kwargs) -> list[float]:
        scores = []
        for c in completions:
            try:
                value = _parse_json(text_of(c))
            except (json.JSONDecodeError, ValueError):
                scores.append(0.0)
                continue
            scores.append(1.0 if valid(value) else 0.5)
        return scores

    return json_schema


def imported_reward(spec: str) -> RewardFunc:
    module_name, _, name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"method.reward.function: cannot import {spec}: {exc}") from None
    if not callable(func):
        raise TypeError(f"method.reward.function: {spec} is not callable")
    return func


def build_rewards(reward: Reward | None) -> list[RewardFunc]:
    """The reward functions for a GRPO run; exact match with the row's answer unless told otherwise."""
    if reward is None or reward.kind == "exact_match":
        return [normalized_exact_match if reward is not None and reward.normalize else exact_match]
    if reward.kind == "regex":
        return [regex_reward(reward.pattern or "")]
    if reward.kind == "json_schema":
        return [json_schema_reward(reward.schema_path or "")]
    return [imported_reward(reward.function or "")]
