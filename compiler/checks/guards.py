"""Guard rails: checks across fields that the schema alone cannot make.

Each failure is one line naming the field and what to change, as NeMo Customizer's
config guard rails do for model configs, GPU counts and sequence lengths.
"""

from __future__ import annotations

from ftc.compiler.config.fields import slurm_minutes
from ftc.compiler.config.schema import JobConfig, TrainingOption
from ftc.compiler.errors import UserError


def variant_of(job: JobConfig) -> str:
    return job.cluster.gpu_spec().variant


def training_option(job: JobConfig) -> TrainingOption:
    """The model config's option for this GPU, training type and finetuning type."""
    model, method, variant = job.model, job.method, variant_of(job)
    urn = model.urn(variant)
    if model.variant and model.variant != variant:
        matching = [name for name, p in job.cluster.partitions.items() if job.cluster.gpu_spec(p.gpu).variant == model.variant]
        fix = f"set cluster.partition={matching[0]}" if matching else f"pick a cluster with {model.variant} GPUs"
        raise UserError(
            f"model.urn: asks for {model.variant} but partition {job.cluster.partition} has {variant} GPUs; {fix}"
        )
    options = model.training_options.get(variant)
    if not options:
        raise UserError(
            f"cluster.partition: {model.namespace}/{model.name}@{model.version} has no config for {variant} GPUs "
            f"(configs: {', '.join(model.urn(v) for v in model.training_options)})"
        )
    wanted = (method.training_type, method.base_finetuning_type)
    for option in options:
        if (option.training_type, option.finetuning_type) == wanted:
            return option
    supported = ", ".join(f"{o.training_type}/{o.finetuning_type}" for o in options)
    raise UserError(
        f"method.finetuning_type: {urn} does not support {wanted[0]}/{wanted[1]} (supports {supported}); "
        "choose another method or model"
    )


def max_seq_length(job: JobConfig, option: TrainingOption) -> int:
    limit = min(option.max_seq_length, job.model.architecture.max_seq_length)
    asked = job.data.max_seq_length
    if asked == "auto":
        return limit
    if asked > limit:
        raise UserError(
            f"data.max_seq_length: {asked} exceeds {limit}, the longest this model config trains "
            f"({job.model.urn(variant_of(job))}); set data.max_seq_length<={limit}"
        )
    return asked


def check_time(job: JobConfig, time_limit: str) -> None:
    partition = job.cluster.chosen
    if slurm_minutes(time_limit) > slurm_minutes(partition.max_time):
        raise UserError(
            f"resources.time: {time_limit} exceeds partition {job.cluster.partition}'s limit of {partition.max_time}"
        )
