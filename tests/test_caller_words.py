"""The caller's words win: an explicit method.epochs turns off a recipe's max_steps (the reason is a
plan warning), output_model names the output, and the API echoes the request as sent."""

from __future__ import annotations

from ftc.compiler.config.compose import load_job
from ftc.compiler.planning.build import compile_job


def plan_of(*args: str):
    job, resolved = load_job(list(args))
    return compile_job(job, resolved).plan


def test_explicit_epochs_turn_off_the_recipes_max_steps(output_root):
    recipe = plan_of("model=tiny")  # conf/recipe/tiny-lora.yaml sets max_steps: 300
    assert recipe.job.method.max_steps == 300 and not any("max_steps" in w for w in recipe.warnings)
    plan = plan_of("model=tiny", "method.epochs=1")
    assert plan.job.method.epochs == 1 and plan.job.method.max_steps is None
    assert plan.warnings[0] == ("method.max_steps=null: method.epochs=1 was set, so the recipe's max_steps=300 "
                                 "is off and training runs 1 epoch(s)")
    both = plan_of("model=tiny", "method.epochs=1", "method.max_steps=7")  # both said: both stand
    assert (both.job.method.epochs, both.job.method.max_steps) == (1, 7)
    assert both.warnings[0] == "method.max_steps=7: set with method.epochs=1; training stops after 7 steps, whatever the epochs"
    assert plan_of("model=llama8b", "cluster=example", "method.epochs=1").job.method.max_steps is None


def test_the_reason_is_in_the_dry_run(ftc):
    result = ftc("model.urn=ftc/tiny-llama@v1.0.0+CPU", "method.epochs=1", "dry_run=true")
    assert result.code == 0, result.err
    assert "warning    method.max_steps=null: method.epochs=1 was set, so the recipe's max_steps=300" in result.out
    assert "epochs 1," in result.out
    strict = ftc("model=tiny", "method.epochs=1", "strict=true", "dry_run=true")  # or refused, naming both
    assert strict.code == 2 and strict.err.startswith("ftc: error: method.max_steps=null: method.epochs=1 was set")


def test_output_model_names_the_output(output_root):
    plan = plan_of("model=tiny", "output_model=team-a/my-tiny-lora")
    assert plan.output_name == f"team-a/my-tiny-lora@{plan.run_id}"
    versioned = plan_of("model=tiny", "output_model=team-a/my-tiny-lora@v2")
    assert versioned.output_name == "team-a/my-tiny-lora@v2"
    default = plan_of("model=tiny")
    assert default.output_name == f"default/tiny-llama-demo-lora@{default.run_id}"
    assert len({plan.run_id, versioned.run_id, default.run_id}) == 3
