"""Assistant-only loss, token by token, on the SmolLM2 template and the published Llama-3.1 and Qwen2.5 ones.

The template strings are test data (tests/data/chat_templates, as TRL ships them); every template
is used with SmolLM2's tokenizer, taught the template's special tokens as the real tokenizer has them.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parent))

from smollm2_fixture import smollm2_path  # noqa: F401 - fixture

from ftc.runtime.chat import TemplateError, as_messages, assistant_spans, prepare, tokenize_chat

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
SPECIAL = {
    "llama3_1": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>"],
    "qwen2_5": [],  # <|im_start|>, <|im_end|> are SmolLM2's own
}
END_OF_TURN = {"smollm2": "<|im_end|>", "llama3_1": "<|eot_id|>", "qwen2_5": "<|im_end|>"}
CONVERSATION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris"},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, of course."},
]


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_path):  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path, local_files_only=True)


def with_template(tokenizer, name: str):
    tok = copy.deepcopy(tokenizer)
    if name != "smollm2":
        tok.add_special_tokens({"additional_special_tokens": SPECIAL[name]})
        tok.chat_template = (TEMPLATES / f"{name}.jinja").read_text()
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


@pytest.mark.parametrize("name", ["smollm2", "llama3_1", "qwen2_5"])
def test_each_assistant_turn_and_its_end_token_are_trained_and_nothing_else(smollm2_tokenizer, name):
    tok = with_template(smollm2_tokenizer, name)
    out = tokenize_chat(tok, CONVERSATION)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert ids == list(tok.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"])
    assert len(mask) == len(ids)
    end = tok.convert_tokens_to_ids(END_OF_TURN[name])
    expected = [
        tok(message["content"], add_special_tokens=False)["input_ids"] + [end]
        for message in CONVERSATION
        if message["role"] == "assistant"
    ]
    assert trained_runs(ids, mask) == expected
    # Every token outside the runs is a prompt token: the system text, both questions, all headers.
    untrained = tok.decode([t for t, bit in zip(ids, mask) if not bit])
    for message in CONVERSATION[:2] + CONVERSATION[3:4]:
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
