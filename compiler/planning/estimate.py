"""Run-time estimate and the sbatch --time it implies.

FLOPs from the parameter count (Kaplan et al., arXiv:2001.08361, section 2.1: 2·N per token
forward, 4·N backward), divided by the GPUs' dense bf16 peak times an assumed MFU.
"""

from __future__ import annotations

import math

from ftc.compiler.checks import guards
from ftc.compiler.config.fields import slurm_minutes
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning.memory import lora_parameters
from ftc.compiler.planning.plan import TimeEstimate, Topology

# Nominal throughput of one CPU worker (a few AVX-512 cores in fp32): only so that a CPU run
# still gets a number; CPU runs are the tiny model's, minutes at most.
CPU_TFLOPS = 0.2
# Token-by-token decoding (HF generate, no paged attention) reads every weight for each token of
# a batch: a fraction of the training MFU. 0.1 is what HF generate reaches on A100/H100 at
# batch 8-32; it makes GRPO's generation time an honest upper part of its estimate.
GENERATION_SHARE_OF_MFU = 0.1
EVAL_NEW_TOKENS = 32  # the eval's greedy answers (runtime/evaluate.py generate)
MARGIN_FACTOR = 1.2
MARGIN_MINUTES = 15
ROUND_MINUTES = 15


def flops_per_token(job: JobConfig, seq_len: float, recompute: bool = False) -> float:
    """Training FLOPs for one token of one sequence.

    Full fine-tuning: 6·N (forward 2N, backward 4N: activation and weight gradients).
    LoRA: 4·N for the frozen base (forward 2N, activation gradients 2N; no weight gradients)
    plus 6·A for the adapters. Attention scores add 2·L·s·h forward per token under a causal mask
    (Q·Kᵀ and A·V at 2·i·h each for position i, averaged over i < s), tripled for training.
    Gradient checkpointing reruns the forward: +2·N (+ the attention forward).
    """
    arch, method = job.model.architecture, job.method
    n = arch.parameters
    attention = 2 * arch.layers * seq_len * arch.hidden_size
    if method.uses_lora:
        train = 4 * n + 6 * lora_parameters(arch, method.lora)
    else:
        train = 6 * n
    return train + 3 * attention + ((2 * n + attention) if recompute else 0)


def sequences_per_row(job: JobConfig) -> int:
    """DPO rows are pairs (chosen and rejected); GRPO trains on num_generations completions a prompt."""
    method = job.method
    return {"dpo": 2, "grpo": getattr(method, "num_generations", 1)}.get(method.name, 1)


def estimate_time(
    job: JobConfig,
    topology: Topology,
    dataset_rows: int,
    mean_tokens: float | None = None,
    seq_len: int | None = None,
    validation_rows: int = 0,
    hints: bool = True,
) -> TimeEstimate:
    """Hours of training for `dataset_rows` rows of `mean_tokens` tokens per sequence (prompt and
    response; for GRPO the prompt). Without a mean, half of seq_len is assumed; seq_len defaults
    to data.max_seq_length, else the model config's limit for this GPU and method (pass the solver's).

    DPO adds a reference forward, 2·N a token (for LoRA the same base with the adapter off).
    GRPO adds 2·N per generated token (max_completion_length per completion, a generous bound),
    generated at a fraction of the training MFU (decoding is memory-bound), and trains on prompt
    plus completion. Validation, the eval before and after, loading the weights and writing
    checkpoints are counted apart: `parts` holds the seconds of each.
    """
    arch, method, res = job.model.architecture, job.method, job.resources
    gpu = job.cluster.gpu_spec()
    if seq_len is None:
        seq_len = guards.max_seq_length(job, guards.training_option(job))
    mean = float(mean_tokens) if mean_tokens else seq_len / 2
    per_row = sequences_per_row(job)
    generated = 0.0
    if method.name == "grpo":
        generated = method.max_completion_length
        mean = min(mean + generated, seq_len)
    rows, epochs = dataset_rows, method.epochs
    if method.max_steps:  # max_steps global batches replace the epochs
        rows, epochs = method.max_steps * method.batch_size // (per_row if method.name == "grpo" else 1), 1
    sequences = rows * per_row * epochs
    per_token = flops_per_token(job, mean, topology.gradient_checkpointing)
    if method.name == "dpo":
        per_token += 2 * arch.parameters
    peak = (CPU_TFLOPS if gpu.key == "cpu" else gpu.bf16_tflops) * 1e12
    train_flops = sequences * mean * per_token
    generation_flops = sequences * generated * 2 * arch.parameters
    steps = max(1, math.ceil(rows * epochs / method.batch_size))
    parts = {
        "train": train_flops / (topology.world_size * peak * res.mfu),
        "generation": generation_flops / (topology.world_size * peak * res.mfu * GENERATION_SHARE_OF_MFU),
        "eval": eval_seconds(job, topology, steps, validation_rows, mean, peak),
        **io_seconds(job, topology, steps),
    }
    hours = sum(parts.values()) / 3600
    limit = job.cluster.chosen.max_time if res.time == "auto" else res.time
    _, requeues = sbatch_time(hours, limit)
    if requeues and job.cluster.chosen.requeue == "refuse":
        fixes = _requeue_fixes(job, topology, dataset_rows, mean_tokens, seq_len, validation_rows) if hints else []
        refuse_requeues(job, hours, limit, fixes)
    tokens_per_epoch = int(dataset_rows * per_row * mean)
    return TimeEstimate(tokens_per_epoch=tokens_per_epoch, total_flops=train_flops + generation_flops, hours=hours,
                        requeues=requeues, parts={k: round(v, 3) for k, v in parts.items()})


def eval_seconds(job: JobConfig, topology: Topology, steps: int, validation_rows: int, mean: float, peak: float) -> float:
    """Validation every eval_steps (a forward, 2·N a token, over the validation rows), and the eval
    before and after training: a forward and EVAL_NEW_TOKENS greedy tokens for up to eval.max_rows rows."""
    n = job.model.architecture.parameters
    checks = steps // job.training.eval_steps + 1
    forward = checks * validation_rows * mean * 2 * n / (topology.world_size * peak * job.resources.mfu)
    rows = min(job.eval.max_rows, validation_rows) * (2 if job.eval.before else 1)
    generate = rows * EVAL_NEW_TOKENS * 2 * n / (peak * job.resources.mfu * GENERATION_SHARE_OF_MFU)
    return forward + generate


def io_seconds(job: JobConfig, topology: Topology, steps: int) -> dict[str, float]:
    """Loading the weights (every node reads them, in parallel) and writing checkpoints and the
    output (the nodes write their shards in parallel), at the cluster's filesystem bandwidth.

    A checkpoint of all weights holds bf16 weights, fp32 master weights and two fp32 Adam moments:
    2 + 4 + 8 = 14 bytes a parameter (16 in fp32 on CPU); of LoRA, the adapters alone (fp32 and
    two moments: 12 bytes) - the frozen base is not saved.
    """
    arch, method, cluster = job.model.architecture, job.method, job.cluster
    weight_bytes = 4 if job.cluster.chosen.gpu == "cpu" else 2
    bandwidth = cluster.fs_bandwidth_gbs * 1e9
    if method.uses_lora:
        adapters = lora_parameters(arch, method.lora)
        checkpoint, output = adapters * 12, adapters * 4
    else:
        checkpoint = arch.parameters * (weight_bytes + 12 + (2 if weight_bytes == 2 else 0))
        output = arch.parameters * weight_bytes
    saves = steps // job.training.save_steps + 1  # + the one a stop or the time limit asks for
    return {
        "load": arch.parameters * weight_bytes / bandwidth,
        "checkpoints": (saves * checkpoint + output) / (bandwidth * topology.nodes),
    }


def refuse_requeues(job: JobConfig, hours: float, limit: str, fixes: list[str]) -> None:
    """A partition that refuses requeues (an interactive one) takes only plans that fit its limit."""
    name = job.cluster.partition
    padded = hours * 60 * MARGIN_FACTOR + MARGIN_MINUTES
    advice = f"set {' or '.join(fixes)}" if fixes else "no other partition or shorter run fits"
    raise UserError(
        f"cluster.partition: the run needs ~{format_slurm_time(math.ceil(padded))} with margin, past partition "
        f"{name}'s limit of {limit}, and {name} refuses requeues; {advice}"
    )


def _requeue_fixes(job: JobConfig, topology: Topology, rows: int, mean_tokens, seq_len, validation_rows: int) -> list[str]:
    """Fixes tried before they are suggested: another partition the plan fits and is allowed on,
    and the most optimizer steps (method.max_steps) that finish inside this partition's limit."""
    from ftc.compiler.planning.solver import solve

    fixes = []
    for name in job.cluster.partitions:
        if name == job.cluster.partition:
            continue
        moved = job.model_copy(update={"cluster": job.cluster.model_copy(update={"partition": name})})
        try:
            length = guards.max_seq_length(moved, guards.training_option(moved))
            if seq_len is not None:
                length = min(length, seq_len)
            layout = solve(moved, rows, length, hints=False).topology
            estimate_time(moved, layout, rows, mean_tokens, length, validation_rows, hints=False)
        except UserError:
            continue
        fixes.append(f"cluster.partition={name}")

    def fits(steps: int) -> bool:
        shorter = job.model_copy(update={"method": job.method.model_copy(update={"max_steps": steps})})
        try:
            return estimate_time(shorter, topology, rows, mean_tokens, seq_len, validation_rows, hints=False).requeues == 0
        except UserError:
            return False

    low, high = 0, max(1, job.method.max_steps or math.ceil(rows * job.method.epochs / job.method.batch_size))
    while low < high:  # the most steps that fit; the estimate grows with the steps
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    if low >= 1:
        fixes.append(f"method.max_steps={low}")
    return fixes


def format_slurm_time(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    clock = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{clock}" if days else clock


def sbatch_time(estimate_hours: float, partition_max_time: str) -> tuple[str, int]:
    """The --time to ask for and how many requeues the run needs.

    Estimate x1.2 + 15 min, rounded up to 15 min, capped at the limit. When that padded figure
    exceeds the limit the job checkpoints and requeues: ceil(padded / limit) - 1 times.
    """
    limit = slurm_minutes(partition_max_time)
    padded = estimate_hours * 60 * MARGIN_FACTOR + MARGIN_MINUTES
    minutes = math.ceil(padded / ROUND_MINUTES) * ROUND_MINUTES
    requeues = math.ceil(padded / limit) - 1 if padded > limit else 0
    return format_slurm_time(min(minutes, limit)), requeues
