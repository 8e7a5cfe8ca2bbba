"""Every method for a few steps on a real instruct model: SmolLM2-135M-Instruct (model=smollm2-135m), on CPU.

Each run is a handful of optimizer steps (about 2 s each at 8 x 48 tokens): enough to prove the
real checkpoint loads, trains in its chat format, evaluates and saves something that reloads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
sys.path.insert(0, str(Path(__file__).parent))

from smollm2_fixture import smollm2_config, smollm2_path  # noqa: F401 - fixture

from plan_factory import log_tail, make_run, read_metrics, read_status, run_runtime

pytestmark = pytest.mark.train
QUICK = {"training": {"eval_steps": 100, "save_steps": 100}, "eval": {"max_rows": 2}}


def train(run_dir: Path, method: str, overrides: dict, path: str, **kwargs) -> dict:
    from plan_factory import merge

    job = merge(merge(QUICK, {"model": smollm2_config(path)}), overrides)
    make_run(run_dir, method, job, max_seq_length=64, **kwargs)
    assert run_runtime(run_dir, timeout=600) == 0, log_tail(run_dir)
    status = read_status(run_dir)
    assert status["state"] == "completed", log_tail(run_dir)
    return status


def test_lora_trains_in_the_chat_format_and_the_adapter_reloads(tmp_path, smollm2_path):  # noqa: F811
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftc.runtime.evaluate import evaluate_model, load_eval_rows

    run = tmp_path / "lora"
    train(run, "lora", {"method": {"max_steps": 3, "learning_rate": 2e-3}}, smollm2_path, micro_batch_size=8)
    report = json.loads((run / "eval.json").read_text())
    assert report["after"]["loss"] < report["before"]["loss"]
    assert report["after"]["samples"][0]["prompt"].startswith("system\nYou are a helpful AI assistant named SmolLM")
    base = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(run / "output" / "adapter")).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    rows = load_eval_rows(json.loads((run / "plan.json").read_text())["job"]["data"]["path"], 2)
    again = evaluate_model(model, tokenizer, rows, "prompt_completion", 2, max_new_tokens=32, max_length=64, chat=True)
    assert again["loss"] == pytest.approx(report["after"]["loss"], rel=1e-4)
    assert [s["prediction"] for s in again["samples"]] == [s["prediction"] for s in report["after"]["samples"]]


def test_full_sft_saves_a_model_that_loads(tmp_path, smollm2_path):  # noqa: F811
    from transformers import AutoModelForCausalLM

    run = tmp_path / "sft"
    train(run, "sft", {"method": {"max_steps": 2, "learning_rate": 1e-5}, "eval": {"before": False}}, smollm2_path,
          micro_batch_size=4)
    model = AutoModelForCausalLM.from_pretrained(run / "output" / "model")
    assert model.config.num_hidden_layers == 30 and model.config.tie_word_embeddings


def test_dpo_reports_preference_accuracy_and_margin_before_and_after(tmp_path, smollm2_path):  # noqa: F811
    run = tmp_path / "dpo"
    train(run, "dpo", {"method": {"max_steps": 2, "learning_rate": 2e-3}}, smollm2_path, micro_batch_size=4)
    report = json.loads((run / "eval.json").read_text())
    for side in ("before", "after"):
        assert 0.0 <= report[side]["preference_accuracy"] <= 1.0 and isinstance(report[side]["margin"], float)
    assert report["delta"]["margin"] > 0  # the chosen answers gained on the rejected ones
    assert any(m.get("reward_margin") is not None for m in read_metrics(run))


def test_grpo_runs_on_the_chat_format(tmp_path, smollm2_path):  # noqa: F811
    run = tmp_path / "grpo"
    overrides = {"method": {"max_steps": 2, "num_generations": 2, "max_completion_length": 8,
                            "reward": {"kind": "exact_match", "normalize": True}}}
    train(run, "grpo", overrides, smollm2_path, micro_batch_size=2)
    rewards = [m["reward"] for m in read_metrics(run) if m.get("reward") is not None]
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)
