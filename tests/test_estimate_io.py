"""Time limits that include I/O: model load and checkpoint writes from bytes and the cluster's
filesystem bandwidth, validation and eval, GRPO generation; the summary shows each part."""

from __future__ import annotations

import pytest

from ftc.compiler.driver import compile_point
from ftc.compiler.errors import UserError
from ftc.compiler.report import summary

from site_files import admin_site


def _estimate(*args: str, cluster: str = "cluster=example"):
    _, run = compile_point([cluster, "dry_run=true", *args])
    return run.plan.estimate, run.plan


def test_the_parts_add_up_to_the_estimate(output_root):
    estimate, plan = _estimate("model=llama70b", "method=sft")
    assert set(estimate.parts) == {"train", "generation", "eval", "load", "checkpoints"}
    assert sum(estimate.parts.values()) / 3600 == pytest.approx(estimate.hours, rel=1e-3)
    # 70B parameters in bf16 at 2 GB/s: 70.6e9 * 2 / 2e9 s
    assert estimate.parts["load"] == pytest.approx(70_553_706_496 * 2 / 2e9, rel=1e-3)
    assert estimate.parts["checkpoints"] > estimate.parts["train"]  # ~1 TB a checkpoint dominates a tiny dataset


def test_the_cluster_bandwidth_scales_load_and_checkpoints(output_root, tmp_path, monkeypatch):
    slow, _ = _estimate("model=llama70b", "method=sft")
    fast_site = admin_site(tmp_path, monkeypatch, "example", {"fs_bandwidth_gbs": 8})
    fast, _ = _estimate("model=llama70b", "method=sft", cluster=fast_site)
    for part in ("load", "checkpoints"):
        assert slow.parts[part] == pytest.approx(4 * fast.parts[part], rel=1e-3)
    assert slow.parts["train"] == fast.parts["train"]


def test_lora_checkpoints_hold_the_adapters_only(output_root):
    lora, _ = _estimate("model=llama8b", "method=lora")
    full, _ = _estimate("model=llama8b", "method=sft")
    assert lora.parts["checkpoints"] < full.parts["checkpoints"] / 100


def test_grpo_counts_generation_and_the_summary_shows_every_part(output_root):
    estimate, plan = _estimate("model=llama8b", "method=grpo")
    assert estimate.parts["generation"] > estimate.parts["train"]
    text = summary(plan)
    assert "= train " in text and " + generation " in text and " + load " in text


def test_more_saves_cost_more_time(output_root):
    rare, _ = _estimate("model=llama8b", "method=sft", "training.save_steps=1000")
    often, _ = _estimate("model=llama8b", "method=sft", "training.save_steps=1")
    assert often.parts["checkpoints"] > 10 * rare.parts["checkpoints"]


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), "inf", "fast", 1e9, ""])
def test_bad_bandwidth_is_refused(output_root, tmp_path, monkeypatch, value):
    cluster = admin_site(tmp_path, monkeypatch, "example", {"fs_bandwidth_gbs": value})
    with pytest.raises(UserError) as info:
        _estimate("model=llama8b", cluster=cluster)
    assert info.value.problems[0].startswith("cluster.fs_bandwidth_gbs")
