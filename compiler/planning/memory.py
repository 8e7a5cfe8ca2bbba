"""Per-GPU memory model: model states, activations, logits and fixed overheads, in bytes.

Pure arithmetic on the architecture numbers so the planner can try hundreds of layouts in
milliseconds. Each formula is written once, here, with its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftc.compiler.config.gpus import GPUS, Gpu
from ftc.compiler.config.methods import LoraParams, MethodBase
from ftc.compiler.config.schema import Architecture
from ftc.compiler.planning.plan import MemoryEstimate, MemoryItem, Topology

GIB = 1024**3
# CUDA context with cuBLAS/cuDNN workspaces (~0.75 GiB), NCCL buffers (~0.5 GiB) and the caching
# allocator's fragmentation (~0.75 GiB): 2 GiB a GPU, a figure none of the tensors above shows.
GPU_OVERHEAD_BYTES = 2 * GIB
# A CPU worker: the Python interpreter, torch and the tokenizer.
CPU_OVERHEAD_BYTES = GIB // 2


@dataclass(frozen=True)
class Precision:
    """Bytes per trainable parameter for weights, gradients and optimizer states, and per activation.

    bf16 mixed precision (ZeRO, arXiv:1910.02054 section 3.1): bf16 weights and gradients plus an
    fp32 master copy and Adam's m and v, 2 + 2 + 12. fp32 (CPU): 4 + 4 + 8, no master copy.
    """

    name: str
    weight: int
    grad: int
    optimizer: int
    activation: int
    mask: int  # a dropout mask element: bool on CUDA, the input's dtype in CPU dropout


BF16 = Precision("bf16", 2, 2, 12, 2, 1)
FP32 = Precision("fp32", 4, 4, 8, 4, 4)
PRECISIONS = {p.name: p for p in (BF16, FP32)}
# PEFT (autocast_adapter_dtype=True, its default) upcasts bf16 adapters to fp32: fp32 weights and
# gradients and fp32 Adam m, v, 4 + 4 + 8. DeepSpeed's bf16 engine would keep 2 + 2 + 12 instead:
# the same 16 bytes a parameter either way.
ADAPTER = Precision("fp32", 4, 4, 8, 4, 4)


def precision_for(gpu: Gpu | str) -> Precision:
    """bf16 on every GPU in the catalogue; fp32 on CPU workers, where bf16 matmuls are slow."""
    key = gpu if isinstance(gpu, str) else gpu.key
    return FP32 if key == "cpu" else BF16


def matrix_shapes(arch: Architecture) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each kind of linear layer in the blocks, as the model's layout has them."""
    return {kind: (d_in, d_out) for kind, (d_in, d_out, _) in arch.linear.items()}


def layer_parameters(arch: Architecture) -> int:
    """One decoder block on average: everything but the embedding, the LM head and the final norm
    (every expert of an MoE block included)."""
    embeddings = arch.vocab_size * arch.hidden_size * (1 if arch.tie_embeddings else 2)
    return (arch.parameters - embeddings - arch.hidden_size) // arch.layers


def base_parameters(arch: Architecture) -> int:
    """Every parameter, from the family's layout: blocks, final norm, embedding and (untied) LM head.

    The shipped configs' `parameters` equal this exactly; the model state uses `arch.parameters`.
    """
    from ftc.compiler.modelfolder.layout import dims_of, expected_tensors

    return sum(math.prod(shape) for shape in expected_tensors(*dims_of(arch)).values())


def matches(kind: str, target: str) -> bool:
    """PEFT's rule for a target name: the module's name is it, or ends with '.' + it."""
    return kind == target or kind.endswith("." + target)


def targeted(arch: Architecture, targets) -> dict[str, tuple[int, int, int]]:
    """The linear kinds LoRA adapts: all of them for all-linear (PEFT's meaning: every Linear but the
    output head), else those a target names."""
    kinds = {k: tuple(v) for k, v in arch.linear.items()}
    if targets == "all-linear" or "all-linear" in targets:
        return kinds
    return {k: v for k, v in kinds.items() if any(matches(k, t) for t in targets)}


def lora_parameters(arch: Architecture, lora: LoraParams) -> int:
    """Sum of r x (d_in + d_out) over every adapted matrix (A is r x d_in, B d_out x r)."""
    return sum(lora.adapter_dim * (d_in + d_out) * count for d_in, d_out, count in targeted(arch, lora.target_modules).values())


def active_intermediate(arch: Architecture) -> int:
    """The MLP width one token passes: its routed experts' and the shared expert's for MoE."""
    if not arch.experts:
        return arch.intermediate_size
    return arch.experts_per_token * (arch.moe_intermediate_size or arch.intermediate_size) + (
        (arch.shared_expert_intermediate_size or arch.intermediate_size) * arch.shared_experts)


@dataclass(frozen=True)
class ModelState:
    """Bytes of weights, gradients, optimizer states and a frozen reference copy, per GPU."""

    weights: int
    gradients: int
    optimizer: int
    reference: int = 0
    fp32_gradients: int = 0  # DeepSpeed's bf16 optimizers keep an fp32 copy of the rank's gradient partition

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.reference + self.fp32_gradients


def model_state_bytes(
    arch: Architecture, method: MethodBase, precision: Precision = BF16,
    zero_stage: int = 0, data_parallel: int = 1, tensor_parallel: int = 1,
) -> ModelState:
    """Model states sharded as ZeRO does (arXiv:1910.02054): stage 1 shards optimizer states over
    the data-parallel ranks, stage 2 also gradients, stage 3 also parameters (frozen ones too);
    tensor parallelism splits everything by its degree.

    LoRA: the base is frozen in `precision.weight` bytes with no gradient or optimizer state; the
    adapters cost ADAPTER bytes. A DPO reference is a second frozen copy for all_weights only (with
    LoRA the reference is the base with the adapter off).
    """
    shard = [data_parallel if zero_stage >= s else 1 for s in (1, 2, 3)]
    opt_div, grad_div, param_div = (d * tensor_parallel for d in shard)
    if method.uses_lora:
        adapters = lora_parameters(arch, method.lora)
        return ModelState(
            weights=(arch.parameters * precision.weight + adapters * ADAPTER.weight) // param_div,
            gradients=adapters * ADAPTER.grad // grad_div,
            optimizer=adapters * ADAPTER.optimizer // opt_div,
        )
    reference = arch.parameters * precision.weight // param_div if method.name == "dpo" else 0
    # Mixed precision with master weights (bf16 under DeepSpeed): the fp32 gradients of the rank's
    # partition live alongside the states: 2 + 2 + 4 + 12 = DeepSpeed's 2 + 18 bytes a parameter.
    fp32_gradients = 4 * arch.parameters // opt_div if precision.optimizer > 8 else 0
    return ModelState(
        weights=arch.parameters * precision.weight // param_div,
        gradients=arch.parameters * precision.grad // grad_div,
        optimizer=arch.parameters * precision.optimizer // opt_div,
        reference=reference,
        fp32_gradients=fp32_gradients,
    )


def largest_layer_parameters(arch: Architecture) -> int:
    """DeepSpeed's largest_layer_params: the most parameters one module holds itself (the embedding or
    LM head, a dense MLP's widest Linear, or transformers 5's fused experts of one MoE block)."""
    experts = arch.experts * 3 * (arch.moe_intermediate_size or arch.intermediate_size) * arch.hidden_size
    return max(arch.vocab_size * arch.hidden_size, arch.intermediate_size * arch.hidden_size, experts)


def deepspeed_states_estimate(arch: Architecture, zero_stage: int, gpus_per_node: int, nodes: int) -> float:
    """DeepSpeed's own figure for model states per GPU without offload, all weights trained:
    estimate_zero2_model_states_mem_needs (2P + 18P/N) and estimate_zero3_model_states_mem_needs
    (4 x largest layer + 18P/N), deepspeed/runtime/zero/stage_1_and_2.py and stage3.py."""
    p, n = arch.parameters, gpus_per_node * nodes
    if zero_stage == 3:
        return 4 * largest_layer_parameters(arch) + int(18 * p / n)
    return 2 * p + int(18 * p / n)


# The items that are model states (DeepSpeed's estimators count these, and ZeRO-3's gathered layers).
STATE_ITEMS = ("weights", "gradients", "optimizer states", "fp32 gradient partition", "zero-3 gathered layers")
DEEPSPEED_ESTIMATORS = {2: "estimate_zero2_model_states_mem_needs_all_cold", 3: "estimate_zero3_model_states_mem_needs_all_cold"}


def layer_activation_bytes_per_token(
    arch: Architecture, method: MethodBase, seq_len: int, precision: Precision = BF16, fused_attention: bool = True
) -> float:
    """Bytes one decoder layer keeps for backward, per token, after Korthikanti et al. (arXiv:2205.05198
    section 4.1: 34·s·b·h + 5·a·s²·b at 2 bytes) adapted to the Llama block; p = bytes an activation.
    Checked tensor by tensor against transformers' saved tensors (tests/test_memory_real.py).

    - attention p·(3h + 2·kv·hd): the QKV input, Q, K and V at their GQA width, and the SDPA output,
      which the out-projection reads as a view (Korthikanti's 11h less the dropout mask, K and V
      narrowed by GQA). SDPA/flash attention is assumed (no s² scores kept); without it add
      Korthikanti's 5·a·s per token, scaled to p.
    - SwiGLU MLP p·(h + 4i): its input, gate output (SiLU input), SiLU output, up output, product
      (Korthikanti's 19h is p·(h + 8h) + h for a 4h GeLU MLP with a dropout mask).
    - two RMSNorms, 4h each: LlamaRMSNorm saves its input upcast to fp32, plus the normalised p·h
      for its weight's gradient when the weight trains.
    - LoRA: a frozen linear keeps no input, so the QKV, gate/up and down inputs drop out (p·(2h + i));
      each adapted matrix keeps its own p-byte copy of its input (autocast or DeepSpeed's bf16 cast),
      its dropout mask and the rank-r hidden.
    """
    h, kv_width, i = arch.hidden_size, arch.kv_heads * arch.head_dim, active_intermediate(arch)
    p = precision.activation
    total = p * (3 * h + 2 * kv_width) + p * (h + 4 * i) + 2 * (4 * h + p * h)
    if not fused_attention:
        total += 5 * arch.attention_heads * seq_len * p / 2
    if method.uses_lora:
        total -= p * (2 * h + i) + 2 * p * h
        mask = precision.mask if method.lora.adapter_dropout > 0 else 0
        for d_in, _, count in targeted(arch, method.lora.target_modules).values():
            total += count / arch.layers * (d_in * (p + mask) + p * method.lora.adapter_dim)
    return total


def activation_bytes(
    arch: Architecture, method: MethodBase, seq_len: int, sequences: int, precision: Precision = BF16,
    checkpointing: bool = False, tensor_parallel: int = 1, fused_attention: bool = True,
) -> float:
    """All layers' activations for `sequences` sequences of `seq_len` tokens.

    Full recompute (Korthikanti section 4.2) keeps each layer's input, p·s·b·h, plus one layer
    rematerialised during its backward. Tensor parallelism with sequence parallelism divides
    everything by t (Korthikanti eq. 5). The final RMSNorm counts as half a layer's two norms.
    """
    per_token = layer_activation_bytes_per_token(arch, method, seq_len, precision, fused_attention)
    return _stacked(arch, per_token, seq_len * sequences, precision, checkpointing, tensor_parallel)


def _stacked(arch: Architecture, layer_per_token: float, tokens: int, precision: Precision, checkpointing: bool, t: int) -> float:
    if checkpointing:
        kept = arch.layers * precision.activation * arch.hidden_size * tokens + layer_per_token * tokens
    else:
        kept = arch.layers * layer_per_token * tokens
    return (kept + 4 * arch.hidden_size * tokens) / t


# TRL (>= 1.16, the floor) scores tokens through its fused LM head, trl.kernels.chunked_logprob:
# logits exist one tile at a time, TOKEN_TILE tokens by VOCAB_TILE vocabulary entries. On a GPU its
# Triton kernel folds the tile in place; on a CPU worker the torch fallback keeps fp32 temporaries
# (the upcast, the shifted logits, exp, masks, products) of about 8.3 tiles at its peak, measured
# in tests/test_memory_real.py.
TOKEN_TILE, VOCAB_TILE = 4096, 32768
TILE_COPIES = {"gpu": 1, "cpu": 9}


def logits_bytes(
    arch: Architecture, seq_len: int, sequences: int, tensor_parallel: int = 1, precision: Precision = BF16,
    trains_head: bool = False, device: str = "gpu",
) -> float:
    """The loss's peak: a p-byte tile of logits (min(tokens, 4096) x min(V, 32768); 9 of them on CPU),
    the fp32 gradient of the hidden states it accumulates (4·s·b·h), seven fp32 running statistics a
    token, and the head's fp32 weight gradient when the head trains. Without the fused head
    (transformers' own loss) it was 12·s·b·V: fp32 log-probabilities plus two dense fp32 gradients."""
    tokens = seq_len * sequences
    tile = min(tokens, TOKEN_TILE) * min(arch.vocab_size, VOCAB_TILE) * precision.activation * TILE_COPIES[device]
    head = 4 * arch.vocab_size * arch.hidden_size if trains_head else 0
    return (tile + 4 * tokens * arch.hidden_size + 7 * 4 * tokens + head) / tensor_parallel


def packed_mask_bytes(seq_len: int, micro_batch: int) -> float:
    """Packing without flash attention: the flattened micro batch (one row of s·b tokens) gets a dense
    boolean block-diagonal mask, (s·b)² bytes."""
    return float((seq_len * micro_batch) ** 2)


def step_gradient_bytes(arch: Architecture, method: MethodBase, precision: Precision, zero_stage: int, data_parallel: int) -> float:
    """fp32 gradients DeepSpeed's bf16 optimizers build at the step, when activations are gone:
    the rank's whole partition at stages 0-2, one sub-group (sub_group_size, 1e9) at a time at stage 3."""
    if precision.optimizer <= 8:  # fp32 training steps on its own gradients
        return 0.0
    trainable = lora_parameters(arch, method.lora) if method.uses_lora else arch.parameters
    share = trainable / (data_parallel if zero_stage >= 1 else 1)
    return 4 * (min(share, 1e9) if zero_stage == 3 else share)


def kv_cache_bytes(arch: Architecture, seq_len: int, sequences: int, precision: Precision = BF16) -> float:
    """GRPO generation: keys and values of every layer for every token of every sequence,
    2 · layers · kv_heads · head_dim · p · tokens."""
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * precision.activation * seq_len * sequences


def zero3_gather_bytes(arch: Architecture, precision: Precision = BF16, tensor_parallel: int = 1) -> float:
    """ZeRO-3 gathers a layer's full weights before using it and prefetches the next one: two layers,
    or the embedding / LM head alone when that is larger; at least DeepSpeed's own allowance of 4 bytes
    a parameter of the largest layer (estimate_zero3_model_states_mem_needs)."""
    largest = max(2 * layer_parameters(arch) * precision.weight, 4 * largest_layer_parameters(arch))
    return largest / tensor_parallel


GENERATION_GATHER = "zero-3 generation: whole model gathered"


def gathers_for_generation(arch: Architecture, gpu: Gpu, precision: Precision) -> bool:
    """TRL's ds3_gather_for_generation for GRPO under ZeRO-3: gather the whole model once per
    generation (fast) when its weights take at most half a GPU, else generate layer by layer as a
    ZeRO-3 forward does (every token re-gathers every layer: slow, but a 70B model fits)."""
    return arch.parameters * precision.weight <= gpu.memory_gib * GIB / 2


def plan_gathers_for_generation(plan) -> bool:
    """What the runtime sets ds3_gather_for_generation to: whether the plan counted the whole-model gather."""
    return plan.memory is not None and any(item.name == GENERATION_GATHER for item in plan.memory.items)


class MemoryModel:
    """Everything that does not depend on the layout, computed once; `items` is then a few
    multiplications, so the solver can afford to try every candidate layout."""

    def __init__(
        self, arch: Architecture, method: MethodBase, seq_len: int, gpu: Gpu | str,
        precision: Precision | None = None, fused_attention: bool = True, packing: bool = False,
    ):
        self.arch, self.method, self.seq_len = arch, method, seq_len
        self.gpu = GPUS[gpu] if isinstance(gpu, str) else gpu
        self.precision = precision or precision_for(self.gpu)
        self._layer = layer_activation_bytes_per_token(arch, method, seq_len, self.precision, fused_attention)
        self._trains_head = not method.uses_lora
        # The runtime packs with flash attention only where flash-attn runs (bf16 on a GPU); a CPU worker never has it.
        self._packed_mask = packing and method.name in ("lora", "sft") and self.gpu.key == "cpu"
        # Full fine-tuning without DeepSpeed (ZeRO 0) loads fp32 weights and trains under bf16 autocast.
        self._autocast_full = not method.uses_lora and self.precision is BF16
        self._gather = zero3_gather_bytes(arch, self.precision)
        name = method.name
        # DPO runs chosen and rejected through the policy together. TRL's GRPO generates a whole
        # optimizer step's completions at once (generation_batch_size defaults to the global batch),
        # batch_size / data-parallel ranks of them per GPU, and trains on them micro batch by micro batch.
        self._sequences_per_sample = 2 if name == "dpo" else 1
        self._generated = method.batch_size if name == "grpo" else 0
        whole = self._generated and gathers_for_generation(arch, self.gpu, self.precision)
        self._generation_gather = arch.parameters * self.precision.weight if whole else 0
        self._overhead = CPU_OVERHEAD_BYTES if self.gpu.key == "cpu" else GPU_OVERHEAD_BYTES

    def items(self, zero_stage: int, data_parallel: int, tensor_parallel: int, micro_batch: int, checkpointing: bool) -> list[tuple[str, float]]:
        """(name, bytes) per GPU for one layout."""
        arch, p, t = self.arch, self.precision, tensor_parallel
        autocast = self._autocast_full and zero_stage == 0
        state = model_state_bytes(arch, self.method, FP32 if autocast else p, zero_stage, data_parallel, t)
        sequences = micro_batch * self._sequences_per_sample
        act = _stacked(arch, self._layer, self.seq_len * sequences, p, checkpointing, t)
        out = [("weights", state.weights), ("gradients", state.gradients), ("optimizer states", state.optimizer)]
        if state.fp32_gradients:
            out.append(("fp32 gradient partition", state.fp32_gradients))
        if autocast:
            # fp32 weights, gradients and Adam (4 + 4 + 8) plus the bf16 copy autocast makes of each weight it uses.
            out.append(("autocast bf16 weight copies", arch.parameters * p.weight / t))
        if state.reference:
            out.append(("reference model", state.reference))
        if zero_stage == 3 and data_parallel > 1:
            out.append(("zero-3 gathered layers", self._gather / t))
            if self._generation_gather:
                out.append((GENERATION_GATHER, self._generation_gather / t))
        device = "cpu" if self.gpu.key == "cpu" else "gpu"
        logits = logits_bytes(arch, self.seq_len, sequences, t, p, self._trains_head, device)
        working = [("activations", act), ("logits", logits)]
        if self._packed_mask:
            working.append(("packed attention mask", packed_mask_bytes(self.seq_len, micro_batch)))
        if self._generated:
            generating = -(-self._generated // data_parallel)
            working.append(("kv cache", kv_cache_bytes(arch, self.seq_len, generating, p) / t))
        # LoRA: the adapters' step-time fp32 gradients reuse what the activations freed; only the excess
        # counts (all weights: the fp32 gradient partition is a model state above).
        excess = 0.0
        if self.method.uses_lora:
            excess = step_gradient_bytes(arch, self.method, p, zero_stage, data_parallel) / t - sum(b for _, b in working)
        if excess > 0:
            working.append(("optimizer-step fp32 gradients beyond the freed activations", excess))
        out += working + [("runtime overhead", self._overhead)]
        return out

    def total(self, zero_stage: int, data_parallel: int, tensor_parallel: int, micro_batch: int, checkpointing: bool) -> float:
        return sum(b for _, b in self.items(zero_stage, data_parallel, tensor_parallel, micro_batch, checkpointing))

    def estimate(self, topology: Topology, capacity_gib: float | None = None, headroom: float = 0.10) -> MemoryEstimate:
        items = self.items(
            topology.zero_stage, topology.data_parallel, topology.tensor_parallel,
            topology.micro_batch_size, topology.gradient_checkpointing,
        )
        gib = [MemoryItem(name=n, gib=round(b / GIB, 3)) for n, b in items]
        states = sum(b for n, b in items if n in STATE_ITEMS)
        stage = topology.zero_stage
        compared = stage in DEEPSPEED_ESTIMATORS and not self.method.uses_lora and self.gpu.key != "cpu"
        reference = deepspeed_states_estimate(self.arch, stage, topology.gpus_per_node, topology.nodes) if compared else None
        return MemoryEstimate(
            items=gib,
            total_gib=round(sum(b for _, b in items) / GIB, 3),
            capacity_gib=self.gpu.memory_gib if capacity_gib is None else capacity_gib,
            headroom=headroom,
            sequence_length=self.seq_len,
            model_states_gib=math.ceil(states / GIB * 1000) / 1000,  # up: a bound is never shown below itself
            deepspeed_estimator=DEEPSPEED_ESTIMATORS[stage] if compared else None,
            deepspeed_gib=round(reference / GIB, 3) if reference is not None else None,
        )


def estimate_memory(
    arch: Architecture, method: MethodBase, topology: Topology, seq_len: int, gpu: Gpu | str,
    headroom: float = 0.10, capacity_gib: float | None = None, precision: Precision | None = None,
    packing: bool = False,
) -> MemoryEstimate:
    """Per-GPU memory of one layout; capacity defaults to the GPU's (pass the worker's share of a
    CPU node's memory for gpu "cpu")."""
    model = MemoryModel(arch, method, seq_len, gpu, precision, packing=packing)
    return model.estimate(topology, capacity_gib, headroom)
