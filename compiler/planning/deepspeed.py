"""The DeepSpeed config of a plan: concrete numbers only, so DeepSpeed and the HF Trainer agree."""

from __future__ import annotations

from ftc.compiler.planning.plan import Topology


def deepspeed_config(topology: Topology, global_batch: int, precision: str) -> dict | None:
    """ZeRO stage 1-3 as the topology says; None when plain DDP is enough (stage 0)."""
    if topology.zero_stage == 0:
        return None
    zero: dict = {
        "stage": topology.zero_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": 50_000_000,
    }
    if topology.zero_stage == 3:
        # Gather the sharded weights at save time so the output is a plain model folder.
        zero |= {"stage3_gather_16bit_weights_on_model_save": True, "stage3_prefetch_bucket_size": 50_000_000}
    else:
        zero |= {"allgather_partitions": True, "allgather_bucket_size": 50_000_000, "reduce_scatter": True}
    return {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": topology.micro_batch_size,
        "gradient_accumulation_steps": topology.gradient_accumulation_steps,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": precision == "bf16"},
        "zero_optimization": zero,
        "steps_per_print": 1_000_000,
        "wall_clock_breakdown": False,
    }
