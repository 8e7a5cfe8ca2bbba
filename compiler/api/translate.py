"""A Customizer job body -> the command line the CLI would take for it -> the same validated job.

The body becomes a list of overrides (`model.urn=... method=lora method.epochs=...`) after the
operator's own (`serve cluster=mysite ...`); `compile_point` then composes, validates and plans
exactly as `python -m ftc` does, so the same body gets the same run id as that command line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ftc.compiler.api.datasets import DatasetRoots
from ftc.compiler.api.models import CreateJob, Hyperparameters
from ftc.compiler.config.schema import output_model_name
from ftc.compiler.config.urn import URN, find_model
from ftc.compiler.errors import UserError

# (training_type, finetuning_type) -> the method group and its finetuning_type override, if any
METHODS = {
    ("sft", "lora"): ("lora", None),
    ("sft", "lora_merged"): ("lora", "lora_merged"),
    ("sft", "all_weights"): ("sft", None),
    ("dpo", "lora"): ("dpo", "lora"),
    ("dpo", "all_weights"): ("dpo", "all_weights"),
    ("grpo", "lora"): ("grpo", "lora"),
    ("grpo", "all_weights"): ("grpo", "all_weights"),
}
PLAIN = re.compile(r"^[A-Za-z0-9_./+@-]+$")


class MissingVersion(UserError):
    """Customizer answers 400 with its own detail string."""


class UnknownConfig(UserError):
    """No model config has that URN: 404."""


@dataclass(frozen=True)
class Translation:
    overrides: list[str]  # the request's part of the command line, after the operator's


def quoted(value: str) -> str:
    """A value as Hydra's override grammar reads it back verbatim."""
    if PLAIN.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def config_error(exc: UserError) -> UserError:
    """The compiler's answer about `model.urn` as Customizer's: no version 400, unknown config 404."""
    line = exc.problems[0] if exc.problems else ""
    if line.startswith("model.urn: Version is not specified"):
        return MissingVersion(*exc.problems)
    if line.startswith("model.urn: ") and ("no model config" in line or "is not a config URN" in line):
        return UnknownConfig(*exc.problems)
    return exc


def check_version(urn: str) -> None:
    """A URN without a version is refused before anything else, as Customizer does (its line
    comes from the compiler's own URN check, so it is the CLI's)."""
    match = URN.match(urn.strip())
    if match and not match["version"]:
        try:
            find_model(urn)
        except UserError as exc:
            raise config_error(exc) from None


def _method(h: Hyperparameters) -> list[str]:
    choice = METHODS.get((h.training_type, h.finetuning_type))
    if choice is None:
        raise UserError(f"hyperparameters.finetuning_type: {h.finetuning_type!r} is not offered with training_type "
                        f"{h.training_type!r}; choose from "
                        f"{', '.join(f for t, f in METHODS if t == h.training_type)}")
    group, finetuning = choice
    out = [f"method={group}"]
    if finetuning:
        out.append(f"method.finetuning_type={finetuning}")
    for field in ("epochs", "max_steps", "batch_size", "learning_rate"):
        value = getattr(h, field)
        if value is not None:
            out.append(f"method.{field}={value!r}")
    if h.lora is not None:
        if group == "sft" or h.finetuning_type == "all_weights":
            raise UserError("hyperparameters.lora: only for finetuning_type lora or lora_merged")
        for field in ("adapter_dim", "adapter_dropout", "alpha"):
            value = getattr(h.lora, field)
            if value is not None:
                out.append(f"method.lora.{field}={value!r}")
    return out


def _dataset(request: CreateJob, roots: DatasetRoots) -> list[str]:
    ref = request.dataset
    folder = roots.resolve(ref.namespace, ref.name)
    if folder is None:
        return [f"data={ref.name}"]
    return ["data=custom", f"data.name={ref.name}", f"data.path={quoted(str(folder))}"]


def _output(request: CreateJob) -> list[str]:
    """output_model names the output (the schema's check, as for `output_model=` on the command line);
    its namespace and name are also the job's, so the run folder is <namespace>/<model>-<name>."""
    if request.output_model is None:
        return []
    try:
        output_model_name(request.output_model)
    except ValueError as exc:
        raise UserError(f"output_model: {exc}") from None
    namespace, _, name = request.output_model.partition("@")[0].partition("/")
    return [f"namespace={namespace}", f"name={name}", f"output_model={quoted(request.output_model)}"]


def _job(request: CreateJob) -> list[str]:
    """The job's own name and namespace, and W&B (offline, into the run folder) for an integration."""
    out = [f"{key}={value}" for key, value in (("namespace", request.namespace), ("name", request.name)) if value]
    if request.integrations:
        out.append("training.report_to=[wandb]")
    return out


def _model(urn: str, user_models: dict[str, str]) -> list[str]:
    """A shipped model by its URN; a user's model (a target, local/<name>@<version>) as the command
    line names it, model=custom model.path=DIR, with the URN's +GPU as model.variant."""
    match = URN.match(urn.strip())
    if match and match["namespace"] == "local" and match["version"]:
        folder = user_models.get(f"local/{match['name']}@{match['version']}")
        if folder is None:
            raise UnknownConfig(f"model.urn: no model config {urn!r}; targets lists the users' models")
        variant = [f"++model.variant={match['variant']}"] if match["variant"] else []
        return ["model=custom", f"model.path={quoted(folder)}", *variant]
    return [f"model.urn={urn}"]


def to_overrides(request: CreateJob, roots: DatasetRoots, user_models: dict[str, str] | None = None) -> Translation:
    """The request's overrides; names and numbers were checked by the request model, the rest
    (ranges, guard rails, the URN's variant against the partition) by the schema as for the CLI."""
    check_version(request.config)
    overrides = [*_model(request.config, user_models or {}), *_method(request.hyperparameters), *_dataset(request, roots),
                 *_output(request), *_job(request)]
    return Translation(overrides)


def command_line(operator: Sequence[str], translation: Translation) -> list[str]:
    """The full command line: the operator's defaults, the request, and detach for local runs."""
    return [*operator, *translation.overrides, "detach=true"]
