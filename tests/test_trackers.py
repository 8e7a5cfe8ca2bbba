"""TensorBoard, MLflow and Weights & Biases each write their files into the run folder, with no network."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase
for tracker in ("tensorboard", "mlflow", "wandb"):
    pytest.importorskip(tracker)

sys.path.insert(0, str(Path(__file__).parent))

from plan_factory import log_tail, make_run, read_status, run_runtime

NO_NETWORK = {  # every address these libraries might reach is a closed local port
    "WANDB_BASE_URL": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    tiny = str(tmp_path_factory.getbasetemp() / "tiny-llama-v1")
    run_dir = tmp_path_factory.mktemp("trackers") / "tracked"
    overrides = {
        "method": {"max_steps": 4, "learning_rate": 3e-3},
        "training": {"eval_steps": 2, "save_steps": 4, "report_to": ["tensorboard", "mlflow", "wandb"]},
        "eval": {"max_rows": 2, "before": False},
    }
    make_run(run_dir, "lora", overrides, model_path=tiny, micro_batch_size=4)
    saved = {key: os.environ.get(key) for key in NO_NETWORK}
    os.environ.update(NO_NETWORK)
    try:
        code = run_runtime(run_dir)
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    assert code == 0, log_tail(run_dir, 60)
    assert read_status(run_dir)["state"] == "completed"
    return run_dir


@pytest.mark.train
def test_tensorboard_writes_event_files(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (tracked_run / "tensorboard").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert "train/loss" in accumulator.Tags()["scalars"]
    assert [e.step for e in accumulator.Scalars("train/loss")] == [1, 2, 3, 4]


@pytest.mark.train
def test_mlflow_records_a_run_in_the_run_folder(tracked_run, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    client = mlflow.MlflowClient(tracking_uri=(tracked_run / "mlruns").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "demo-lora"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tracked"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]


def wandb_records(path: Path) -> list:
    """The protobuf records of a .wandb file: W&B's LevelDB-style log (7-byte headers, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, payloads = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            payloads.append(payload)
        elif kind in (2, 3):  # first, middle
            pending = (b"" if kind == 2 else pending) + payload
        elif kind == 4:  # last
            payloads.append(pending + payload)
    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


@pytest.mark.train
def test_wandb_runs_offline_with_the_run_id_and_plan_as_config(tracked_run):
    (offline,) = (tracked_run / "wandb").glob("offline-run-*-tracked")
    records = wandb_records(offline / "run-tracked.wandb")
    kinds = [record.WhichOneof("record_type") for record in records]
    (run,) = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    assert (run.run_id, run.project) == ("tracked", "ftc-default")
    assert run.display_name == "default/tiny-llama-demo-lora@tracked"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["ftc_run_id"] == "tracked"
    plan = config["ftc_plan"]
    assert plan["run_dir"] == str(tracked_run)
    assert plan["job"]["training"]["report_to"] == ["tensorboard", "mlflow", "wandb"]
    configs = [record.config for record in records if record.WhichOneof("record_type") == "config"]
    later = {item.key for config in configs for item in config.update}
    assert "learning_rate" in later  # transformers' own arguments joined the same run
    losses = [json.loads(item.value_json) for record in records if record.WhichOneof("record_type") == "history"
              for item in record.history.item if (item.key or "/".join(item.nested_key)) == "train/loss"]
    assert len(losses) == 4 and "exit" in kinds  # every step logged, and the run closed
