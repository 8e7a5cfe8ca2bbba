"""Assistant-only loss, token by token, on eight chat templates given as Jinja strings.

The templates are test data (tests/data/chat_templates, as the models publish them; next_turn_eot
emits end-of-turn at the start of the next turn); each is used with SmolLM2's tokenizer, taught the
template's special tokens. On multi-turn, system and assistant-first conversations the mask must be
exactly each assistant turn's content plus the end-of-turn token closing it, and a conversation the
template cannot express is refused with the reason, by the runtime and the login node's check alike.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase
sys.path.insert(0, str(Path(__file__).parent))

from smollm2_fixture import smollm2_path  # noqa: F401 - fixture

from ftc.compiler.data.template import Renderer, check_template
from ftc.runtime.chat import TemplateError, as_messages, assistant_spans, prepare, tokenize_chat

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
SPECIAL = {
    "smollm2": [],
    "llama3_1": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>"],
    "qwen2_5": [],  # <|im_start|>, <|im_end|> are SmolLM2's own
    "mistral_v0_1": [],  # [INST] is text there; </s> is the end of turn (SmolLM2's eos here)
    "mistral_v3": [],
    "gemma": ["<start_of_turn>", "<end_of_turn>"],
    "phi3": ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    "next_turn_eot": ["<|turn|>", "<|end|>"],
}
END_OF_TURN = {"smollm2": "<|im_end|>", "llama3_1": "<|eot_id|>", "qwen2_5": "<|im_end|>", "gemma": "<end_of_turn>",
               "phi3": "<|end|>", "next_turn_eot": "<|end|>"}  # Mistral's: the eos token
LEAD = {"mistral_v3": " "}  # the space the template writes before each answer (" Paris" is one token)
SYSTEM = {"role": "system", "content": "Answer in one word."}
TURNS = [
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "<think>easy</think> Paris"},  # "]<" straddles in [/INST]<think>
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, of course."},
]
CONVERSATIONS = {"multi-turn": TURNS, "system": [SYSTEM, *TURNS], "assistant-first": TURNS[1:]}
CONVERSATION = CONVERSATIONS["system"]
# What each template cannot express: the reason both the runtime and the login-node check give.
REFUSED = {
    ("mistral_v0_1", "system"): "Conversation roles must alternate",  # the system turn is first
    ("mistral_v0_1", "assistant-first"): "Conversation roles must alternate",
    ("mistral_v3", "system"): "renders turn 3 differently once later turns follow",  # the system prompt moves
    ("mistral_v3", "assistant-first"): "conversation roles must alternate",
    ("gemma", "system"): "System role not supported",
    ("gemma", "assistant-first"): "Conversation roles must alternate",
}


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_path):  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path, local_files_only=True)


def template_text(tokenizer, name: str) -> str:
    return tokenizer.chat_template if name == "smollm2" else (TEMPLATES / f"{name}.jinja").read_text()


def with_template(tokenizer, name: str):
    tok = copy.deepcopy(tokenizer)
    if SPECIAL[name]:
        tok.add_special_tokens({"additional_special_tokens": SPECIAL[name]})
    tok.chat_template = template_text(tokenizer, name)
    return tok


def trained_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    """The token ids of each contiguous run of mask 1."""
    runs, current = [], []
    for token, bit in zip(ids, mask):
        if bit:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("name", list(SPECIAL))
def test_exactly_each_answer_and_its_end_of_turn_token_are_trained(smollm2_tokenizer, name, conversation):
    tok = with_template(smollm2_tokenizer, name)
    messages = CONVERSATIONS[conversation]
    special = {"bos_token": tok.bos_token, "eos_token": tok.eos_token}
    login = check_template(template_text(smollm2_tokenizer, name), special, [messages])
    # The login node renders the template as transformers does.
    if (name, conversation) not in REFUSED:
        assert Renderer(template_text(smollm2_tokenizer, name), special).apply_chat_template(messages) == \
            tok.apply_chat_template(messages, tokenize=False)
    if (name, conversation) in REFUSED:
        with pytest.raises(TemplateError, match=REFUSED[name, conversation]):
            tokenize_chat(tok, messages)
        assert login is not None and REFUSED[name, conversation] in login
        return
    assert login is None
    out = tokenize_chat(tok, messages)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(mask) == len(ids)
    assert tok.decode(ids) == tok.apply_chat_template(messages, tokenize=False)  # nothing dropped
    end = tok.convert_tokens_to_ids(END_OF_TURN.get(name, tok.eos_token))
    answers = [m for m in messages if m["role"] == "assistant"]
    expected = [tok(LEAD.get(name, "") + m["content"], add_special_tokens=False)["input_ids"] + [end] for m in answers]
    if name == "next_turn_eot":  # its last turn has no end-of-turn token at all
        expected[-1] = expected[-1][:-1]
    assert trained_runs(ids, mask) == expected
    untrained = tok.decode([t for t, bit in zip(ids, mask) if not bit])
    for message in messages:
        if message["role"] != "assistant":
            assert message["content"] in untrained
    assert "Paris" not in untrained and "Rome" not in untrained


@pytest.mark.parametrize("name", ["smollm2", "llama3_1", "qwen2_5"])
def test_the_generation_prompt_is_exactly_what_precedes_each_trained_turn(smollm2_tokenizer, name):
    """What the model sees at inference (the prompt with the generation header) is the untrained prefix."""
    tok = with_template(smollm2_tokenizer, name)
    text, spans = assistant_spans(tok, CONVERSATION)
    for index, (start, _) in zip((2, 4), spans):
        prompt = tok.apply_chat_template(CONVERSATION[:index], tokenize=False, add_generation_prompt=True)
        assert text[:start] == prompt


def test_matches_trl_on_qwen_training_template_up_to_whitespace(smollm2_tokenizer):
    """TRL's {% generation %} variant of Qwen2.5 also marks the newlines around a turn; otherwise equal."""
    marked = copy.deepcopy(smollm2_tokenizer)
    marked.chat_template = (TEMPLATES / "qwen2_5_training.jinja").read_text()
    trl = marked.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    # The login node renders {% generation %} templates too (as their text), as transformers does.
    assert Renderer(marked.chat_template).apply_chat_template(CONVERSATION) == \
        marked.apply_chat_template(CONVERSATION, tokenize=False)
    ours = tokenize_chat(with_template(smollm2_tokenizer, "qwen2_5"), CONVERSATION)
    assert list(trl["input_ids"]) == ours["input_ids"]
    for token, theirs, mine in zip(ours["input_ids"], trl["assistant_masks"], ours["assistant_masks"]):
        if theirs != mine:
            assert mine == 0 and smollm2_tokenizer.decode([token]).strip() == ""


def test_a_template_that_rewrites_earlier_turns_is_refused(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    # Earlier assistant turns are shortened once another turn follows (as reasoning templates do).
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}{{ '<|im_start|>assistant\n...<|im_end|>\n' }}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    with pytest.raises(TemplateError, match="renders turn 3 differently"):
        tokenize_chat(tok, CONVERSATION)
    assert sum(tokenize_chat(tok, CONVERSATION[:3])["assistant_masks"]) > 0


def test_prompt_completion_rows_train_on_the_answer_in_chat_format(smollm2_tokenizer):
    from datasets import Dataset

    rows = Dataset.from_list([{"prompt": "uppercase: a b c ->", "completion": " A B C"}])
    chat = prepare(rows, smollm2_tokenizer, "lora", chat=True)[0]
    assert "<|im_start|>user\nuppercase: a b c ->" in smollm2_tokenizer.decode(chat["input_ids"])
    assert trained_runs(chat["input_ids"], chat["assistant_masks"]) == [
        smollm2_tokenizer("A B C", add_special_tokens=False)["input_ids"] + [smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")]
    ]
    assert prepare(rows, smollm2_tokenizer, "lora", chat=False)[0] == rows[0]
    assert as_messages({"prompt": "p", "chosen": " C", "rejected": " c"}) == {
        "prompt": [{"role": "user", "content": "p"}],
        "chosen": [{"role": "assistant", "content": "C"}],
        "rejected": [{"role": "assistant", "content": "c"}],
    }
