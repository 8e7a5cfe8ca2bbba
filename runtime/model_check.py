"""Before the first step: the model that loaded is the one the plan was made for, and PEFT adapts
exactly what the plan counted. Any difference is one line naming it (a UserError: exit 2, no traceback)."""

from __future__ import annotations

from ftc.compiler.errors import UserError


def _numel(param) -> int:
    """A parameter's full size, also when ZeRO-3 has partitioned it (ds_numel)."""
    return int(getattr(param, "ds_numel", param.numel()))


def count(model, trainable: bool = False) -> int:
    """Parameters of `model` (a tied head once, as num_parameters() counts), or only the trainable ones."""
    return sum(_numel(p) for p in model.parameters() if p.requires_grad or not trainable)


def loaded_problems(plan, model) -> list[str]:
    """What the loaded model says that the plan's architecture does not."""
    arch, config = plan.job.model.architecture, model.config
    text = getattr(config, "get_text_config", lambda: config)()
    pairs = {
        "parameters": (arch.parameters, count(model)),
        "layers": (arch.layers, getattr(text, "num_hidden_layers", None)),
        "hidden_size": (arch.hidden_size, getattr(text, "hidden_size", None)),
        "vocab_size": (arch.vocab_size, getattr(text, "vocab_size", None)),
    }
    return [f"{k} {got} loaded, {want} in the plan" for k, (want, got) in pairs.items() if want != got]


def check_loaded(plan, model, path: str) -> None:
    problems = loaded_problems(plan, model)
    if problems:
        raise UserError(f"model.path: the model loaded from {path} is not the one planned ({'; '.join(problems)}); "
                        "the folder changed since compile: recompile")


def check_trainable(plan, model) -> None:
    """PEFT's trainable count equals the plan's (LoRA targets resolved at compile time)."""
    if not plan.trainable_parameters:
        return  # a plan from before ftc counted them
    got = count(model, trainable=True)
    if got != plan.trainable_parameters:
        what = f"LoRA on {', '.join(plan.lora_targets)}" if plan.lora_targets else "all weights"
        raise UserError(f"method.lora.target_modules: {what} trains {got:,} parameters here, the plan counted "
                        f"{plan.trainable_parameters:,}; refusing to start")
