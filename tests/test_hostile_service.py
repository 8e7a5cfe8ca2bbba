"""The hostile run folders of tests/hostile/records.yaml through every API endpoint and the dashboard.

A run folder is data: whatever is planted there (a log path in job.json, a record linked to the
token file, a FIFO, /dev/zero, a huge file, wrong types in each plan.json field, a look-alike
copy), every endpoint answers 200, 404, 409 or 422, never 500 and never a hang, shows no byte of
the file outside the run folder, and signals nothing. The real server keeps `/health` answering
while 50 requests hit a run whose log is a FIFO.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from api_server import TOKEN, start
from fastapi.testclient import TestClient
from test_hostile_records import CASES, RUN_ID, SECRET, base, plant  # noqa: F401 (base is a fixture)

from ftc.compiler.api.app import create_app
from ftc.compiler.api.datasets import DatasetRoots
from ftc.compiler.api.limits import Limits
from ftc.compiler.api.service import JobService

JOBS = "/v1/customization/jobs"
READS = ("/", f"/runs/{RUN_ID}", JOBS, f"{JOBS}?filter[status]=running", f"{JOBS}/{RUN_ID}", f"{JOBS}/{RUN_ID}/status")
PLANTED = [c for c in CASES if c.get("write") or c.get("plan") or c.get("lookalike")]


@pytest.mark.parametrize("case", PLANTED, ids=[c["case"] for c in PLANTED])
def test_every_endpoint_survives_the_case(case, base, tmp_path, monkeypatch):  # noqa: F811
    root = tmp_path / "runs"
    plant(root, base, case)
    monkeypatch.setenv("PATH", f"{base['bin']}{os.pathsep}{os.environ['PATH']}")
    calls = base["base"] / "slurm-calls.log"
    calls.unlink(missing_ok=True)
    app = create_app(JobService(["cluster=example"], DatasetRoots(()), root), TOKEN, Limits(requests_per_s=0))
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        answers = [(path, client.get(path)) for path in READS]
        answers.append(("cancel", client.post(f"{JOBS}/{RUN_ID}/cancel")))
    for path, r in answers:
        assert r.status_code in (200, 404, 409, 422), f"{path}: {r.status_code} {r.text[:500]}"
        assert SECRET not in r.text, path
        assert "\x00" * 64 not in r.text, path
        if case.get("not_says") and path.endswith("/status"):
            assert r.json().get("status") != case["not_says"], r.text
    if "names 2 run folders" in case["says"]:
        assert dict(answers)[f"{JOBS}/{RUN_ID}"].status_code == 409
    scancels = [line for line in (calls.read_text().splitlines() if calls.exists() else []) if line.startswith("scancel")]
    refused = case.get("run", [None])[0] == "cancel" and case["exit"] == 2
    assert scancels == [] if refused else set(scancels) <= {"scancel -- 12345"}, scancels  # the run's own job only
    assert base["canary"].poll() is None, "the canary process was signalled"


@pytest.mark.parametrize("record", [
    "{", "[]", '{"points": [{"folder": "../../etc"}]}', '{"points": [{"folder": "a/b/c"}]}', "LINK", "FIFO",
    '{"points": [{"folder": "m-d/\\u001b[31m"}]}', '{"points": 7}', '[1]', '{"points": [7]}', "x" * 2_000_000,
])
def test_a_planted_sweep_record_is_a_page_that_names_it(record, tmp_path):
    """A sweep record is data too: the dashboard's /sweeps/ID answers 200 or 404, never a 500 or a
    file outside the run root (a link to the secret, a FIFO, a huge file, a folder that climbs out)."""
    sweeps = tmp_path / "runs" / "default" / "sweeps"
    sweeps.mkdir(parents=True)
    (tmp_path / "secret").write_text(SECRET)
    path = sweeps / "0123456789.json"
    if record == "LINK":
        path.symlink_to(tmp_path / "secret")
    elif record == "FIFO":
        os.mkfifo(path)
    else:
        path.write_text(record)
    app = create_app(JobService([], DatasetRoots(()), tmp_path / "runs"), TOKEN, Limits(requests_per_s=0))
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        start = time.monotonic()
        r = client.get("/sweeps/0123456789")
    assert r.status_code in (200, 404) and time.monotonic() - start < 5, r.text[:500]
    assert SECRET not in r.text and "\x1b" not in r.text


def test_health_answers_while_50_requests_read_a_fifo_log(base, tmp_path):  # noqa: F811
    root = tmp_path / "srv" / "runs"
    plant(root, base, {"write": {"logs/slurm-12345.out": {"fifo": True}, "metrics.jsonl": {"fifo": True},
                                 "job.sbatch": {"fifo": True}}})
    server = start(tmp_path / "srv", "--rate", "0", "cluster=example",
                   env={"PATH": f"{base['bin']}{os.pathsep}{os.environ['PATH']}"})
    try:
        def hit(path):
            return httpx.get(server.base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code

        with ThreadPoolExecutor(50) as pool:
            pending = [pool.submit(hit, p) for p in [f"/runs/{RUN_ID}", f"{JOBS}/{RUN_ID}"] * 25]
            started = time.monotonic()
            assert httpx.get(server.base + "/health", timeout=5).status_code == 200
            assert time.monotonic() - started < 1.0
            codes = [f.result() for f in pending]
        assert set(codes) == {200}, codes
        assert server.get("/health").status_code == 200
    finally:
        server.stop()
