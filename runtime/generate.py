"""`ftc generate RUN "prompt"` and `ftc chat RUN`: try a trained model right away.

The prompt is formatted as the run trained: through the model's chat template (a user turn, then the
assistant's) when the run's data was chat, or prompt/completion rows the run put in the chat format
(data.chat_template auto on a model with a template, runtime/chat.py), as raw text otherwise (a template
would ask a question the model never saw). --template chat|raw overrides. Chat keeps the conversation when templated. Greedy by
default with the evaluation's own decoding (same stops), so an answer matches what eval.json scored;
--temperature samples.
"""

from __future__ import annotations

import math
import sys

from ftc.compiler.errors import UserError
from ftc.runtime import trained as trained_runs
from ftc.runtime.planfile import printable

MAX_NEW_TOKENS = 8192


def _positive_tokens(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UserError(f"--max-new-tokens: {value[:40]!r} is not a whole number") from None
    if not 1 <= number <= MAX_NEW_TOKENS:
        raise UserError(f"--max-new-tokens: must be between 1 and {MAX_NEW_TOKENS} (got {number})")
    return number


def _temperature(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"--temperature: {value[:40]!r} is not a number") from None
    if not math.isfinite(number) or not 0.0 <= number <= 10.0:
        raise UserError(f"--temperature: must be between 0 (greedy) and 10 (got {value[:40]})")
    return number


def parser(command: str) -> trained_runs.Parser:
    parser = trained_runs.Parser(prog=f"ftc {command}")
    trained_runs.add_run_arguments(parser)
    parser.add_argument("--max-new-tokens", type=_positive_tokens, default=128)
    parser.add_argument("--temperature", type=_temperature, default=0.0, help="0 (the default) answers greedily")
    parser.add_argument("--system", help="a system message, when the chat template takes one")
    parser.add_argument("--template", choices=("auto", "chat", "raw"), default="auto",
                        help="auto: as the run trained (chat data through the template, text as raw text)")
    return parser


def use_template(choice: str, tokenizer, data_format: str, trained_chat: bool = False) -> bool:
    """`trained_chat`: the run trained its prompt/completion rows in the chat format."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if choice == "chat" and not has_template:
        raise UserError("--template chat: this model's tokenizer has no chat template")
    return choice == "chat" or (choice == "auto" and has_template and (data_format == "chat" or trained_chat))


class Session:
    """A loaded model and its conversation so far."""

    def __init__(self, model, tokenizer, templated: bool, max_new_tokens: int, temperature: float,
                 system: str | None = None):
        self.model, self.tokenizer, self.templated = model, tokenizer, templated
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.system = system
        self.messages: list[dict] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system and self.templated else []

    def prompt_ids(self, prompt: str) -> list[int]:
        if self.templated:
            messages = [*self.messages, {"role": "user", "content": prompt}]
            encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                         return_dict=True)
            return list(encoded["input_ids"])
        return list(self.tokenizer(prompt)["input_ids"])

    def _check_length(self, length: int) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and length + self.max_new_tokens > limit:
            raise UserError(f"prompt: {length} tokens plus --max-new-tokens {self.max_new_tokens} exceed "
                            f"the model's {limit}; shorten it (or /reset the chat)")

    def _sample(self, ids: list[int]) -> str:
        import torch

        from ftc.runtime.evaluate import _pad_id, _stop_ids

        stops = _stop_ids(self.model, self.tokenizer)
        inputs = torch.tensor([ids], device=self.model.device)
        with torch.no_grad():
            out = self.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=True,
                                      temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                                      pad_token_id=_pad_id(self.tokenizer), eos_token_id=stops or None)
        new = out[0, len(ids):].tolist()
        end = next((k for k, t in enumerate(new) if t in stops), len(new))
        return self.tokenizer.decode(new[:end], skip_special_tokens=True)

    def answer(self, prompt: str, keep: bool = True) -> str:
        from ftc.runtime.evaluate import generate

        if not prompt.strip():
            raise UserError("prompt: empty")
        ids = self.prompt_ids(prompt)
        self._check_length(len(ids))
        if self.temperature > 0:
            text = self._sample(ids)
        else:
            (text,) = generate(self.model, self.tokenizer, [{"prompt_ids": ids}], max_new_tokens=self.max_new_tokens)
        if keep and self.templated:
            self.messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": text.strip()}]
        return text


def open_session(options) -> Session:
    found = trained_runs.find(options.run, options.root)
    model, tokenizer, _ = trained_runs.load(found)
    from ftc.runtime.chat import uses_chat_template

    templated = use_template(options.template, tokenizer, found.plan.dataset.format,
                             uses_chat_template(found.plan, tokenizer))
    return Session(model, tokenizer, templated, options.max_new_tokens, options.temperature, options.system)


def generate_command(args: list[str]) -> int:
    """One answer to one prompt ("-" reads the prompt from standard input)."""
    command = parser("generate")
    command.add_argument("prompt", help='the prompt; "-" reads it from standard input')
    options = command.parse_args(args)
    prompt = sys.stdin.read() if options.prompt == "-" else options.prompt
    if not prompt.strip():
        raise UserError("prompt: empty")
    session = open_session(options)
    print(printable(session.answer(prompt, keep=False), None, "\n\t"))
    return 0


CHAT_HELP = "type a message; /reset starts over, /exit (or Ctrl-D) ends"


def chat_command(args: list[str]) -> int:
    """A conversation on the terminal (or over a pipe: one message per line)."""
    options = parser("chat").parse_args(args)
    session = open_session(options)
    interactive = sys.stdin.isatty()
    if interactive:
        template = "the model's chat template" if session.templated else "raw text (the tokenizer has no chat template)"
        print(f"chatting with run {options.run} through {template}; {CHAT_HELP}")
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            print()
            break
        message = line.strip()
        if message in ("/exit", "/quit"):
            break
        if message == "/reset":
            session.reset()
            print("(conversation reset)")
            continue
        if not message:
            continue
        try:
            reply = session.answer(line)
        except UserError as exc:
            print(f"ftc: error: {exc}", file=sys.stderr)
            continue
        print(("model> " if interactive else "") + printable(reply, None, "\n\t"), flush=True)
    return 0
