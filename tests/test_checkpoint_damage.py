"""A damaged latest checkpoint is passed over: the run resumes from the one before and ends exactly where an
undamaged resume from that step ends; a run that trains into NaN fails and writes no outputs.

One run is killed right after its checkpoint-20 is complete; each case below works on a copy of its
checkpoints in a run folder of its own (its own plan.json: the runtime refuses a plan of another folder).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

sys.path.insert(0, str(Path(__file__).parent))

from test_resume import assert_same_weights, wait_for

from ftc.runtime import checkpoints

from plan_factory import final_weights, kill_group, log_tail, make_run, read_status, run_runtime, start_runtime

OVERRIDES = {
    "method": {"max_steps": 24, "learning_rate": 3e-3},
    "training": {"eval_steps": 100, "save_steps": 10},
    "eval": {"max_rows": 2, "before": False},
}
KINDS = {
    "adapter weights": "adapter_model.safetensors",
    "optimizer": "optimizer.pt",
    "scheduler": "scheduler.pt",
    "rng state": "rng_state.pth",
    "trainer_state": "trainer_state.json",
    "manifest": checkpoints.MANIFEST,
}
MODES = ("overwrite", "truncate", "delete")
# Every kind is trained through once, the modes taking turns; every kind x mode is verified without training.
TRAINED = [(kind, MODES[i % 3]) for i, kind in enumerate(KINDS)]


def damage(path: Path, mode: str) -> None:
    if mode == "delete":
        path.unlink()
        return
    size = path.stat().st_size
    if mode == "truncate":
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
        return
    count = min(4000, max(1, size // 2))
    with open(path, "r+b") as handle:  # 0xFF bytes: NaN as float32, nonsense as JSON or pickle
        handle.seek(size // 4)
        handle.write(b"\xff" * count)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "tiny-llama-v1")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, tiny) -> Path:
    """A run killed right after checkpoint-20 is complete: checkpoints 10 and 20, both intact."""
    run_dir = tmp_path_factory.mktemp("damage") / "interrupted"
    make_run(run_dir, "lora", OVERRIDES, model_path=tiny, micro_batch_size=4)
    proc = start_runtime(run_dir)
    wait_for(lambda: checkpoints.is_complete(run_dir / "checkpoints" / "checkpoint-20"), proc)
    kill_group(proc, signal.SIGKILL)
    found = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if checkpoints.is_complete(p))
    assert found == ["checkpoint-10", "checkpoint-20"], found
    return run_dir


def copy_run(source: Path, run_dir: Path, tiny: str) -> Path:
    make_run(run_dir, "lora", OVERRIDES, model_path=tiny, micro_batch_size=4)
    shutil.copytree(source / "checkpoints", run_dir / "checkpoints")
    shutil.copy(source / "metrics.jsonl", run_dir / "metrics.jsonl")
    return run_dir


def finish(run_dir: Path) -> dict:
    code = run_runtime(run_dir)
    assert code == 0, log_tail(run_dir, 60)
    assert read_status(run_dir)["state"] == "completed"
    return final_weights(run_dir)


@pytest.fixture(scope="module")
def resumed_from_10(interrupted, tmp_path_factory, tiny) -> dict:
    """The reference: checkpoint-20 never written, the run resumes from checkpoint-10."""
    run_dir = copy_run(interrupted, tmp_path_factory.mktemp("damage") / "reference", tiny)
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-20")
    weights = finish(run_dir)
    assert f"resuming from {run_dir / 'checkpoints' / 'checkpoint-10'}" in log_tail(run_dir, 400)
    return weights


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_damage_is_found_and_the_previous_checkpoint_chosen(interrupted, tmp_path, tiny, kind, mode):
    run_dir = copy_run(interrupted, tmp_path / "run", tiny)
    latest = run_dir / "checkpoints" / "checkpoint-20"
    assert checkpoints.verify(latest) is None
    damage(latest / KINDS[kind], mode)
    chosen, notes = checkpoints.choose_resume(run_dir)
    assert chosen == run_dir / "checkpoints" / "checkpoint-10"
    assert len(notes) == 1 and "checkpoint-20" in notes[0], notes
    if kind != "manifest":
        assert KINDS[kind] in notes[0]
        assert (run_dir / "checkpoints" / checkpoints.DAMAGED / "checkpoint-20").is_dir()
    assert not latest.exists()


@pytest.mark.train
@pytest.mark.parametrize(("kind", "mode"), TRAINED)
def test_a_damaged_checkpoint_resumes_from_the_previous_one(interrupted, resumed_from_10, tmp_path, tiny, kind, mode):
    import torch

    run_dir = copy_run(interrupted, tmp_path / "run", tiny)
    damage(run_dir / "checkpoints" / "checkpoint-20" / KINDS[kind], mode)
    weights = finish(run_dir)
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())
    assert_same_weights(weights, resumed_from_10)
    log = log_tail(run_dir, 400)
    assert f"resuming from {run_dir / 'checkpoints' / 'checkpoint-10'}" in log
    assert "checkpoint-20" in log and "warning" in log
    skipped = read_status(run_dir)["skipped_checkpoints"]
    assert len(skipped) == 1 and "checkpoint-20" in skipped[0]


def nan_adapter(checkpoint: Path) -> None:
    """Every adapter weight NaN, the manifest rewritten to match: damage no digest can see."""
    from safetensors.torch import load_file, save_file

    path = checkpoint / "adapter_model.safetensors"
    tensors = {name: torch_full_nan(t) for name, t in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    state = checkpoints.saved_state(checkpoint)
    (checkpoint / checkpoints.MANIFEST).unlink()
    checkpoints.mark_complete(checkpoint, state)


def torch_full_nan(tensor):
    import torch

    return torch.full_like(tensor, float("nan"))


@pytest.mark.train
def test_non_finite_loss_fails_the_run_without_outputs(interrupted, tmp_path, tiny):
    run_dir = copy_run(interrupted, tmp_path / "run", tiny)
    nan_adapter(run_dir / "checkpoints" / "checkpoint-20")
    code = run_runtime(run_dir)
    assert code == 1, log_tail(run_dir, 60)
    status = read_status(run_dir)
    assert status["state"] == "failed"
    assert "training loss is nan at step 21" in status["error"] and "no outputs written" in status["error"]
    assert not (run_dir / "output").exists() and not (run_dir / "outputs.json").exists()
    assert "error: training loss is nan" in log_tail(run_dir)
    complete = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if checkpoints.is_complete(p))
    assert complete == ["checkpoint-10", "checkpoint-20"]  # nothing saved after the NaN
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 21 and metrics[-1]["train_loss"] is None


def test_non_finite_weights_are_named():
    import torch

    from ftc.runtime.guard import nonfinite_weights

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert nonfinite_weights(model) == []
    with torch.no_grad():
        model[1].bias[0] = float("inf")
    model[0].weight.requires_grad_(False)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    assert nonfinite_weights(model) == ["1.bias"]
    assert nonfinite_weights(model, trainable_only=False) == ["0.weight", "1.bias"]
