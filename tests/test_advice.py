"""The NeMo guide's advice: each check fires on its condition only, and names the field."""

from pathlib import Path

import pytest
import yaml

from ftc.compiler.checks.advice import advise
from ftc.compiler.config.schema import JobConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def conf(group, name):
    data = yaml.safe_load((CONF / group / f"{name}.yaml").read_text())
    if "${" in str(data.get("path", "")):
        data["path"] = "/models/test"
    return data


def job(method="lora", replay=None, model="llama8b", **method_fields):
    return JobConfig.model_validate({
        "name": "test", "output_root": "/tmp/runs", "model": conf("model", model),
        "method": {**conf("method", method), **method_fields},
        "data": {"name": "demo", "path": "/data/demo", "replay": {"path": replay}},
        "cluster": conf("cluster", "example"),
    })


def test_shipped_methods_on_plenty_of_rows_get_no_advice():
    for method in ("lora", "sft", "dpo", "grpo"):
        assert advise(job(method), 50_000) == ([], [])


@pytest.mark.parametrize("method, extra", [("lora", {}), ("dpo", {}), ("grpo", {})])
def test_lora_learning_rate_above_5e_4_warns(method, extra):
    warnings, errors = advise(job(method, learning_rate=1e-3, **extra), 50_000)
    assert len(warnings) == 1 and warnings[0].startswith("method.learning_rate: 0.001 is above 0.0005 for LoRA")
    assert advise(job(method, learning_rate=5e-4), 50_000) == ([], [])


def test_the_tiny_recipes_deliberate_learning_rate_gets_no_warning():
    """The quickstart does not warn about its own recipe: the tiny model is random-init, learning from scratch."""
    assert advise(job("lora", model="tiny", learning_rate=5e-3), 50_000) == ([], [])


def test_high_learning_rate_is_fine_for_full_sft():
    assert advise(job("sft", learning_rate=1e-3), 50_000) == ([], [])


def test_large_adapter_on_few_rows_warns():
    big = {"adapter_dim": 32, "alpha": 32}
    warnings, _ = advise(job(lora=big), 999)
    assert warnings == [
        "method.lora.adapter_dim: 32 with 999 training rows risks overfitting; use 8 or 16 below 1,000 rows"
    ]
    assert advise(job(lora=big), 1_000) == ([], [])
    assert advise(job(lora={"adapter_dim": 16}), 999) == ([], [])


def test_full_sft_on_few_rows_warns_unless_a_replay_set_is_configured():
    warnings, _ = advise(job("sft"), 1_999)
    assert len(warnings) == 1 and warnings[0].startswith("method.finetuning_type: all_weights SFT on 1,999 training rows")
    assert "data.replay.path" in warnings[0] and "method=lora" in warnings[0]
    assert advise(job("sft", replay="/data/general"), 1_999) == ([], [])
    assert advise(job("sft"), 2_000) == ([], [])
    assert advise(job("lora"), 1_999) == ([], [])  # LoRA keeps the base


def test_dpo_on_few_pairs_warns():
    warnings, _ = advise(job("dpo"), 4_999)
    assert len(warnings) == 1 and warnings[0].startswith("data.path: DPO on 4,999 preference pairs (under 5,000)")
    assert advise(job("dpo"), 5_000) == ([], [])


def test_grpo_without_reward_is_an_error():
    warnings, errors = advise(job("grpo", reward=None), 50_000)
    assert warnings == [] and len(errors) == 1
    assert errors[0].startswith("method.reward: GRPO needs a programmatic reward")


def test_unknown_row_count_skips_row_checks_but_not_the_others():
    assert advise(job("sft"), None) == ([], [])
    warnings, errors = advise(job("grpo", reward=None, learning_rate=1e-3), None)
    assert len(warnings) == 1 and len(errors) == 1
