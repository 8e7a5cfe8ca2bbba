"""Published config.json files of real models (tests/data/published_configs, as their hubs publish them):
read without weights they give the published parameter counts, and full fine-tuning plans model states
never below DeepSpeed's own estimators for ZeRO 2 and 3 on 1x8, 2x8 and 4x8 GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftc.compiler.config.methods import SftMethod
from ftc.compiler.config.schema import Architecture
from ftc.compiler.modelfolder import read_model_folder
from ftc.compiler.planning.memory import GIB, MemoryModel, largest_layer_parameters
from ftc.compiler.planning.plan import Topology

DATA = Path(__file__).parent / "data" / "published_configs"
PUBLISHED = json.loads((DATA / "parameters.json").read_text())  # the counts the model cards state
LAYOUTS = [(1, 8), (2, 8), (4, 8)]


def arch(name: str) -> Architecture:
    return Architecture.model_validate(read_model_folder(str(DATA / name), config_only=True).architecture())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_from_config_alone(name):
    assert arch(name).parameters == PUBLISHED[name]


@pytest.mark.train  # deepspeed is in the train extra
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_model_states_never_below_deepspeeds_estimators(name):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    a = arch(name)
    model = MemoryModel(a, SftMethod(name="sft"), 2048, "h100-80gb")
    for nodes, per_node in LAYOUTS:
        for stage in (2, 3):
            topology = Topology(nodes=nodes, gpus_per_node=per_node, zero_stage=stage, micro_batch_size=1,
                                gradient_accumulation_steps=1, gradient_checkpointing=True)
            estimate = model.estimate(topology)
            if stage == 2:  # what estimate_zero2_model_states_mem_needs_all_cold prints, without offload
                _, deepspeed = estimate_zero2_model_states_mem_needs(a.parameters, per_node, nodes, cpu_offload=False)
            else:
                _, deepspeed, _ = estimate_zero3_model_states_mem_needs(
                    a.parameters, largest_layer_parameters(a), per_node, nodes, cpu_offload=False, cpu_offload_params=False)
            assert estimate.model_states_gib * GIB >= deepspeed * (1 - 1e-6), (name, nodes, per_node, stage)
            assert estimate.deepspeed_gib == pytest.approx(deepspeed / GIB, abs=1e-3)
            assert estimate.deepspeed_estimator == f"estimate_zero{stage}_model_states_mem_needs_all_cold"
