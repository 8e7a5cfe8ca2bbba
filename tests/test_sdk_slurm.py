"""NVIDIA's Customizer client against `ftc serve` on the test Slurm of .ci/slurm.sh: configs, a job
polled to completed, its output model, and a whole job array cancelled by its Slurm id."""

from __future__ import annotations

import pytest
from slurm_fixtures import slurm

pytest.importorskip("nemo_microservices")

from nemo_microservices.types.customization import CustomizationJob  # noqa: E402
from test_api_slurm import server, submit_array  # noqa: E402,F401  (the same server: cluster=ci, the operator's method.max_steps=40)
from test_sdk import TINY, client, conform, lora, poll  # noqa: E402,F401

pytestmark = [pytest.mark.slurm, pytest.mark.train]


def test_a_job_on_slurm_through_the_sdk(client, server):
    assert conform(client.customization.configs.retrieve("tiny-llama@v1.0.0+CPU", namespace="ftc")).name
    job = conform(client.customization.jobs.create(config=TINY, dataset={"name": "demo"}, output_model="team-a/on-slurm",
                                                   hyperparameters=lora(learning_rate=0.002)))
    assert job.status_details.model_extra["job"].isdigit()  # a Slurm job id
    status = poll(client, job.id, timeout=600)
    assert status.status == "completed" and status.steps_completed == 40, (status.model_extra, server.log.read_text()[-2000:])
    assert "COMPLETED" in slurm("sacct", "-n", "-X", "-P", "-j", status.model_extra["job"], "-o", "State", check=True).stdout
    assert [j.id for j in client.customization.jobs.list(filter={"status": "completed"}).data] == [job.id]
    model = conform(client.models.retrieve(f"on-slurm@{job.id}", namespace="team-a"))
    assert model.artifact.files_url.endswith("/output")


def test_cancel_an_array_through_the_sdk(client, server):
    array = submit_array(server)
    cancelled = conform(client.customization.jobs.cancel(array))
    assert isinstance(cancelled, CustomizationJob)
    ids = [j["id"] for j in cancelled.model_extra["data"]]
    assert len(ids) == 2 and cancelled.id == ids[0]
    assert [poll(client, i, timeout=120).status for i in ids] == ["cancelled", "cancelled"]
    assert "CANCELLED" in slurm("sacct", "-n", "-X", "-P", "-j", array, "-o", "State", check=True).stdout
