"""GPU catalogue: what each accelerator holds and how fast it multiplies, for the planner."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    key: str
    variant: str  # the URN suffix of model configs, e.g. "H100"
    memory_gib: float
    bf16_tflops: float  # dense peak, no sparsity


# Memory is what the device reports as total (nvidia-smi); TFLOP/s are the vendor's dense bf16 peaks.
GPUS: dict[str, Gpu] = {
    g.key: g
    for g in (
        Gpu("a100-40gb", "A100", 40.0, 312.0),
        Gpu("a100-80gb", "A100", 80.0, 312.0),
        Gpu("h100-80gb", "H100", 80.0, 989.0),
        Gpu("h200-141gb", "H200", 141.0, 989.0),
        Gpu("l40s", "L40S", 48.0, 362.0),
        Gpu("cpu", "CPU", 0.0, 0.0),
    )
}


def catalogue(site_gpus: dict) -> dict[str, Gpu]:
    """ftc's GPUs and a site's own (a site's entry wins: the admin knows the hardware)."""
    site = {key: Gpu(key, g.family, g.memory_gib, g.bf16_tflops) for key, g in site_gpus.items()}
    return {**GPUS, **site}
