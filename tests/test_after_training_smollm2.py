"""`ftc generate`, `ftc chat` and `ftc export` on a real pretrained model: SmolLM2-135M-Instruct, on CPU.

One LoRA run of two steps on the demo's prompt/completion rows, which ftc trains in SmolLM2's chat
format (data.chat_template auto). Every answer is checked against base + adapter loaded by hand with
transformers and peft, the prompt built by the tokenizer's own chat template, decoded greedily.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
peft = pytest.importorskip("peft")
sys.path.insert(0, str(Path(__file__).parent))

from smollm2_fixture import smollm2_config, smollm2_path  # noqa: F401 - fixture

from ftc.runtime.planfile import printable

from plan_factory import OFFLINE_ENV, demo_path, log_tail, make_run, read_status, run_runtime

pytestmark = pytest.mark.train
RUN_ID = "5a010001"
PROMPT = "uppercase: h b d ->"
URN = "**HuggingFaceTB/smollm2-135m-instruct@v1.0.0**"
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("after-smollm2") / "runs"


def small_demo(folder: Path) -> str:
    """The demo's first 8 training and 2 validation rows: the trainer validates on every row at its end."""
    for split, rows in (("training", 8), ("validation", 2)):
        lines = (Path(demo_path("lora")) / split / "uppercase.jsonl").read_text().splitlines(keepends=True)
        (folder / split).mkdir(parents=True)
        (folder / split / "uppercase.jsonl").write_text("".join(lines[:rows]))
    return str(folder)


@pytest.fixture(scope="module")
def run(root, smollm2_path) -> Path:  # noqa: F811
    """The LoRA run every test here reads: two steps, evaluated on one row after training only."""
    folder = root / "default" / "smollm2-135m-instruct-demo-lora" / RUN_ID
    overrides = {"model": smollm2_config(smollm2_path),
                 "data": {"path": small_demo(root.parent / "data")},
                 "method": {"max_steps": 2, "learning_rate": 2e-3},
                 "training": {"eval_steps": 100, "save_steps": 100},
                 "eval": {"max_rows": 1, "before": False}}
    make_run(folder, "lora", overrides, micro_batch_size=4, max_seq_length=64)
    assert run_runtime(folder, timeout=600) == 0, log_tail(folder, 60)
    assert read_status(folder)["state"] == "completed", log_tail(folder, 60)
    return folder


@pytest.fixture(scope="module")
def by_hand(run, smollm2_path):  # noqa: F811
    """(base + adapter, the base's tokenizer), loaded without ftc."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(base, str(run / "output" / "adapter")).eval()
    return model, AutoTokenizer.from_pretrained(smollm2_path)


def greedy(model, tokenizer, messages: list[dict] | str) -> str:
    """Greedy decoding of a chat (through the template) or raw text, cut at the end-of-turn token."""
    if isinstance(messages, str):
        ids = tokenizer(messages)["input_ids"]
    else:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
    inputs = torch.tensor([list(ids)])
    with torch.no_grad():
        out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
                             max_new_tokens=NEW_TOKENS, pad_token_id=tokenizer.eos_token_id)
    new = out[0, inputs.shape[1]:].tolist()
    end = new.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in new else len(new)
    return tokenizer.decode(new[:end], skip_special_tokens=True)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def ftc(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE_ENV, "FTC_OUTPUT_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "ftc", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def shown(answer: str) -> str:
    return printable(answer, None, "\n\t")


def test_generate_answers_through_the_chat_template_as_base_plus_adapter_would(root, run, by_hand):
    model, tokenizer = by_hand
    expected = greedy(model, tokenizer, [user(PROMPT)])
    assert expected != greedy(model, tokenizer, PROMPT)  # the template changes the answer: the test can tell
    result = ftc(root, "generate", RUN_ID, PROMPT, "--max-new-tokens", str(NEW_TOKENS))
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown(expected) + "\n" and result.stderr == ""


def test_chat_keeps_the_conversation_until_reset(root, run, by_hand):
    model, tokenizer = by_hand
    first, second = "My name is Ada.", "What is my name?"
    answer = greedy(model, tokenizer, [user(first)])
    follow_up = greedy(model, tokenizer, [user(first), {"role": "assistant", "content": answer.strip()}, user(second)])
    fresh = greedy(model, tokenizer, [user(second)])
    assert follow_up != fresh  # the first turn changes the second's answer: the test can tell
    result = ftc(root, "chat", RUN_ID, "--max-new-tokens", str(NEW_TOKENS),
                 stdin=f"{first}\n{second}\n/reset\n{second}\n/exit\nnever read\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{shown(answer)}\n{shown(follow_up)}\n(conversation reset)\n{shown(fresh)}\n"


def test_export_merge_writes_a_plain_model_equal_to_base_plus_adapter(root, run, by_hand, smollm2_path, tmp_path):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = tmp_path / "merged"
    result = ftc(root, "export", RUN_ID, "--merge", "--to", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].strip() == f"vllm serve {target}"
    assert not (target / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32).eval()
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in merged.modules())
    model, tokenizer = by_hand
    batch = tokenizer.apply_chat_template([user(PROMPT)], add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
    with torch.no_grad():
        adapted = model(**batch).logits
        # Merging adds the adapter into every linear weight (all-linear): fp32 rounds in another order,
        # ~1e-4 on logits of ~30; the adapter's own effect is far above 1e-3 (next line).
        assert torch.allclose(merged(**batch).logits, adapted, atol=1e-3)
        with model.disable_adapter():
            assert not torch.allclose(model(**batch).logits, adapted, atol=1e-3)  # the adapter learned something
    exported = AutoTokenizer.from_pretrained(str(target))
    assert exported.chat_template == tokenizer.chat_template
    card = (target / "README.md").read_text()
    assert f"base_model: {smollm2_path}" in card and f"a LoRA fine-tune, merged into {URN}" in card
    assert f"ftc generate {RUN_ID}" in card


def test_export_without_merge_copies_the_adapter_and_prints_the_vllm_line(root, run, smollm2_path, tmp_path):  # noqa: F811
    target = tmp_path / "adapter"
    result = ftc(root, "export", RUN_ID, "--to", str(target))
    assert result.returncode == 0, result.stderr
    source = run / "output" / "adapter"
    assert (target / "adapter_model.safetensors").read_bytes() == (source / "adapter_model.safetensors").read_bytes()
    assert json.loads((target / "adapter_config.json").read_text())["base_model_name_or_path"] == smollm2_path
    card = (target / "README.md").read_text()
    assert f"a LoRA adapter for {URN}" in card and str(target) in card
    rank = json.loads((run / "plan.json").read_text())["job"]["method"]["lora"]["adapter_dim"]
    serve = (f"vllm serve {smollm2_path} --enable-lora --max-lora-rank {rank} "
             f"--lora-modules smollm2-135m-instruct-demo-{RUN_ID}={target}")
    assert result.stdout.splitlines()[-1].strip() == serve
    assert not list(tmp_path.glob(".adapter.*"))
