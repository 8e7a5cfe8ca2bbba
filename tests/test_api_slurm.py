"""The job API against the real test Slurm of .ci/slurm.sh: create, poll to a terminal state, cancel an array."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from api_server import lora_body, start

from slurm_fixtures import CI_SITE, require_slurm, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.train]
JOBS = "/v1/customization/jobs"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_slurm()
    srv = start(tmp_path_factory.mktemp("api-slurm"), "--rate", "0", "cluster=ci", "cluster.partition=cpu",
                "method.max_steps=40", env={"FTC_SITE_CONFIG": str(CI_SITE)})
    yield srv
    srv.stop()


def test_a_job_runs_on_slurm_to_completed(server):
    r = server.post(JOBS, json=lora_body(learning_rate=0.003))
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status_details"]["job"].isdigit()  # a Slurm job id
    assert job["status"] in ("pending", "running", "completed")
    assert server.post(JOBS, json=lora_body(learning_rate=0.003)).status_code in (200, 409)
    status = server.wait_for(job["id"], timeout=600)
    assert status["status"] == "completed", (status, server.log.read_text()[-2000:])
    assert status["percentage_done"] == 100.0 and status["steps_completed"] == 40
    assert status["train_loss"] is not None and status["epochs"]
    sacct = slurm("sacct", "-n", "-X", "-P", "-j", status["job"], "-o", "State", check=True).stdout
    assert "COMPLETED" in sacct


def submit_array(server) -> str:
    """A two-point sweep from the CLI into the server's output root: one Slurm array; its id."""
    proc = subprocess.run(
        [sys.executable, "-m", "ftc", "-m", "cluster=ci", "cluster.partition=cpu", "model=tiny", "method=lora",
         "data=demo", "method.learning_rate=1e-3,2e-3", "method.max_steps=5000"],
        check=False, capture_output=True, text=True, timeout=120,
        env={**os.environ, "FTC_OUTPUT_ROOT": str(server.root), "FTC_SITE_CONFIG": str(CI_SITE)})
    assert proc.returncode == 0, proc.stderr
    return re.search(r"as Slurm job array (\d+)", proc.stdout).group(1)


def test_cancel_an_array_by_its_slurm_id(server):
    array = submit_array(server)
    r = server.post(f"{JOBS}/{array}/cancel")
    assert r.status_code == 200, r.text
    ids = [j["id"] for j in r.json()["data"]]
    assert len(ids) == 2
    deadline = time.monotonic() + 120
    while True:
        states = [server.get(f"{JOBS}/{i}/status").json()["status"] for i in ids]
        if states == ["cancelled", "cancelled"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == ["cancelled", "cancelled"]
    assert "CANCELLED" in slurm("sacct", "-n", "-X", "-P", "-j", array, "-o", "State", check=True).stdout
