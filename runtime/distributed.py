"""Process-group plumbing shared by every rank: one place decides backend, device and teardown.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; a plain `python -m ftc.runtime` is a world of one.
On CPU everything runs over gloo, and DeepSpeed must be told so before it is imported.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def has_gpu() -> bool:
    return torch.cuda.is_available()


def backend() -> str:
    return "nccl" if has_gpu() else "gloo"


def die_with_parent() -> None:
    """A worker started by torchrun runs in a session of its own: without this, killing torchrun
    (or the ftc command above it) leaves it training. PR_SET_PDEATHSIG kills it with its parent; a
    parent already gone before the call is caught by the parent pid changing."""
    import ctypes
    import signal

    if "LOCAL_RANK" not in os.environ:  # a plain `python -m ftc.runtime`: the shell is its parent
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent or parent == 1:
        os._exit(1)


def world_problem(topology) -> str | None:
    """The world torchrun gave against the one the plan was made for: a plan for 2 workers run as one
    process would train with half the global batch while its records say otherwise."""
    world = world_size()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if world == topology.world_size and local == topology.gpus_per_node:
        return None
    planned = topology.micro_batch_size * topology.gradient_accumulation_steps
    return (f"the plan is for {topology.world_size} processes ({topology.nodes} node(s) x {topology.gpus_per_node}), "
            f"this launch has {world} ({local} on this node): the global batch would be {planned * world}, "
            f"not the planned {planned * topology.world_size}; launch it with the plan's job script")


def prepare_environment() -> None:
    """Settings that must exist before DeepSpeed or accelerate are imported."""
    if not has_gpu():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def init(use_deepspeed: bool) -> None:
    """Join the process group before any model is built.

    ZeRO-3 under the HF Trainer on CPU needs DeepSpeed's own init with gloo first, or its batch
    arithmetic check sees a world of one.
    """
    if world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return
    if has_gpu():
        torch.cuda.set_device(local_rank())
    if use_deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend())
        configure_accelerate(use_deepspeed)
    else:
        dist.init_process_group(backend=backend())


def needs_configured_state(use_deepspeed: bool) -> bool:
    return use_deepspeed and world_size() > 1 and not has_gpu()


def configure_accelerate(use_deepspeed: bool) -> None:
    """DeepSpeed on CPU: accelerate would pick no backend and count a world of one, so set its state first.

    The TrainingArguments then adopt it (accelerator_config use_configured_state).
    """
    if not needs_configured_state(use_deepspeed):
        return
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one: all ranks then act at the same step."""
    if not active():
        return flag
    device = torch.device("cuda", local_rank()) if backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def from_main(value):
    """Rank 0's `value` on every rank (any picklable object): one rank decides, all act on it."""
    if not active():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0, device=torch.device("cuda", local_rank()) if backend() == "nccl" else None)
    return box[0]


def finish() -> None:
    """Leave the group cleanly; skipping this may abort the process on exit."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
