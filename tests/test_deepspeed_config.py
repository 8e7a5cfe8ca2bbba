"""Generated DeepSpeed configs pass DeepSpeed's own parser (needs the train extra)."""

from __future__ import annotations

import pytest

from ftc.compiler.config.compose import load_job
from ftc.compiler.planning.build import compile_job

pytestmark = pytest.mark.train
deepspeed_config = pytest.importorskip("deepspeed.runtime.config")

CASES = [
    ["model=llama8b", "method=sft", "cluster=example"],
    ["model=llama8b", "method=sft", "cluster=example", "resources.zero_stage=1", "resources.gpus_per_node=8"],
    ["model=llama8b", "method=sft", "cluster=example", "resources.zero_stage=2", "resources.gpus_per_node=8"],
    ["model=llama70b", "method=dpo", "method.finetuning_type=all_weights", "cluster=example", "method.batch_size=64"],
    ["model=llama70b", "method=lora", "cluster=example"],
]


class DataParallel:
    """The one thing DeepSpeed asks of a parallelism unit here: how many data-parallel ranks."""

    def __init__(self, size: int):
        self.size = size

    def get_data_parallel_world_size(self) -> int:
        return self.size


@pytest.mark.parametrize("overrides", CASES, ids=[" ".join(c) for c in CASES])
def test_deepspeed_accepts_the_generated_config(overrides, output_root, monkeypatch):
    job, resolved = load_job(overrides)
    plan = compile_job(job, resolved).plan
    assert plan.deepspeed is not None, "these cases all shard with ZeRO"
    monkeypatch.setattr(deepspeed_config.dist, "get_rank", lambda: 0)
    parsed = deepspeed_config.DeepSpeedConfig(plan.deepspeed, mpu=DataParallel(plan.topology.data_parallel))
    assert parsed.zero_optimization_stage == plan.topology.zero_stage
    assert parsed.train_batch_size == job.method.batch_size
    assert parsed.train_micro_batch_size_per_gpu == plan.topology.micro_batch_size
    assert parsed.gradient_accumulation_steps == plan.topology.gradient_accumulation_steps
    assert parsed.bfloat16_config.enabled is True
