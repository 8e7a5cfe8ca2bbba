"""Each method trains the tiny model on the demo task and gets better at it; the run folder says so."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

sys.path.insert(0, str(Path(__file__).parent))

from ftc.runtime import rewards

from plan_factory import (
    log_tail,
    make_plan,
    make_run,
    read_metrics,
    read_status,
    run_runtime,
)

FAST = {"eval": {"max_rows": 8, "before": True}}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "tiny-llama-v1")


def train(run_dir: Path, method: str, overrides: dict, tiny: str, **kwargs) -> dict:
    make_run(run_dir, method, _merge(FAST, overrides), model_path=tiny, **kwargs)
    code = run_runtime(run_dir)
    assert code == 0, log_tail(run_dir)
    return read_status(run_dir)


def _merge(a: dict, b: dict) -> dict:
    from plan_factory import merge

    return merge(a, b)


def train_losses(run_dir: Path, key: str = "train_loss") -> list[float]:
    return [m[key] for m in read_metrics(run_dir) if m.get(key) is not None]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# ---------------------------------------------------------------- no training


def test_exact_match_reward_reads_the_answer_column_case_exact():
    completions = [" d e j c", "d e j c\nmore", "c j e d", [{"content": "D E J C"}], "d  e j c"]
    assert rewards.exact_match(completions=completions, answer=["d e j c"] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    # The demo's rejected answer (lower case) earns nothing against its chosen one.
    assert rewards.exact_match(completions=[" h b d", " H B D"], answer=["H B D"] * 2) == [0.0, 1.0]
    normalized = rewards.build_rewards(rewards.Reward(kind="exact_match", normalize=True))[0]
    assert normalized(completions=completions, answer=["d e j c"] * 5) == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert rewards.build_rewards(rewards.Reward(kind="exact_match"))[0] is rewards.exact_match


def test_regex_and_function_rewards():
    assert rewards.build_rewards(rewards.Reward(kind="regex", pattern=r"^\s*[a-j]"))[0](completions=[" a", "z"]) == [1.0, 0.0]
    func = rewards.build_rewards(rewards.Reward(kind="function", function="ftc.runtime.rewards:exact_match"))[0]
    assert func(completions=["x"], answer=["x"]) == [1.0]
    with pytest.raises(ValueError, match="cannot import"):
        rewards.build_rewards(rewards.Reward(kind="function", function="no_such_module_xyz:f"))


def test_json_schema_reward(tmp_path):
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 0}}}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    reward = rewards.json_schema_reward(str(path))
    assert reward(completions=['{"n": 3}', '```json\n{"n": 1}\n```', '{"n": -1}', "not json"]) == [1.0, 1.0, 0.5, 0.0]
    assert rewards.schema_errors({"n": "x"}, schema) and not rewards.schema_errors({"n": 2}, schema)
    with pytest.raises(ValueError, match="schema_path"):
        rewards.json_schema_reward(str(tmp_path / "missing.json"))


def test_trainer_arguments_follow_the_plan(tmp_path, tiny):
    from ftc.runtime.methods import build_args

    plan = make_plan(tmp_path / "run", "lora", {"method": {"max_steps": 7, "learning_rate": 3e-4, "warmup_ratio": 0.1}},
                     micro_batch_size=4, gradient_accumulation_steps=2, max_seq_length=96, model_path=tiny)
    args = build_args(plan)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 2)
    assert (args.max_steps, args.learning_rate, args.max_length) == (7, 3e-4, 96)
    assert args.bf16 is False and args.fp16 is False
    assert args.activation_checkpointing is False
    assert args.output_dir == str(tmp_path / "run" / "checkpoints")
    assert (args.eval_steps, args.save_steps, args.seed) == (10, 50, 42)
    assert args.warmup_steps == 0.1 and args.lr_scheduler_type.value == "cosine"
    assert args.report_to in ([], ["none"], "none")


def test_grpo_generation_batch_is_whole_groups(tmp_path, tiny):
    from ftc.runtime.methods import build_args

    plan = make_plan(tmp_path / "run", "grpo", {"method": {"num_generations": 4}}, micro_batch_size=2, model_path=tiny)
    args = build_args(plan)
    assert args.generation_batch_size % 4 == 0 and args.generation_batch_size % 2 == 0
    assert args.use_vllm is False and args.max_completion_length == 32


def test_dpo_keeps_the_configured_adapter_dropout(tmp_path, tiny):
    from ftc.runtime.methods import build_args

    plan = make_plan(tmp_path / "run", "dpo", {"method": {"lora": {"adapter_dropout": 0.1}}}, model_path=tiny)
    assert build_args(plan).disable_dropout is False


# ---------------------------------------------------------------- training


@pytest.mark.train
def test_lora_loss_goes_down_and_run_folder_is_complete(tmp_path, tiny):
    run = tmp_path / "lora"
    status = train(run, "lora", {"method": {"max_steps": 24, "learning_rate": 3e-3},
                                 "training": {"eval_steps": 8, "save_steps": 12}}, tiny, micro_batch_size=4)
    losses = train_losses(run)
    assert mean(losses[-4:]) < losses[0] - 0.3
    val = train_losses(run, "val_loss")
    assert len(val) == 3 and val[-1] < val[0]

    assert status["state"] == "completed" and status["step"] == status["max_steps"] == 24
    assert status["percent"] == 100.0 and status["early_stopped"] is False
    assert status["best_val_loss"] == min(val) and status["best_step"] == 24
    for key in ("epoch", "elapsed_s", "eta_s", "train_loss", "val_loss", "updated_at", "best_epoch"):
        assert key in status
    metrics = read_metrics(run)
    steps = [m["step"] for m in metrics if m["train_loss"] is not None]
    assert steps == list(range(1, 25))
    assert all(m["tokens_per_s"] > 0 and m["learning_rate"] > 0 for m in metrics if m["train_loss"] is not None)
    assert set(metrics[0]) >= {"step", "epoch", "train_loss", "val_loss", "learning_rate", "tokens_per_s", "tokens"}
    counted = [m["tokens"] for m in metrics if m["train_loss"] is not None]
    assert counted == sorted(counted) and counted[0] > 0  # tokens trained so far, as TRL counts them

    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["after"]["loss"] < evaluation["before"]["loss"]
    outputs = json.loads((run / "outputs.json").read_text())
    assert outputs["kind"] == "adapter" and (run / "output" / "adapter" / "adapter_model.safetensors").exists()
    assert (run / "loss.png").stat().st_size > 0
    assert not (run / "requeue").exists()
    complete = [p.name for p in (run / "checkpoints").iterdir() if (p / "ftc_checkpoint.json").exists()]
    assert sorted(complete) == ["checkpoint-12", "checkpoint-24"]


@pytest.mark.train
def test_full_sft_loss_goes_down(tmp_path, tiny):
    run = tmp_path / "sft"
    status = train(run, "sft", {"method": {"max_steps": 20, "learning_rate": 3e-3, "warmup_ratio": 0.0},
                                "training": {"eval_steps": 10, "save_steps": 20, "report_to": ["tensorboard", "mlflow"]},
                                "eval": {"before": False}},
                   tiny, micro_batch_size=4)
    losses = train_losses(run)
    assert mean(losses[-4:]) < mean(losses[:4]) - 1.0
    assert status["state"] == "completed"
    assert (run / "output" / "model" / "model.safetensors").exists()
    assert not (run / "eval_before.json").exists()
    if importlib.util.find_spec("tensorboard"):
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    if not importlib.util.find_spec("mlflow"):
        assert "mlflow is not installed" in log_tail(run, 400)


@pytest.mark.train
def test_dpo_reward_accuracy_rises(tmp_path, tiny):
    run = tmp_path / "dpo"
    train(run, "dpo", {"method": {"max_steps": 20, "learning_rate": 5e-3, "lr_scheduler": "constant"},
                       "training": {"eval_steps": 20, "save_steps": 20}}, tiny, micro_batch_size=8)
    metrics = [m for m in read_metrics(run) if m["train_loss"] is not None]
    accuracy = [m["reward_accuracy"] for m in metrics]
    assert accuracy[0] < 0.5 and mean(accuracy[-5:]) >= 0.9
    assert mean(m["train_loss"] for m in metrics[-5:]) < metrics[0]["train_loss"] - 0.05
    assert read_status(run)["val_reward_accuracy"] >= 0.9


@pytest.mark.train
def test_dpo_all_weights_uses_a_frozen_reference(tmp_path, tiny):
    run = tmp_path / "dpo-full"
    status = train(run, "dpo", {"method": {"finetuning_type": "all_weights", "max_steps": 3},
                                "training": {"eval_steps": 3, "save_steps": 3}, "eval": {"before": False}},
                   tiny, micro_batch_size=2)
    assert status["state"] == "completed" and (run / "output" / "model" / "model.safetensors").exists()


@pytest.mark.train
def test_grpo_mean_reward_rises(tmp_path, tiny):
    """A regex the random model meets about 1 time in 4 at first: GRPO pushes it towards always (seeded run)."""
    run = tmp_path / "grpo"
    overrides = {
        "method": {"finetuning_type": "all_weights", "max_steps": 20, "learning_rate": 2e-2, "lr_scheduler": "constant",
                   "max_completion_length": 4, "num_generations": 4, "reward": {"kind": "regex", "pattern": "[A-J]"}},
        "training": {"eval_steps": 20, "save_steps": 20},
        "eval": {"max_rows": 4},
    }
    train(run, "grpo", overrides, tiny, micro_batch_size=8)
    reward = [m["reward"] for m in read_metrics(run) if m["train_loss"] is not None]
    assert len(reward) == 20
    assert mean(reward[-5:]) > mean(reward[:5]) + 0.4


@pytest.mark.train
def test_early_stopping_with_patience_one_and_a_huge_min_delta(tmp_path, tiny):
    run = tmp_path / "early"
    status = train(run, "lora", {"method": {"max_steps": 30, "learning_rate": 3e-3},
                                 "training": {"eval_steps": 2, "save_steps": 30,
                                              "early_stopping": {"enabled": True, "patience": 1, "min_delta": 100.0}},
                                 "eval": {"before": False}}, tiny)
    assert status["state"] == "completed" and status["early_stopped"] is True
    assert status["step"] == 4 and status["best_step"] == 2 and status["checks_without_improvement"] == 1
    assert (run / "outputs.json").exists()


@pytest.mark.train
def test_grpo_that_never_earns_a_reward_says_so(tmp_path, tiny):
    """The random tiny model never writes the demo's upper-case answer: reward 0, a warning in log and status."""
    run = tmp_path / "grpo-zero"
    overrides = {"method": {"max_steps": 5, "max_completion_length": 4, "num_generations": 4},
                 "training": {"eval_steps": 5, "save_steps": 5}, "eval": {"max_rows": 4, "before": False}}
    status = train(run, "grpo", overrides, tiny, micro_batch_size=4)
    assert [m["reward"] for m in read_metrics(run) if m.get("reward") is not None] == [0.0] * 5
    assert status["state"] == "completed" and "reward 0 for 5 steps" in status["warnings"][0]
    assert "warning: GRPO reward 0 for 5 steps" in log_tail(run, 400)


@pytest.mark.train
def test_the_tiny_grpo_recipe_learns_its_reward(tmp_path, tiny):
    """conf/recipe/tiny-grpo.yaml, as `method=grpo model=tiny` composes it: the mean reward rises."""
    import yaml

    from plan_factory import CONF

    recipe = yaml.safe_load((CONF / "recipe" / "tiny-grpo.yaml").read_text())
    run = tmp_path / "grpo-recipe"
    overrides = _merge(recipe, {"training": {"eval_steps": 20, "save_steps": 20}, "eval": {"max_rows": 4, "before": False}})
    status = train(run, "grpo", overrides, tiny, micro_batch_size=8)
    reward = [m["reward"] for m in read_metrics(run) if m["train_loss"] is not None]
    assert len(reward) == 20 and mean(reward[-5:]) > mean(reward[:5]) + 0.4
    assert "warnings" not in status
