"""After training: `ftc generate`, `ftc chat` and `ftc export` on tiny-model runs; lora_merged at the end of training.

Three run folders under one output root, found by run id as `ftc status` finds them: a LoRA run trained
with finetuning_type lora_merged, and two saved without training (an adapter with random weights, so its
answers differ from the base's, and a full model) for the commands' other paths.
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
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

sys.path.insert(0, str(Path(__file__).parent))

from ftc.compiler.errors import UserError
from ftc.runtime.planfile import printable

from plan_factory import OFFLINE_ENV, log_tail, make_run, read_status, run_runtime

PROMPT = "uppercase: h b d ->"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("after") / "runs"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    from ftc.compiler.config.schema import Architecture
    from ftc.runtime.tiny import ensure_tiny_model

    from plan_factory import _yaml

    path = str(tmp_path_factory.getbasetemp() / "tiny-llama-v1")
    return ensure_tiny_model(path, Architecture.model_validate(_yaml("model", "tiny")["architecture"]))


def run_dir(root: Path, run_id: str, name: str = "demo-lora") -> Path:
    return root / "default" / name / run_id


@pytest.fixture(scope="module")
def merged_run(root, tiny) -> Path:
    """Trained for a few steps with finetuning_type lora_merged."""
    folder = run_dir(root, "e4ed0001")
    overrides = {
        "method": {"max_steps": 6, "learning_rate": 3e-3, "finetuning_type": "lora_merged"},
        "training": {"eval_steps": 100, "save_steps": 100},
        "eval": {"max_rows": 2, "before": False},
    }
    make_run(folder, "lora", overrides, model_path=tiny, micro_batch_size=4)
    assert run_runtime(folder) == 0, log_tail(folder, 60)
    assert read_status(folder)["state"] == "completed"
    return folder


def _base(tiny: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def adapter_run(root, tiny) -> Path:
    """outputs/adapter saved as the runtime saves it, from an adapter with random weights (no training)."""
    from transformers import AutoTokenizer

    from ftc.runtime.outputs import save_outputs

    folder = run_dir(root, "ada70001")
    plan = make_run(folder, "lora", model_path=tiny)
    lora = plan.job.method.lora
    model = peft.get_peft_model(_base(tiny), peft.LoraConfig(r=lora.adapter_dim, lora_alpha=lora.alpha,
                                                              target_modules=lora.target_modules))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    save_outputs(model.eval(), AutoTokenizer.from_pretrained(tiny), plan)
    return folder


@pytest.fixture(scope="module")
def model_run(root, tiny) -> Path:
    from transformers import AutoTokenizer

    from ftc.runtime.outputs import save_outputs

    folder = run_dir(root, "d0de0001", "demo-sft")
    plan = make_run(folder, "sft", model_path=tiny)
    save_outputs(_base(tiny), AutoTokenizer.from_pretrained(tiny), plan)
    return folder


def ftc(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE_ENV, "FTC_OUTPUT_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "ftc", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=300)


def reference_answer(model, tokenizer, prompt: str, chat: bool = False, system: str | None = None) -> str:
    """What the evaluation's greedy decoding gives for this prompt."""
    from ftc.runtime.evaluate import generate

    if chat:
        messages = [{"role": "system", "content": system}] if system else []
        messages = [*messages, {"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    return generate(model, tokenizer, [{"prompt_ids": list(ids)}], max_new_tokens=16)[0]


def adapter_model(folder: Path, tiny: str):
    from transformers import AutoTokenizer

    model = peft.PeftModel.from_pretrained(_base(tiny), str(folder / "output" / "adapter")).eval()
    return model, AutoTokenizer.from_pretrained(str(folder / "output" / "adapter"))


# ---------------------------------------------------------------- lora_merged at the end of training


@pytest.mark.train
def test_lora_merged_training_writes_a_merged_model_equal_to_base_plus_adapter(merged_run, tiny):
    from transformers import AutoModelForCausalLM

    outputs = json.loads((merged_run / "outputs.json").read_text())
    assert set(outputs["paths"]) == {"adapter", "merged"}
    merged = AutoModelForCausalLM.from_pretrained(outputs["paths"]["merged"], dtype=torch.float32).eval()
    adapter, tokenizer = adapter_model(merged_run, tiny)
    batch = tokenizer([PROMPT], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapter(**batch).logits, atol=1e-5)
    assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in merged.modules())


@pytest.mark.train
def test_model_cards_name_the_real_base(merged_run, tiny):
    cards = sorted(merged_run.rglob("README.md"))
    assert not any("[None]" in card.read_text() for card in cards), cards
    assert not (merged_run / "checkpoints" / "README.md").exists()
    for kind in ("adapter", "merged"):
        card = (merged_run / "output" / kind / "README.md").read_text()
        assert f"base_model: {tiny}" in card and "**ftc/tiny-llama@v1.0.0**" in card
        assert "run `e4ed0001`" in card and "max_steps 6" in card and "ftc generate e4ed0001" in card
    assert "--lora-modules tiny-llama-demo-e4ed0001=" in (merged_run / "output" / "adapter" / "README.md").read_text()


# ---------------------------------------------------------------- generate and chat


@pytest.mark.train
def test_generate_answers_as_the_evaluation_decodes(root, adapter_run, tiny):
    model, tokenizer = adapter_model(adapter_run, tiny)
    expected = reference_answer(model, tokenizer, PROMPT)
    base_answer = reference_answer(_base(tiny), tokenizer, PROMPT)
    assert expected != base_answer  # the adapter is really applied
    result = ftc(root, "generate", "ada70001", PROMPT, "--max-new-tokens", "16")
    assert result.returncode == 0, result.stderr
    assert result.stdout == printable(expected, None, "\n\t") + "\n"
    assert result.stderr == ""


@pytest.mark.train
def test_generate_prefers_the_merged_model_and_reads_stdin(root, merged_run, tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(str(merged_run / "output" / "merged"), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(merged_run / "output" / "merged"))
    expected = reference_answer(merged, tokenizer, PROMPT)
    result = ftc(root, "generate", "e4ed", "-", "--max-new-tokens", "16", stdin=PROMPT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == printable(expected, None, "\n\t") + "\n"


@pytest.mark.train
def test_chat_keeps_the_conversation_through_the_template(adapter_run, tiny):
    from ftc.runtime.generate import Session, use_template

    model, tokenizer = adapter_model(adapter_run, tiny)
    assert use_template("auto", tokenizer, "prompt_completion") is False  # as the demo run trained
    assert use_template("auto", tokenizer, "chat") is True
    session = Session(model, tokenizer, True, 8, 0.0, system="be brief")
    first = session.answer("hello")
    assert first == reference_answer(model, tokenizer, "hello", chat=True, system="be brief")[:len(first)]
    ids = session.prompt_ids("again")
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n")
    assert len(session.messages) == 3
    session.reset()
    assert session.messages == [{"role": "system", "content": "be brief"}]


@pytest.mark.train
def test_chat_over_a_pipe_answers_each_line(root, adapter_run, tiny):
    model, tokenizer = adapter_model(adapter_run, tiny)
    expected = reference_answer(model, tokenizer, "hello", chat=True)
    result = ftc(root, "chat", "ada70001", "--template", "chat", "--max-new-tokens", "16",
                 stdin="hello\n/reset\n\nhello\n/exit\nnever read\n")
    assert result.returncode == 0, result.stderr
    answer = printable(expected, None, "\n\t")  # the model's control characters shown, not obeyed
    assert result.stdout == f"{answer}\n(conversation reset)\n{answer}\n"


# ---------------------------------------------------------------- export


@pytest.mark.train
def test_export_copies_the_adapter_and_prints_the_vllm_line(root, adapter_run, tiny, tmp_path):
    target = tmp_path / "exported"
    result = ftc(root, "export", "ada70001", "--to", str(target))
    assert result.returncode == 0, result.stderr
    source = adapter_run / "output" / "adapter"
    assert (target / "adapter_model.safetensors").read_bytes() == (source / "adapter_model.safetensors").read_bytes()
    assert json.loads((target / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny
    card = (target / "README.md").read_text()
    assert "**ftc/tiny-llama@v1.0.0**" in card and str(target) in card
    serve = f"vllm serve {tiny} --enable-lora --max-lora-rank 8 --lora-modules tiny-llama-demo-ada70001={target}"
    assert serve in result.stdout.splitlines()[-1]
    assert not list(tmp_path.glob(".exported.*"))  # the staging folder is gone


@pytest.mark.train
def test_export_merge_writes_a_plain_model(root, adapter_run, tiny):
    from transformers import AutoModelForCausalLM

    for _ in range(2):  # the default folder is replaced on a second export
        result = ftc(root, "export", "ada70001", "--merge")
        assert result.returncode == 0, result.stderr
    target = adapter_run / "export" / "merged"
    assert f"vllm serve {target}" in result.stdout
    # ftc's four lines and nothing else: library notices (DeepSpeed's accelerator line) go to logs/export.log.
    assert result.stdout.splitlines()[0] == f"exported the merged model of {json.loads((adapter_run / 'plan.json').read_text())['output_name']} to {target}"
    assert len(result.stdout.splitlines()) == 4 and result.stderr == ""
    merged = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32).eval()
    adapter, tokenizer = adapter_model(adapter_run, tiny)
    batch = tokenizer([PROMPT], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapter(**batch).logits, atol=1e-5)
    assert "a LoRA fine-tune, merged into **ftc/tiny-llama@v1.0.0**" in (target / "README.md").read_text()
    assert sorted(p.name for p in (adapter_run / "export").iterdir()) == ["merged"]


# ---------------------------------------------------------------- refusals: one line each


def refused(function, args: list[str]) -> str:
    with pytest.raises(UserError) as caught:
        function(args)
    (line,) = caught.value.problems
    assert "\n" not in line and all(c.isprintable() for c in line), repr(line)
    return line


@pytest.fixture
def in_root(root, monkeypatch):
    monkeypatch.setenv("FTC_OUTPUT_ROOT", str(root))
    return root


@pytest.mark.train
@pytest.mark.parametrize(("args", "expected"), [
    (["ada70001", PROMPT, "--max-new-tokens", "0"], "--max-new-tokens: must be between 1"),
    (["ada70001", PROMPT, "--max-new-tokens", "10" * 30], "--max-new-tokens: must be between 1"),
    (["ada70001", PROMPT, "--max-new-tokens", "many"], "is not a whole number"),
    (["ada70001", PROMPT, "--temperature", "nan"], "--temperature: must be between 0"),
    (["ada70001", PROMPT, "--temperature", "inf"], "--temperature: must be between 0"),
    (["ada70001", PROMPT, "--temperature", "-1"], "--temperature: must be between 0"),
    (["ada70001", "   "], "prompt: empty"),
    (["", PROMPT], "RUN: empty"),
    (["nosuchrun", PROMPT], "no run matches 'nosuchrun'"),
    (["\x1b[2Jrun'\"\\", PROMPT], "is not a run id, prefix or Slurm job id"),
    (["ada70001", PROMPT * 300, "--max-new-tokens", "8"], "exceed the model's 512"),
])
def test_generate_refuses_bad_input_in_one_line(in_root, adapter_run, args, expected):
    from ftc.runtime.generate import generate_command

    assert expected in refused(generate_command, args)


@pytest.mark.train
def test_export_refuses_bad_destinations_and_merges_of_full_models(in_root, adapter_run, model_run, tmp_path):
    from ftc.runtime.export import export_command

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    full = str(tmp_path / "full")
    assert "exists and is not an empty folder" in refused(export_command, ["ada70001", "--to", full])
    assert "--to: '' is not a usable folder name" in refused(export_command, ["ada70001", "--to", ""])
    assert "is not a usable folder name" in refused(export_command, ["ada70001", "--to", "a\x1b[31mb"])
    assert "too long" in refused(export_command, ["ada70001", "--to", str(tmp_path / ("x" * 300))])
    assert "no adapter to merge" in refused(export_command, ["d0de0001", "--merge"])
    assert not (model_run / "export").exists()


@pytest.mark.train
def test_a_run_without_outputs_or_with_tampered_outputs_is_one_line(in_root, adapter_run, tiny):
    from ftc.runtime.generate import generate_command

    pending = run_dir(in_root, "9e9d0001")
    make_run(pending, "lora", model_path=tiny)
    assert "has no outputs yet" in refused(generate_command, ["9e9d0001", PROMPT])
    outputs = json.loads((adapter_run / "outputs.json").read_text())
    tampered = run_dir(in_root, "7a3e0001")
    make_run(tampered, "lora", model_path=tiny)
    for paths, expected in (({"adapter": "/etc"}, "is not a folder inside the run"),
                            ({"script": str(tampered)}, "not an output kind"), ({}, "paths: missing or empty")):
        (tampered / "outputs.json").write_text(json.dumps({**outputs, "paths": paths}))
        assert expected in refused(generate_command, ["7a3e0001", PROMPT])


@pytest.mark.train
def test_refusals_exit_2_with_one_line(root, adapter_run):
    result = ftc(root, "export", "ada70001", "--to", "")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("ftc: error: --to: ") and len(result.stderr.splitlines()) == 1


def test_without_the_training_stack_the_commands_say_what_to_install():
    probe = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch': raise ImportError('login node')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from ftc.compiler.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    for command in (["generate", "r", "p"], ["chat", "r"], ["export", "r"]):
        result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        needs = f"ftc {command[0]} loads the model and needs the training stack: pip install 'ftc[train]'"
        assert result.stderr == f"ftc: error: {needs}\n"
