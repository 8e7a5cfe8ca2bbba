"""LoRA targets resolved against the model's own linear layers, before the queue.

PEFT matches a target name against module names (the whole name or its last parts); a name that
matches nothing makes PEFT fail on the node after queueing, and one that matches a non-Linear module
is an error there too. Here both are one line at compile time, and the adapter's size is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftc.compiler.errors import UserError
from ftc.compiler.planning.memory import matches, targeted


@dataclass(frozen=True)
class Targets:
    kinds: list[str]  # the linear kinds that get adapters, what the runtime passes to PEFT
    trainable: int  # parameters the optimizer updates
    warnings: list[str]


def resolve_targets(job) -> Targets:
    """The plan's LoRA targets and trainable count (every parameter for all-weights training)."""
    arch, method = job.model.architecture, job.method
    if not method.uses_lora:
        return Targets([], arch.parameters, [])
    lora = method.lora
    kinds = targeted(arch, lora.target_modules)
    where = f"{job.model.namespace}/{job.model.name}"
    if not arch.linear:
        raise UserError(f"method.lora.target_modules: {where} has no linear layers ftc can adapt")
    warnings = []
    if lora.target_modules != "all-linear":
        for target in lora.target_modules:
            hit = {k: v for k, v in arch.linear.items() if matches(k, target)}
            if not hit:
                moe = " (routed experts are fused parameters in transformers 5, not Linear layers)" if arch.experts else ""
                raise UserError(f"method.lora.target_modules: {target!r} matches no linear layer of {where}; "
                                f"its linear layers are {', '.join(arch.linear)}{moe}, or use all-linear")
            layers = sum(v[2] for v in hit.values())
            if layers < arch.layers:
                warnings.append(f"method.lora.target_modules: {target!r} is in only {layers} of {where}'s "
                                f"{arch.layers} layers; the others get no adapter there")
    trainable = sum(lora.adapter_dim * (d_in + d_out) * count for d_in, d_out, count in kinds.values())
    return Targets(list(kinds), trainable, warnings)
