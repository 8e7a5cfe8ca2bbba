"""Resolve every `auto` resource into a concrete layout that fits in memory.

Order of preference: the fewest GPUs that fit (queue time and cost), then the fastest layout on
them: lower ZeRO stage, no recompute, larger micro batch. Explicit values are never changed; when
they cannot fit, the error names the cheapest change that would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ftc.compiler.checks import guards
from ftc.compiler.config.gpus import Gpu
from ftc.compiler.config.schema import JobConfig, TrainingOption
from ftc.compiler.errors import UserError
from ftc.compiler.planning.memory import GIB, MemoryModel
from ftc.compiler.planning.plan import MemoryEstimate, Topology

FIELDS = ("gradient_checkpointing", "zero_stage", "micro_batch_size", "nodes", "gpus_per_node")
MICRO_BATCHES = (8, 4, 2, 1)


@dataclass(frozen=True)
class Solution:
    topology: Topology
    memory: MemoryEstimate
    seq_len: int
    precision: str  # "bf16" on GPUs, "fp32" on CPU workers
    decisions: list[str] = field(default_factory=list)  # one line per `auto` field
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    nodes: int
    gpus_per_node: int
    zero_stage: int
    gradient_checkpointing: bool
    micro_batch_size: int
    need: float  # bytes per GPU

    @property
    def world(self) -> int:
        return self.nodes * self.gpus_per_node

    def describe(self, gpu: str) -> str:
        zero, recompute = f"ZeRO-{self.zero_stage}" if self.zero_stage else "no ZeRO", self.gradient_checkpointing
        return f"{self.nodes} x {self.gpus_per_node} {gpu}, {zero}, micro batch {self.micro_batch_size}" + (
            ", gradient checkpointing" if recompute else "")


@dataclass
class Search:
    fit: Candidate | None = None
    smallest: Candidate | None = None  # the lowest need seen
    largest: Candidate | None = None  # the most memory-saving try on the most GPUs
    least_by_world: dict[int, float] = field(default_factory=dict)
    indivisible: list[int] = field(default_factory=list)  # GPU counts method.batch_size does not split over


def _check_tensor_parallel(job: JobConfig) -> list[str]:
    res, arch = job.resources, job.model.architecture
    if res.tensor_parallel == "auto":
        return ["resources.tensor_parallel=1: ftc's runtime shards with DeepSpeed ZeRO, not tensor parallelism"]
    tp = res.tensor_parallel
    per_node = res.gpus_per_node if res.gpus_per_node != "auto" else job.cluster.chosen.gpus_per_node
    problems = []
    if arch.attention_heads % tp or arch.kv_heads % tp:
        heads = f"{arch.attention_heads} attention heads and {arch.kv_heads} KV heads"
        problems.append(f"resources.tensor_parallel: {tp} must divide the model's {heads}")
    if per_node % tp:
        problems.append(f"resources.tensor_parallel: {tp} must divide the {per_node} GPUs per node")
    if tp > 1 and not problems:
        problems.append(
            f"resources.tensor_parallel: ftc's runtime shards with DeepSpeed ZeRO; tensor parallelism > 1 is not supported (got {tp})"
        )
    if problems:
        raise UserError(*problems)
    return []


def _layouts(fixed: dict, max_nodes: int, max_per_node: int, cpu: bool) -> list[tuple[int, int]]:
    """(nodes, gpus_per_node) to try, fewest GPUs first: 1, 2, 4, 8 on one node, then full nodes."""
    nodes, per_node = fixed["nodes"], fixed["gpus_per_node"]
    if cpu:
        return [(nodes or 1, per_node or 1)]
    singles = [(1, g) for g in sorted({g for g in (1, 2, 4, 8) if g <= max_per_node} | {max_per_node})]
    if per_node is not None:
        return [(nodes, per_node)] if nodes is not None else [(n, per_node) for n in range(1, max_nodes + 1)]
    if nodes is not None:
        return singles if nodes == 1 else [(nodes, max_per_node)]
    return singles + [(n, max_per_node) for n in range(2, max_nodes + 1)]


def _tries(fixed: dict, dp: int, batch: int | None, cpu: bool) -> list[tuple[int, bool, int]]:
    """(zero stage, recompute, micro batch) for one layout, fastest first."""
    zeros = [fixed["zero_stage"]] if fixed["zero_stage"] is not None else ([0] if cpu or dp == 1 else [0, 1, 2, 3])
    recompute = [fixed["gradient_checkpointing"]] if fixed["gradient_checkpointing"] is not None else [False, True]
    micros = [fixed["micro_batch_size"]] if fixed["micro_batch_size"] is not None else MICRO_BATCHES
    micros = [m for m in micros if batch is None or batch % (m * dp) == 0]
    return [(zero, ckpt, micro) for zero in zeros for ckpt in recompute for micro in micros]


def _search(model: MemoryModel, fixed: dict, layouts: list[tuple[int, int]], batch: int | None, limit: float, cpu: bool) -> Search:
    found = Search()
    for nodes, per_node in layouts:
        world = nodes * per_node
        if not (tries := _tries(fixed, world, batch, cpu)):
            found.indivisible.append(world)
        for zero, ckpt, micro in tries:
            need = model.total(zero, world, 1, micro, ckpt)
            cand = Candidate(nodes, per_node, zero, ckpt, micro, need)
            if found.smallest is None or need < found.smallest.need:
                found.smallest = cand
            found.least_by_world[world] = min(need, found.least_by_world.get(world, need))
            if found.largest is None or (world, -need) >= (found.largest.world, -found.largest.need):
                found.largest = cand
            if need <= limit:
                found.fit = cand
                return found
    return found


def solve(job: JobConfig, dataset_rows: int | None = None, seq_len: int | None = None, hints: bool = True) -> Solution:
    """The layout for `job`: every `auto` of resources resolved, explicit values honoured and checked.

    `hints=False`: a refusal without the fixes that re-run the solver (what those re-runs use)."""
    res, arch, method, partition = job.resources, job.model.architecture, job.method, job.cluster.chosen
    gpu = job.cluster.gpu_spec()
    cpu = gpu.key == "cpu"
    option = guards.training_option(job)
    decisions = _check_tensor_parallel(job)
    warnings: list[str] = []
    if seq_len is None:
        seq_len = guards.max_seq_length(job, option)
    if method.name == "grpo" and method.batch_size % method.num_generations:
        raise UserError(f"method.batch_size: {method.batch_size} must be a multiple of method.num_generations ({method.num_generations})")
    if dataset_rows is not None and dataset_rows < method.batch_size:
        warnings.append(f"method.batch_size: {method.batch_size} exceeds the {dataset_rows} training rows; each epoch is one partial step")

    fixed = {f: (None if getattr(res, f) == "auto" else getattr(res, f)) for f in FIELDS}
    max_per_node = max(1, min(partition.gpus_per_node, option.num_gpus))
    max_nodes = min(option.num_nodes, partition.max_nodes)
    _check_explicit(job, fixed, gpu, option, warnings)
    # A CPU worker's share of the node's memory (GB read as GiB); a GPU's own memory otherwise.
    capacity = partition.mem_per_node_gb / (fixed["gpus_per_node"] or 1) if cpu else gpu.memory_gib
    limit = capacity * (1 - res.headroom) * GIB
    model = MemoryModel(arch, method, seq_len, gpu, packing=job.data.packing)

    def search(free: dict, batch: int | None = method.batch_size, bound: float = limit) -> Search:
        return _search(model, free, _layouts(free, max_nodes, max_per_node, cpu), batch, bound, cpu)

    chosen = (found := search(fixed)).fit
    if chosen is None and found.smallest is None:
        raise UserError(_indivisible(job, fixed))
    if chosen is None:
        # Above the usable memory is refused on a GPU (the headroom is what the estimate does not see),
        # with the explicit values to free that would make it fit; a CPU worker may swap instead.
        need_line = _need_line(found.smallest.need, gpu.key, capacity, res.headroom)
        if cpu:
            chosen = found.smallest
            warnings.append(f"resources: {need_line} on this CPU partition; the run may swap or be killed")
        else:
            line = _no_fit(need_line, found, fixed, search, gpu)
            if "; " in line or not hints:
                raise UserError(line)
            raise UserError(f"{line}; {_nothing_fits(job, option, dataset_rows, seq_len)}")
    topology = Topology(
        nodes=chosen.nodes, gpus_per_node=chosen.gpus_per_node, tensor_parallel=1, zero_stage=chosen.zero_stage,
        micro_batch_size=chosen.micro_batch_size, gradient_checkpointing=chosen.gradient_checkpointing,
        gradient_accumulation_steps=method.batch_size // (chosen.micro_batch_size * chosen.world),
    )
    memory = model.estimate(topology, capacity_gib=round(capacity, 3), headroom=res.headroom)
    decisions += _decisions(fixed, chosen, found, model, gpu.key, limit, cpu, method.batch_size)
    return Solution(topology, memory, seq_len, model.precision.name, decisions, warnings)


def _check_explicit(job: JobConfig, fixed: dict, gpu: Gpu, option: TrainingOption, warnings: list[str]) -> None:
    partition, name = job.cluster.chosen, job.cluster.partition
    what = f"{option.training_type}/{option.finetuning_type} on {gpu.variant}"
    per_node, nodes = fixed["gpus_per_node"], fixed["nodes"]
    problems = []
    if per_node is not None and per_node > max(partition.gpus_per_node, 1):
        problems.append(f"resources.gpus_per_node: {per_node} exceeds the {partition.gpus_per_node} a node of partition {name} has")
    if nodes is not None and nodes > partition.max_nodes:
        problems.append(f"resources.nodes: {nodes} exceeds partition {name}'s max_nodes ({partition.max_nodes})")
    if problems:
        raise UserError(*problems)
    if per_node is not None and per_node > option.num_gpus:
        warnings.append(f"resources.gpus_per_node: {per_node} exceeds the {option.num_gpus} the model config lists for {what}")
    if nodes is not None and nodes > option.num_nodes:
        warnings.append(f"resources.nodes: {nodes} exceeds the {option.num_nodes} the model config lists for {what}")


def _indivisible(job: JobConfig, fixed: dict) -> str:
    micro, world = fixed["micro_batch_size"] or 1, (fixed["nodes"] or 1) * (fixed["gpus_per_node"] or 1)
    return (
        f"method.batch_size: {job.method.batch_size} is not divisible by micro batch x data-parallel ranks "
        f"({micro} x {world}); change method.batch_size or resources.micro_batch_size/nodes/gpus_per_node"
    )


def _need_line(need: float, gpu: str, capacity: float, headroom: float) -> str:
    usable = f"{capacity * (1 - headroom):.1f} GiB usable at {headroom:.0%} headroom"
    return f"needs {need / GIB:.1f} GiB per GPU on {gpu} ({capacity:g} GiB, {usable})"


def _no_fit(need_line, found: Search, fixed: dict, search, gpu: Gpu) -> str:
    """One line: the smallest need, what was tried, and the cheapest explicit value to change."""
    explicit = [f for f in FIELDS if fixed[f] is not None]
    line = f"resources: {need_line}"
    if len(explicit) < len(FIELDS):
        best, largest = found.smallest, found.largest
        line += f" even on the largest layout tried ({best.describe(gpu.key)})" if best.world == largest.world else (
            f" at best ({best.describe(gpu.key)}); the largest layout tried was {largest.describe(gpu.key)}"
        )
    fixes = []
    groups = [[f] for f in ("gradient_checkpointing", "zero_stage", "micro_batch_size")] + [["nodes", "gpus_per_node"]]
    for group in groups:
        if not any(f in explicit for f in group):
            continue
        fit = search({**fixed, **{f: None for f in group}}).fit
        if fit is not None:
            fixes.append(" ".join(f"resources.{f}={_value(fit, f)}" for f in group if f in explicit))
    if not fixes and explicit:
        fit = search({f: None for f in FIELDS}).fit
        if fit is not None:
            fixes.append(" ".join(f"resources.{f}={_value(fit, f)}" for f in explicit))
    if fixes:
        return f"{line}; set {' or '.join(fixes[:2])}"
    if found.indivisible and (fit := search(fixed, None).fit) is not None:
        return f"{line}; {fit.world} GPUs would fit: set method.batch_size to a multiple of {fit.world}"
    return line


def _nothing_fits(job: JobConfig, option: TrainingOption, rows: int | None, seq_len: int) -> str:
    """Which limit binds (the partition's or the model config's), and only fixes that were tried
    and fit: another partition of this cluster, a shorter sequence length."""
    partition, name = job.cluster.chosen, job.cluster.partition
    what = f"{option.training_type}/{option.finetuning_type} on {job.cluster.gpu_spec().variant}"
    nodes = (f"partition {name}'s max_nodes ({partition.max_nodes})" if partition.max_nodes < option.num_nodes
             else f"the model config's {option.num_nodes} node(s) for {what}")
    per_node = (f"the {partition.gpus_per_node} GPUs a node of {name} has" if partition.gpus_per_node <= option.num_gpus
                else f"the model config's {option.num_gpus} GPUs a node for {what}")
    fixes = [f"cluster.partition={p}" for p in job.cluster.partitions if p != name and _fits_on(job, p, rows, seq_len)]
    shorter = _shorter_fit(job, seq_len)
    if shorter is not None:
        fixes.append(f"data.max_seq_length={shorter} (longer rows are truncated)")
    if partition.max_nodes < option.num_nodes and _fits_with_nodes(job, option.num_nodes, rows, seq_len):
        fixes.append(f"(an admin's change) cluster.partitions.{name}.max_nodes={option.num_nodes}")
    advice = f"set {' or '.join(fixes)}" if fixes else f"no partition of cluster {job.cluster.name} and no shorter sequence length fits"
    return f"nothing fits within {nodes} x {per_node}; {advice}"


def _fits_with_nodes(job: JobConfig, nodes: int, rows: int | None, seq_len: int) -> bool:
    partitions = {**job.cluster.partitions,
                  job.cluster.partition: job.cluster.chosen.model_copy(update={"max_nodes": nodes})}
    wider = job.model_copy(update={"cluster": job.cluster.model_copy(update={"partitions": partitions})})
    try:
        solve(wider, rows, seq_len, hints=False)
    except UserError:
        return False
    return True


def _fits_on(job: JobConfig, partition: str, rows: int | None, seq_len: int) -> bool:
    """Re-run the solver on another partition: a fix is suggested only when it fits there."""
    moved = job.model_copy(update={"cluster": job.cluster.model_copy(update={"partition": partition})})
    try:
        solve(moved, rows, min(seq_len, guards.max_seq_length(moved, guards.training_option(moved))), hints=False)
    except UserError:
        return False
    return True


def _shorter_fit(job: JobConfig, seq_len: int) -> int | None:
    """The longest power-of-2 sequence length below `seq_len` (at least 128) that fits, re-solved."""
    length = 1 << (max(seq_len - 1, 1).bit_length() - 1)
    while length >= 128:
        data = job.data.model_copy(update={"max_seq_length": length})
        try:
            solve(job.model_copy(update={"data": data}), None, length, hints=False)
            return length
        except UserError:
            length //= 2
    return None


def _value(cand: Candidate, name: str) -> str:
    return str(getattr(cand, name)).lower()


def _decisions(fixed: dict, c: Candidate, found: Search, model: MemoryModel, gpu: str, limit: float, cpu: bool, batch: int) -> list[str]:
    """One line per `auto` field: the value and why."""
    smaller = [w for w in found.least_by_world if w < c.world]
    why_gpus = f"the fewest GPUs that fit ({c.need / GIB:.1f} of {limit / GIB:.1f} GiB usable)"
    if cpu:
        why_gpus = "one worker process on a CPU partition"
    elif smaller:
        why_gpus += f"; {max(smaller)} GPU(s) need at least {found.least_by_world[max(smaller)] / GIB:.1f} GiB"
    if skipped := sorted(w for w in set(found.indivisible) if w < c.world):
        why_gpus += f"; {', '.join(map(str, skipped))} GPU(s) do not divide method.batch_size ({batch})"
    out = []
    if fixed["nodes"] is None:
        out.append(f"resources.nodes={c.nodes}: {why_gpus}")
    if fixed["gpus_per_node"] is None:
        out.append(f"resources.gpus_per_node={c.gpus_per_node}: {why_gpus}")
    if fixed["zero_stage"] is None:
        if c.world == 1 or cpu:
            why = "a single process has nothing to shard" if c.world == 1 else "CPU workers run without DeepSpeed"
        elif c.zero_stage == 0:
            why = "model states fit unsharded"
        else:
            lower = model.total(c.zero_stage - 1, c.world, 1, c.micro_batch_size, c.gradient_checkpointing)
            why = f"stage {c.zero_stage - 1} needs {lower / GIB:.1f} GiB per GPU with the same micro batch and recompute"
        out.append(f"resources.zero_stage={c.zero_stage}: {why}")
    if fixed["gradient_checkpointing"] is None:
        why = "activations fit without recompute"
        if c.gradient_checkpointing:
            why = f"without recompute it needs {model.total(c.zero_stage, c.world, 1, c.micro_batch_size, False) / GIB:.1f} GiB per GPU"
        out.append(f"resources.gradient_checkpointing={str(c.gradient_checkpointing).lower()}: {why}")
    if fixed["micro_batch_size"] is None:
        steps = batch // (c.micro_batch_size * c.world)
        larger = [m for m in MICRO_BATCHES if m > c.micro_batch_size and batch % (m * c.world) == 0]
        if larger:
            need = model.total(c.zero_stage, c.world, 1, min(larger), c.gradient_checkpointing)
            why = f"micro batch {min(larger)} needs {need / GIB:.1f} GiB per GPU"
        else:
            why = f"the largest power of 2 up to {MICRO_BATCHES[0]} dividing the {batch // c.world} sequences per rank"
        out.append(f"resources.micro_batch_size={c.micro_batch_size}: {why}; gradient_accumulation_steps={steps}")
    return out
