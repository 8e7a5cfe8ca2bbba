"""Chat templates as text, without torch: rendered as transformers renders them, and where each answer is.

`Renderer` renders a template string in jinja2's immutable sandbox with transformers' settings
(trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `tojson`), so the login node can
check a model's template (tokenizer_config.json or chat_template.jinja) on sample rows before the
job is queued. `answer_spans` is the rule the runtime's loss mask uses (runtime/chat.py): for each
assistant turn, the conversation up to it is rendered with the generation prompt and again with the
turn; the second must extend the first, and the full conversation must extend both (a template that
rewrites earlier turns cannot be trained turn by turn). The answer is the turn's content, found in
what the turn added: headers and anything the template injects (a default system prompt before an
assistant-first turn) stay untrained. An end-of-sequence token the template appends to every
rendering (Phi-3's published template) is not part of the turn.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

ASSISTANT = "assistant"


class TemplateError(ValueError):
    """The chat template cannot give an assistant mask for this conversation."""


def _raise(message: str):
    from jinja2.exceptions import TemplateError as JinjaError

    raise JinjaError(message)  # as transformers' raise_exception


class Renderer:
    """A chat template with the tokenizer's special tokens, with `apply_chat_template(..., tokenize=False)`."""

    def __init__(self, template: str, special: dict[str, str] | None = None):
        from jinja2 import nodes
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class Generation(Extension):
            """`{% generation %}...{% endgeneration %}` (TRL's assistant marks): rendered as its body, as transformers does."""

            tags = {"generation"}

            def parse(self, parser):
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return nodes.Scope(body, lineno=lineno)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, Generation])
        env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent,
                                                                                        ensure_ascii=ensure_ascii)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.template = env.from_string(template)
        self.special = dict(special or {})
        self.eos_token = self.special.get("eos_token")

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **_):
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt, **self.special)


def render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _extends(piece: str, text: str, eos: str | None) -> str | None:
    """`piece` if `text` starts with it; else `piece` without a final end-of-sequence the template always appends."""
    if text.startswith(piece):
        return piece
    bare = piece.rstrip()
    if eos and bare.endswith(eos) and text.startswith(bare[: -len(eos)]):
        return bare[: -len(eos)]
    return None


def answer_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the (start, end) characters of each assistant turn's answer in it."""
    from jinja2.exceptions import TemplateError as JinjaError

    try:
        return _answer_spans(tokenizer, messages)
    except JinjaError as exc:  # the template's own raise_exception: it refuses this conversation
        raise TemplateError(f"the chat template refuses it: {exc}") from None


def _answer_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    text = render(tokenizer, messages)
    eos = getattr(tokenizer, "eos_token", None)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != ASSISTANT:
            continue
        before = _extends(render(tokenizer, messages[:i], generation_prompt=True), text, eos) if i else ""
        through = _extends(render(tokenizer, messages[: i + 1]), text, eos)
        if before is None or through is None or not through.startswith(before):
            raise TemplateError(
                f"the chat template renders turn {i + 1} differently once later turns follow; "
                "it cannot be trained turn by turn"
            )
        content = message["content"]  # as given, or as the templates that trim it write it
        found = through.find(content, len(before)) if content.strip() else -1
        if found < 0:
            content = content.strip()
            found = through.find(content, len(before)) if content else -1
        if found < 0:
            raise TemplateError(f"the chat template renders assistant turn {i + 1} without its content")
        # From the end of the generation prompt (a space the template puts before the answer is the
        # answer's, as the model writes it at inference), unless the template injects text there.
        start = len(before) if i and not through[len(before):found].strip() else found
        spans.append((start, found + len(content)))
    return text, spans


def missing_turns(tokenizer, messages: list[dict]) -> str | None:
    """The first message whose content the rendering leaves out (a template that drops system turns), or None."""
    text = render(tokenizer, messages)
    at = 0
    for i, message in enumerate(messages):
        found = text.find(message["content"].strip(), at)
        if found < 0:
            return f"the chat template leaves out message {i + 1} ({message['role']})"
        at = found + len(message["content"].strip())
    return None


def read_template(model_dir: str) -> tuple[str, dict[str, str]] | None:
    """(chat template, special tokens) from a model folder's chat_template.jinja or tokenizer_config.json; None if it has none."""
    config_file = os.path.join(model_dir, "tokenizer_config.json")
    try:
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    special = {k: v if isinstance(v, str) else v.get("content", "") for k, v in config.items()
               if k in ("bos_token", "eos_token", "pad_token", "unk_token") and isinstance(v, (str, dict))}
    jinja_file = os.path.join(model_dir, "chat_template.jinja")
    if os.path.isfile(jinja_file):
        with open(jinja_file, encoding="utf-8") as handle:
            return handle.read(), special
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"), None)
    return (template, special) if isinstance(template, str) and template.strip() else None


def check_template(template: str, special: dict[str, str], conversations: list[list[dict]]) -> str | None:
    """Why the template cannot train these conversations (one reason), or None when every one renders right."""
    from jinja2 import TemplateError as JinjaError

    try:
        renderer = Renderer(template, special)
    except JinjaError as exc:
        return f"the chat template does not parse: {exc}"
    for messages in conversations:
        kinds = ("a system message" if messages[0]["role"] == "system" else
                 "an assistant-first conversation" if messages[0]["role"] == ASSISTANT else "a conversation")
        try:
            answer_spans(renderer, messages)
            problem = missing_turns(renderer, messages)
        except TemplateError as exc:
            return f"{kinds}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a template's own code failing is the user's template, not ftc
            return f"the chat template fails on {kinds}: {type(exc).__name__}: {exc}"
        if problem:
            return f"{kinds}: {problem}"
    return None
