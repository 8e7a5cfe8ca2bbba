"""NVIDIA's own Customizer client (nemo-microservices) drives `ftc serve` on the local executor: every
response parses into the SDK's models, with pydantic's warnings as errors. The same calls run on
the test Slurm in test_sdk_slurm.py."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import time
import warnings
from pathlib import Path

import pytest
import yaml
from api_server import TOKEN, start

nemo = pytest.importorskip("nemo_microservices")  # dev extra; the login-node floor environment has no SDK

from nemo_microservices.types import CustomizationConfig, CustomizationTarget, Model  # noqa: E402
from nemo_microservices.types.customization import (  # noqa: E402
    CustomizationJob,
    CustomizationStatusDetails,
    JobWarning,
)

TINY = "ftc/tiny-llama@v1.0.0+CPU"
REPO = Path(__file__).resolve().parents[1]
FINAL = ("completed", "failed", "cancelled")


def conform(obj):
    """The SDK's model of a response, dumped and validated again as the SDK types it; a value the
    SDK types otherwise (a float for an int, a string for a warning object) raises here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        type(obj).model_validate(obj.model_dump(mode="json", warnings="error"))
        obj.to_dict(), obj.to_json()
    return obj


def sdk_client(server):
    return nemo.NeMoMicroservices(base_url=server.base, default_headers={"Authorization": f"Bearer {TOKEN}"},
                                  max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory, model_folders) -> Path:
    """The site's folder for users' models (cluster.model_paths), holding one tiny Llama."""
    root = tmp_path_factory.mktemp("user-models")
    shutil.copytree(model_folders["llama-tiny"]["path"], root / "llama-tiny")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_root):
    # No operator max_steps: what a job runs is what its body says (and the recipe, where the body is silent).
    tmp = tmp_path_factory.mktemp("sdk")
    site = tmp / "site" / "cluster"
    site.mkdir(parents=True)
    local = yaml.safe_load((REPO / "conf" / "cluster" / "local.yaml").read_text())
    (site / "local.yaml").write_text(yaml.safe_dump({**local, "model_paths": [str(models_root)]}))
    srv = start(tmp, "--rate", "0", "--creates-per-min", "600", "cluster=local", "eval.max_rows=16",
                env={"FTC_SITE_CONFIG": str(site.parent), "FTC_CACHE": str(tmp / "cache")})  # its own tiny model
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with sdk_client(server) as c:
        yield c


def poll(client, job_id: str, states=FINAL, timeout: float = 900) -> CustomizationStatusDetails:
    """The SDK user's loop: jobs.status until a final state, every answer typed as the SDK's."""
    deadline = time.monotonic() + timeout
    while True:
        status = conform(client.customization.jobs.status(job_id))
        assert isinstance(status, CustomizationStatusDetails)
        if status.status in states:
            return status
        assert time.monotonic() < deadline, f"{job_id} still {status.status}"
        time.sleep(1)


def lora(**hyper) -> dict:
    return {"training_type": "sft", "finetuning_type": "lora", "batch_size": 16, "learning_rate": 0.005,
            "lora": {"adapter_dim": 8, "adapter_dropout": 0.1}, **hyper}


def test_configs_and_targets(client):
    configs = client.customization.configs.list()
    assert all(isinstance(conform(c), CustomizationConfig) for c in configs.data)
    assert TINY.partition("/")[2] in [c.name for c in configs.data]
    config = conform(client.customization.configs.retrieve("tiny-llama@v1.0.0+CPU", namespace="ftc"))
    assert config.target == "ftc/tiny-llama@v1.0.0" and {o.finetuning_type for o in config.training_options} == {
        "lora", "all_weights"}
    targets = client.customization.targets.list()
    assert all(isinstance(conform(t), CustomizationTarget) for t in targets.data)
    target = conform(client.customization.targets.retrieve("tiny-llama@v1.0.0", namespace="ftc"))
    assert (target.base_model, target.num_parameters, target.status, target.enabled) == (
        "ftc/tiny-llama", 123200, "ready", True)
    with pytest.raises(nemo.NotFoundError):
        client.customization.targets.retrieve("no-such-model@v1", namespace="ftc")
    with pytest.raises(nemo.NotFoundError):
        client.customization.configs.retrieve("tiny-llama@v9+CPU", namespace="ftc")


def test_customizers_refusals(client):
    with pytest.raises(nemo.BadRequestError) as info:
        client.customization.jobs.create(config="ftc/tiny-llama", dataset={"name": "demo"}, hyperparameters=lora())
    assert info.value.body["detail"] == "Version is not specified in the config URN"
    with pytest.raises(nemo.UnprocessableEntityError) as info:
        client.customization.jobs.create(config=TINY, dataset={"name": "demo"}, hyperparameters=lora(),
                                         output_model="my-tiny-lora")
    assert info.value.body["detail"].startswith("output_model: must be namespace/name")
    with pytest.raises(nemo.NotFoundError):
        client.customization.jobs.retrieve("0123456789")


@pytest.mark.train
def test_jobs_from_create_to_output_model(client, server):
    jobs = client.customization.jobs
    integration = [{"type": "wandb", "wandb": {"project": "email", "entity": "team-a", "tags": ["sdk"]}}]
    made = {
        # epochs=1 on a model whose recipe says max_steps: 300: one epoch runs, and the job says why
        "lora": jobs.create(config=TINY, dataset={"name": "demo", "namespace": "default"}, output_model="default/my-tiny-lora",
                            hyperparameters=lora(epochs=1), integrations=integration),
        "sft": jobs.create(config=TINY, dataset="demo", hyperparameters={
            "training_type": "sft", "finetuning_type": "all_weights", "max_steps": 3, "batch_size": 8}),
        "dpo": jobs.create(config=TINY, dataset={"name": "demo"}, hyperparameters={
            "training_type": "dpo", "finetuning_type": "lora", "max_steps": 3, "batch_size": 8}),
    }
    for job in made.values():
        assert isinstance(conform(job), CustomizationJob) and job.status in ("created", "pending", "running")
    job = made["lora"]
    assert job.output_model == f"default/my-tiny-lora@{job.id}"
    assert job.dataset.name == "demo" and job.dataset.namespace == "default"
    assert job.ownership.created_by == pwd.getpwuid(os.getuid()).pw_name  # Customizer's Ownership: the folder's owner
    assert (job.hyperparameters.epochs, job.hyperparameters.max_steps) == (1, None)
    assert isinstance(job.warnings[0], JobWarning)
    assert job.warnings[0].message.startswith("method.max_steps=null: method.epochs=1 was set")
    finals = {kind: poll(client, j.id) for kind, j in made.items()}
    assert {kind: s.status for kind, s in finals.items()} == dict.fromkeys(made, "completed"), server.log.read_text()[-3000:]
    status = finals["lora"]
    assert status.epochs_completed == 1 and status.steps_completed == 25  # 400 rows / 16 per step: one epoch
    assert status.percentage_done == 100.0 and isinstance(status.best_epoch, int)
    assert status.metrics.metrics.train_loss and status.status_logs[-1].message == "completed"
    assert finals["sft"].steps_completed == finals["dpo"].steps_completed == 3

    done = conform(jobs.retrieve(job.id))
    assert done.status == "completed" and done.status_details.epochs_completed == 1
    assert list((Path(done.model_extra["run_dir"]) / "wandb").glob("offline-run-*"))  # W&B, offline in the run folder
    page = jobs.list(filter={"status": "completed"}, sort="-created_at", page=1, page_size=2)
    assert all(isinstance(conform(j), CustomizationJob) for j in page.data)
    assert len(page.data) == 2 and page.pagination.total_results == 3 and page.pagination.total_pages == 2
    rest = jobs.list(filter={"status": "completed"}, sort="-created_at", page=2, page_size=2)
    assert {j.id for j in page.data} | {j.id for j in rest.data} == {j.id for j in made.values()}
    assert [j.id for j in jobs.list(filter={"training_type": "dpo"}).data] == [made["dpo"].id]
    oldest_first = jobs.list(filter={"status": "completed"}, sort="created_at").data
    assert [j.created_at for j in oldest_first] == sorted(j.created_at for j in made.values())

    models = client.models.list()
    assert all(isinstance(conform(m), Model) for m in models.data)
    assert f"my-tiny-lora@{job.id}" in [m.name for m in models.data]
    output = conform(client.models.retrieve(f"my-tiny-lora@{job.id}", namespace="default"))
    assert output.peft.finetuning_type == "lora" and output.base_model == "ftc/tiny-llama@v1.0.0"
    assert output.artifact.files_url.startswith("file://") and output.artifact.status == "upload_completed"


@pytest.mark.train
def test_cancel_a_running_job(client):
    job = client.customization.jobs.create(config=TINY, dataset={"name": "demo"}, hyperparameters=lora(epochs=10_000))
    assert poll(client, job.id, states=("running", *FINAL), timeout=300).status == "running"
    deadline = time.monotonic() + 300
    while not (status := client.customization.jobs.status(job.id)).steps_completed and time.monotonic() < deadline:
        assert status.status == "running", status.model_extra
        time.sleep(0.5)
    cancelled = conform(client.customization.jobs.cancel(job.id))
    assert isinstance(cancelled, CustomizationJob) and cancelled.status == "cancelled"
    assert poll(client, job.id).status == "cancelled"


@pytest.mark.train  # its job starts the runtime
def test_a_registered_target_outlives_the_server(tmp_path, model_folders):
    """POST targets keeps the folder in the output root's registered-targets.json: a restarted server lists it.
    The file is input: entries outside the site's model paths or not absolute paths are left out, and a link
    planted as the file is one warning line; the server serves either way."""
    models = tmp_path / "models"
    nested = models / "team" / "llama-v2"  # two levels down: the site's scan does not find it, POST does
    shutil.copytree(model_folders["llama-tiny"]["path"], nested)
    site = tmp_path / "site" / "cluster"
    site.mkdir(parents=True)
    local = yaml.safe_load((REPO / "conf" / "cluster" / "local.yaml").read_text())
    (site / "local.yaml").write_text(yaml.safe_dump({**local, "model_paths": [str(models)]}))
    env = {"FTC_SITE_CONFIG": str(site.parent), "FTC_CACHE": str(tmp_path / "cache")}

    def serving():
        return start(tmp_path / "api", "--rate", "0", "cluster=local", env=env)

    def listed(server) -> list[str]:
        with sdk_client(server) as client:
            return [t.model_path for t in client.customization.targets.list().data if t.namespace == "local"]

    server = serving()
    try:
        assert listed(server) == []
        with sdk_client(server) as client:
            conform(client.customization.targets.create(model_path=str(nested), num_parameters=1, precision="fp32"))
        assert listed(server) == [str(nested)]
    finally:
        server.stop()
    saved = server.root / "registered-targets.json"
    for content, listing, warning in (
            (saved.read_text(), [str(nested)], None),  # as the first server left it
            (json.dumps({"model_paths": ["/etc", str(nested), "relative", 7, str(nested) + "\n"]}), [str(nested)],
             "model_paths[2]: not a printable absolute path; left out"),
            (json.dumps({"model_paths": str(nested)}), [], "model_paths: not a list"),
            ("{not json", [], "registered-targets.json: not JSON")):
        saved.write_text(content)
        server = serving()
        try:
            assert listed(server) == listing, content
        finally:
            server.stop()
        log = server.log.read_text()
        assert (warning in log) if warning else "warning" not in log, log
    saved.unlink()
    saved.symlink_to(tmp_path / "planted.json")
    (tmp_path / "planted.json").write_text(json.dumps({"model_paths": [str(nested)]}))
    server = serving()
    try:
        assert listed(server) == []
    finally:
        server.stop()
    assert "ftc serve: warning:" in server.log.read_text() and "Traceback" not in server.log.read_text()


def test_a_users_model_as_a_target(client, server, models_root, model_folders, tmp_path):
    """POST targets reads the folder (what is typed is checked against it); configs and jobs then name it,
    compiled as `model=custom model.path=DIR` is on the command line."""
    targets = client.customization.targets
    folder = str(models_root / "llama-tiny")
    listed = [t for t in targets.list().data if t.namespace == "local"]  # under the site's model paths: listed
    assert [t.model_path for t in listed] == [folder]
    made = conform(targets.create(model_path=folder, num_parameters=1, precision="fp16"))
    assert isinstance(made, CustomizationTarget) and made.name.startswith("llama-tiny@")
    assert made.num_parameters == model_folders["llama-tiny"]["num_parameters"] and made.precision == "fp32"
    assert made.model_extra["warning_message"].startswith("num_parameters: 1 given, ")
    assert conform(targets.retrieve(made.name, namespace="local")).model_path == folder
    urn = f"local/{made.name}+CPU"
    assert urn.partition("/")[2] in [c.name for c in client.customization.configs.list().data]
    with pytest.raises(nemo.UnprocessableEntityError) as info:  # outside the site's model paths
        outside = tmp_path / "elsewhere"
        shutil.copytree(folder, outside)
        targets.create(model_path=str(outside), num_parameters=1, precision="bf16")
    assert "is outside the folders cluster local allows for models" in info.value.body["detail"]
    for bad in ("", "relative/path", "/no/such/folder", "/etc", folder + "\n", "x" * 5000, folder + "'",
                folder + "\\", str(models_root), folder + "/../../../etc"):
        with pytest.raises(nemo.UnprocessableEntityError):
            targets.create(model_path=bad, num_parameters=1, precision="bf16")
    for body in ({"model_path": 3}, {"model_path": [folder]}, {"model_path": folder, "num_parameters": "1"},
                 {"model_path": folder, "precision": "fp64"}, {"model_path": folder, "num_parameters": True},
                 {"model_path": folder, "num_parameters": 10**30}, {"model_path": folder, "overrides": ["x"]}, {}):
        r = server.post("/v1/customization/targets", json=body)
        assert r.status_code == 422 and "\n" not in r.json()["detail"], (body, r.text)
    r = server.post("/v1/customization/targets", content='{"model_path": "%s", "num_parameters": NaN}' % folder,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    with pytest.raises(nemo.NotFoundError):
        client.customization.jobs.create(config="local/llama-tiny@000000000000+CPU", dataset="demo",
                                         hyperparameters=lora(max_steps=2))
    job = conform(client.customization.jobs.create(config=urn, dataset="demo", hyperparameters=lora(max_steps=2)))
    assert job.config == urn and job.output_model == f"default/llama-tiny-demo-lora@{job.id}"
    same = conform(client.customization.jobs.retrieve(job.id))
    assert f"model      {urn}" in same.model_extra["plan_summary"]
    done = poll(client, job.id)
    assert done.status == "completed" and done.steps_completed == 2, done.model_extra  # trained from the user's folder
