"""Rendered scripts against golden files. Refresh them with:

    FTC_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftc.compiler.config.compose import load_job
from ftc.compiler.planning.build import compile_job

GOLDEN = Path(__file__).parent / "golden"
ROOT = "output_root=/scratch/ftc-runs"
CASES = {
    "lora-llama8b-1xh100": ["model=llama8b", "method=lora", "cluster=example"],
    "sft-llama8b-8xh100-zero3": ["model=llama8b", "method=sft", "cluster=example",
                                 "resources.gpus_per_node=8", "resources.zero_stage=3"],
    "dpo-llama70b-multinode": ["model=llama70b", "method=dpo", "method.finetuning_type=all_weights", "cluster=example",
                               "method.batch_size=64"],
    "grpo-llama8b-a100": ["model=llama8b", "method=grpo", "cluster=example", "cluster.partition=a100"],
}


def rendered(name: str) -> str:
    job, resolved = load_job([*CASES[name], ROOT])
    return compile_job(job, resolved).script


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_script_matches_golden(name):
    path = GOLDEN / f"{name}.sbatch"
    script = rendered(name)
    if os.environ.get("FTC_UPDATE_GOLDEN"):
        path.write_text(script)
    assert path.exists(), f"missing {path}; run FTC_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py"
    assert script == path.read_text()


def test_golden_cases_cover_what_they_claim():
    assert "#SBATCH --gpus-per-node=1" in rendered("lora-llama8b-1xh100")
    sft = rendered("sft-llama8b-8xh100-zero3")
    assert "#SBATCH --gpus-per-node=8" in sft and "--nproc-per-node=8" in sft
    dpo = rendered("dpo-llama70b-multinode")
    nodes = int(dpo.split("#SBATCH --nodes=")[1].split("\n")[0])
    assert nodes > 1
    assert "#SBATCH --partition=a100" in rendered("grpo-llama8b-a100")
