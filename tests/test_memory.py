"""The memory model's formulas, checked against hand-computed figures and published counts."""

import functools
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ftc.compiler.config.methods import (
    DpoMethod,
    GrpoMethod,
    LoraMethod,
    LoraParams,
    SftMethod,
)
from ftc.compiler.config.schema import ModelConfig
from ftc.compiler.planning.memory import (
    BF16,
    FP32,
    GIB,
    GPU_OVERHEAD_BYTES,
    MemoryModel,
    activation_bytes,
    base_parameters,
    estimate_memory,
    kv_cache_bytes,
    layer_activation_bytes_per_token,
    logits_bytes,
    lora_parameters,
    model_state_bytes,
    precision_for,
    step_gradient_bytes,
)
from ftc.compiler.planning.plan import Topology

CONF = Path(__file__).resolve().parents[1] / "conf"
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem != "custom")  # custom: read from its folder


@functools.cache
def arch(name):
    data = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    data["path"] = "/models/test"  # the shipped path holds an ${oc.env:...} interpolation
    return ModelConfig.model_validate(data).architecture


def topo(nodes=1, gpus=1, zero=0, micro=1, ckpt=False):
    return Topology(nodes=nodes, gpus_per_node=gpus, zero_stage=zero, micro_batch_size=micro,
                    gradient_accumulation_steps=1, gradient_checkpointing=ckpt)


def item(estimate, name):
    return next(i.gib for i in estimate.items if i.name == name)


QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the attention projections; the default is all-linear
LORA = LoraMethod(name="lora", lora={"target_modules": QKVO})
SFT = SftMethod(name="sft")


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_from_shapes_matches_the_published_checkpoint(name):
    a = arch(name)
    assert base_parameters(a) == a.parameters


def test_lora_parameters_match_peft_published_count_for_llama8b():
    # PEFT prints "trainable params: 6,815,744" for Llama-3-8B, r=8 on q/k/v/o.
    assert lora_parameters(arch("llama8b"), LoraParams(adapter_dim=8, target_modules=QKVO)) == 6_815_744


def test_lora_parameters_all_modules_by_hand():
    # tiny: h=64, kv width 2*16=32, i=128, two layers, r=8
    per_layer = 8 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 2 + (128 + 64))
    lora = LoraParams(adapter_dim=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert lora_parameters(arch("tiny"), lora) == 2 * per_layer == 16384
    assert lora_parameters(arch("tiny"), LoraParams(adapter_dim=8)) == 16384  # all-linear, the default


def test_full_finetuning_state_is_16_bytes_a_parameter_in_both_precisions():
    a = arch("llama8b")
    bf16 = model_state_bytes(a, SFT, BF16)
    assert (bf16.weights, bf16.gradients, bf16.optimizer) == (2 * a.parameters, 2 * a.parameters, 12 * a.parameters)
    fp32 = model_state_bytes(a, SFT, FP32)
    assert (fp32.weights, fp32.gradients, fp32.optimizer) == (4 * a.parameters, 4 * a.parameters, 8 * a.parameters)


def test_lora_state_is_frozen_base_plus_fp32_adapters():
    a = arch("llama8b")
    n = lora_parameters(a, LORA.lora)
    state = model_state_bytes(a, LORA, BF16)
    assert state.weights == 2 * a.parameters + 4 * n
    assert (state.gradients, state.optimizer, state.reference) == (4 * n, 8 * n, 0)


@pytest.mark.parametrize("stage, sharded", [(0, ()), (1, ("optimizer",)), (2, ("optimizer", "gradients")),
                                            (3, ("optimizer", "gradients", "weights"))])
def test_zero_stages_shard_what_the_paper_says(stage, sharded):
    a = arch("llama8b")
    whole, part = model_state_bytes(a, SFT), model_state_bytes(a, SFT, BF16, stage, 8)
    for field in ("weights", "gradients", "optimizer"):
        expected = getattr(whole, field) // 8 if field in sharded else getattr(whole, field)
        assert getattr(part, field) == expected


def test_two_nodes_of_eight_with_zero3_shard_states_by_16():
    a = arch("llama70b")
    est = estimate_memory(a, SFT, topo(nodes=2, gpus=8, zero=3, ckpt=True), 4096, "h100-80gb")
    assert item(est, "weights") == pytest.approx(2 * a.parameters / 16 / GIB, abs=1e-3)
    assert item(est, "gradients") == pytest.approx(2 * a.parameters / 16 / GIB, abs=1e-3)
    assert item(est, "optimizer states") == pytest.approx(12 * a.parameters / 16 / GIB, abs=1e-3)


def test_dpo_reference_copy_only_for_all_weights_and_sharded_only_by_zero3():
    a = arch("llama8b")
    full, lora = DpoMethod(name="dpo", finetuning_type="all_weights"), DpoMethod(name="dpo")
    assert model_state_bytes(a, lora).reference == 0
    assert model_state_bytes(a, full).reference == 2 * a.parameters
    assert model_state_bytes(a, full, BF16, 2, 8).reference == 2 * a.parameters
    assert model_state_bytes(a, full, BF16, 3, 8).reference == 2 * a.parameters // 8


def test_layer_activations_llama8b_by_hand():
    h, kv, i = 4096, 1024, 14336
    # full: attention 2(3h + 2kv), SwiGLU 2(h + 4i), two norms of fp32 input + bf16 output
    full = 2 * (3 * h + 2 * kv) + 2 * (h + 4 * i) + 2 * (4 * h + 2 * h)
    assert layer_activation_bytes_per_token(arch("llama8b"), SFT, 4096) == full == 200_704
    # LoRA: frozen linears keep no input (-2(2h + i)), norms keep only fp32 input;
    # q/k/v/o adapters each keep a bf16 input copy, a 1-byte dropout mask and the rank-8 hidden
    lora = 2 * (2 * h + 2 * kv) + 2 * 3 * i + 2 * 4 * h + 4 * (h * (2 + 1) + 2 * 8)
    assert layer_activation_bytes_per_token(arch("llama8b"), LORA, 4096) == lora == 188_480
    no_dropout = LoraMethod(name="lora", lora={"adapter_dropout": 0.0, "target_modules": QKVO})
    assert layer_activation_bytes_per_token(arch("llama8b"), no_dropout, 4096) == lora - 4 * h


def test_doubling_sequence_doubles_activations_with_sdpa():
    a = arch("llama8b")
    short = dict(MemoryModel(a, LORA, 4096, "h100-80gb").items(0, 1, 1, 1, False))
    long = dict(MemoryModel(a, LORA, 8192, "h100-80gb").items(0, 1, 1, 1, False))
    assert long["activations"] / short["activations"] == 2.0
    assert long["logits"] == logits_bytes(a, 8192, 1) > short["logits"] == logits_bytes(a, 4096, 1)
    assert long["weights"] == short["weights"]


def test_doubling_sequence_without_fused_attention_adds_the_quadratic_term():
    # Korthikanti: 5·a·s²·b bytes a layer on top of the linear terms, so per token 5·a·s more.
    a = arch("llama8b")
    linear = layer_activation_bytes_per_token(a, LORA, 4096) + 4 * a.hidden_size / a.layers  # + final norm share
    quadratic = 5 * a.attention_heads
    expected = 2 * (linear + quadratic * 8192) / (linear + quadratic * 4096)
    ratio = activation_bytes(a, LORA, 8192, 1, fused_attention=False) / activation_bytes(a, LORA, 4096, 1, fused_attention=False)
    assert ratio == pytest.approx(expected, rel=1e-12)
    assert ratio > 2.3


def test_full_recompute_keeps_one_hidden_state_a_layer_plus_one_layer():
    a = arch("llama8b")
    s = 4096
    per_layer = layer_activation_bytes_per_token(a, SFT, s)
    expected = (a.layers * 2 * a.hidden_size * s) + per_layer * s + 4 * a.hidden_size * s
    assert activation_bytes(a, SFT, s, 1, checkpointing=True) == pytest.approx(expected)
    assert activation_bytes(a, SFT, s, 1, checkpointing=True) < activation_bytes(a, SFT, s, 1) / 10


def test_dpo_doubles_sequences_and_grpo_adds_kv_cache():
    a = arch("llama8b")
    sft = MemoryModel(a, LORA, 2048, "h100-80gb").items(0, 1, 1, 2, False)
    dpo = MemoryModel(a, DpoMethod(name="dpo", lora=LORA.lora), 2048, "h100-80gb").items(0, 1, 1, 2, False)
    assert dict(dpo)["activations"] == pytest.approx(2 * dict(sft)["activations"])
    assert dict(dpo)["logits"] == logits_bytes(a, 2048, 4) and dict(sft)["logits"] == logits_bytes(a, 2048, 2)
    # TRL generates the step's 16 completions together: 8 a GPU on 2 ranks, whatever the micro batch
    grpo = GrpoMethod(name="grpo", num_generations=4, batch_size=16)
    for micro in (1, 2):
        items = dict(MemoryModel(a, grpo, 2048, "h100-80gb").items(0, 2, 1, micro, False))
        assert items["kv cache"] == 2 * 32 * 8 * 128 * 2 * 2048 * 8 == kv_cache_bytes(a, 2048, 8)


def test_logits_peak_is_one_tile_of_trl_fused_head_plus_the_hidden_gradient():
    a = arch("llama8b")
    tile = 4096 * 32768 * 2  # TRL's fused LM head: 4096 tokens x 32768 vocabulary entries in bf16
    assert logits_bytes(a, 4096, 1) == tile + 4 * 4096 * a.hidden_size + 28 * 4096
    assert logits_bytes(a, 4096, 2) == tile + 4 * 8192 * a.hidden_size + 28 * 8192  # still one tile
    assert logits_bytes(a, 4096, 1) < 12 * 4096 * a.vocab_size / 10  # what transformers' own loss keeps
    assert logits_bytes(a, 4096, 1, trains_head=True) - logits_bytes(a, 4096, 1) == 4 * a.vocab_size * a.hidden_size
    assert logits_bytes(a, 4096, 1, tensor_parallel=2) == logits_bytes(a, 4096, 1) / 2


def test_packing_on_cpu_counts_the_dense_mask_and_zero0_full_training_counts_fp32_weights():
    a = arch("tiny")
    packed = dict(MemoryModel(a, SFT, 512, "cpu", packing=True).items(0, 1, 1, 4, False))
    assert packed["packed attention mask"] == (512 * 4) ** 2
    assert "packed attention mask" not in dict(MemoryModel(a, SFT, 512, "h100-80gb", packing=True).items(0, 1, 1, 4, False))
    b = arch("llama8b")
    zero0 = dict(MemoryModel(b, SFT, 1024, "h100-80gb").items(0, 1, 1, 1, False))
    assert zero0["weights"] == 4 * b.parameters and zero0["gradients"] == 4 * b.parameters
    assert zero0["autocast bf16 weight copies"] == 2 * b.parameters
    zero2 = dict(MemoryModel(b, SFT, 1024, "h100-80gb").items(2, 8, 1, 1, False))
    assert zero2["weights"] == 2 * b.parameters and "autocast bf16 weight copies" not in zero2


def test_precision_follows_the_device():
    assert precision_for("cpu") is FP32 and precision_for("h100-80gb") is BF16
    est = estimate_memory(arch("tiny"), SFT, topo(), 512, "cpu", capacity_gib=16)
    assert item(est, "weights") == pytest.approx(4 * 123200 / GIB, abs=1e-3)
    assert est.capacity_gib == 16


def test_estimate_totals_its_items_and_counts_the_fixed_overhead():
    est = estimate_memory(arch("llama8b"), LORA, topo(), 4096, "h100-80gb")
    assert est.total_gib == pytest.approx(sum(i.gib for i in est.items), abs=0.01)
    assert item(est, "runtime overhead") == GPU_OVERHEAD_BYTES / GIB
    assert est.capacity_gib == 80 and est.headroom == 0.10
    assert est.total_gib < 72  # llama8b LoRA at 4096 fits one H100


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(MODELS), micro=st.sampled_from([1, 2, 4]), seq=st.integers(64, 8192),
       stage=st.integers(0, 2), dp=st.sampled_from([2, 4, 8]), ckpt=st.booleans())
def test_memory_is_monotonic_in_every_knob(model, micro, seq, stage, dp, ckpt):
    m = MemoryModel(arch(model), SFT, seq, "h100-80gb")
    base = m.total(stage, dp, 1, micro, ckpt)
    # Model states shrink with every stage; ZeRO-3's gather buffers can outweigh that on tiny models.
    assert model_state_bytes(arch(model), SFT, BF16, stage + 1, dp).total < model_state_bytes(arch(model), SFT, BF16, stage, dp).total
    if stage < 2:
        assert m.total(stage + 1, dp, 1, micro, ckpt) < base
    # Non-decreasing only: the step's fp32 gradients can outweigh the activations, and the peak is the larger.
    assert m.total(stage, dp, 1, micro * 2, ckpt) >= base
    assert m.total(stage, dp, 1, micro, True) <= m.total(stage, dp, 1, micro, False)
    assert MemoryModel(arch(model), SFT, seq + 64, "h100-80gb").total(stage, dp, 1, micro, ckpt) >= base


def test_fp32_gradients_are_a_model_state_as_deepspeed_counts_them():
    a = arch("llama8b")
    items = dict(MemoryModel(a, SFT, 4096, "h100-80gb").items(2, 2, 1, 1, True))
    assert items["fp32 gradient partition"] == 4 * a.parameters // 2  # stage 2: the rank's partition
    assert not any(name.startswith("optimizer-step") for name in items)  # not counted twice
    states = sum(items[n] for n in ("weights", "gradients", "optimizer states", "fp32 gradient partition"))
    assert states == 2 * a.parameters + 18 * a.parameters // 2  # DeepSpeed's 2P + 18P/N
    lora = dict(MemoryModel(a, LORA, 4096, "h100-80gb").items(0, 1, 1, 1, False))
    assert not any(name.startswith("optimizer-step") for name in lora)  # adapters: far below activations
    assert step_gradient_bytes(a, SFT, FP32, 0, 1) == 0  # fp32 training steps on its own gradients
