"""TensorBoard, MLflow and Weights & Biases each write their files into the run folder, with no network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
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
def test_mlflow_records_a_run_in_the_run_folder(tracked_run):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=(tracked_run / "mlruns").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "demo-lora"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tracked"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]


@pytest.mark.train
def test_wandb_runs_offline_with_the_plan_as_config(tracked_run):
    import yaml

    (offline,) = (tracked_run / "wandb").glob("offline-run-*-tracked")
    assert (offline / "run-tracked.wandb").stat().st_size > 0
    config = yaml.safe_load((offline / "files" / "config.yaml").read_text())
    assert config["ftc_run_id"]["value"] == "tracked"
    plan = config["ftc_plan"]["value"]
    assert plan["run_dir"] == str(tracked_run) and plan["job"]["training"]["report_to"] == ["tensorboard", "mlflow", "wandb"]
    assert "learning_rate" in config  # transformers' own arguments joined the same run
    from wandb.sdk.internal.datastore import DataStore

    store = DataStore()
    store.open_for_scan(str(offline / "run-tracked.wandb"))
    records = []
    while (data := store.scan_data()) is not None:
        records.append(data)
    assert any(b"train/loss" in record for record in records)
