"""The Customizer job API and the dashboard, through the real server (uvicorn) on a loopback port.

A job body becomes the same validated job the CLI would compile (same run id), runs on the local
executor, and reports Customizer's status fields; bad bodies are refused with nothing written.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_server import TOKEN, lora_body, start

JOBS = "/v1/customization/jobs"
HOSTILE = ["$(touch PWNED)", "`touch PWNED`", "; touch PWNED", "' ; touch PWNED; '", '" ; touch PWNED; "',
           "a\ntouch PWNED", "\\", "* ?", "|touch PWNED", "../../etc", "/etc/passwd", "demo\x00", "demo\r", "",
           "x" * 5000, "demo,demo", "demo data.path=/etc", "${oc.env:HOME}"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Path:
    """A registered dataset root with one dataset, a copy of the bundled demo."""
    from ftc.compiler.config.compose import bundled_dataset

    root = tmp_path_factory.mktemp("datasets")
    shutil.copytree(bundled_dataset("demo", "lora"), root / "email-assist")
    shutil.copytree(bundled_dataset("demo", "lora"), root / "team-b" / "support")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, datasets):
    # The operator's method.max_steps=60 keeps the tiny model's run short; a body cannot set it.
    srv = start(tmp_path_factory.mktemp("api"), "--rate", "0", "--creates-per-min", "6000", "cluster=local",
                "method.max_steps=60",
                env={"FTC_API_DATASETS": str(datasets)})
    yield srv
    srv.stop()


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ftc", *args], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FTC_OUTPUT_ROOT": str(root)})


def test_no_token_is_401_and_nothing_is_written(server):
    before = server.files()
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
        r = httpx.post(server.base + JOBS, json=lora_body(), headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(server.base + JOBS, headers=headers).status_code == 401
        assert httpx.get(server.base + "/", headers=headers).status_code == 401
    assert server.files() == before


def test_missing_urn_version_is_customizers_400(server):
    r = server.post(JOBS, json={**lora_body(), "config": "ftc/tiny-llama"})
    assert r.status_code == 400
    assert r.json()["detail"] == "Version is not specified in the config URN"


def test_unknown_config_and_dataset_are_404(server):
    r = server.post(JOBS, json={**lora_body(), "config": "ftc/huge-llama@v1.0.0+CPU"})
    assert r.status_code == 404 and "no model config 'ftc/huge-llama@v1.0.0+CPU'" in r.json()["detail"]
    r = server.post(JOBS, json={**lora_body(), "dataset": {"name": "no-such-set"}})
    assert r.status_code == 404 and "no dataset default/no-such-set" in r.json()["detail"]
    assert server.get(f"{JOBS}/0123456789").status_code == 404
    assert server.get(f"{JOBS}/..%2F..%2Fetc/status").status_code == 404
    assert server.post(f"{JOBS}/1/cancel").status_code == 404  # a Slurm id matches job records, never a prefix


def test_bad_list_queries_are_one_line_422s(server):
    for params in ({"page": 0}, {"page": "x"}, {"page_size": 1000}, {"filter[status]": "bogus"},
                   {"filter[config]": "x" * 5000}, {"sort": "name"}, {"filter[training_type]": "ppo\n"}):
        r = server.get(JOBS, params=params)
        assert r.status_code == 422, (params, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and len(detail) < 400, (params, detail)
    assert server.get(JOBS, params={"filter[status]": "completed", "page": 3}).json()["data"] == []


def test_configs_lists_the_model_urns(server):
    names = [f"{c['namespace']}/{c['name']}" for c in server.get("/v1/customization/configs").json()["data"]]
    assert "ftc/tiny-llama@v1.0.0+CPU" in names and "meta/llama-3.1-8b-instruct@v1.0.0+H100" in names


def _refused_bodies():
    body = lora_body()
    hyper = body["hyperparameters"]
    cases = {
        "override list": {**body, "overrides": ["cluster.setup=[rm -rf ~]"]},
        "site field": {**body, "cluster": {"setup": ["touch PWNED"]}},
        "site limit": {**body, "cluster": {"partitions": {"local": {"max_time": "999:00:00"}}}},
        "site limit as an override": {**body, "cluster.partitions.local.max_time": "999:00:00"},
        "site limit in hyperparameters": {**body, "hyperparameters": {**hyper, "max_time": "999:00:00"}},
        "admin field in hyperparameters": {**body, "hyperparameters": {**hyper, "target_modules": ["q_proj"]}},
        "path as dataset": {**body, "dataset": {"name": "demo", "path": "/etc"}},
        "output_root": {**body, "output_root": "/tmp"},
        "epochs as string": {**body, "hyperparameters": {**hyper, "epochs": "3"}},
        "epochs as bool": {**body, "hyperparameters": {**hyper, "epochs": True}},
        "epochs zero": {**body, "hyperparameters": {**hyper, "epochs": 0}},
        "huge epochs": {**body, "hyperparameters": {**hyper, "epochs": 10**30}},
        "config as list": {**body, "config": ["ftc/tiny-llama@v1.0.0+CPU"]},
        "empty body": {},
        "lora on all_weights": {**body, "hyperparameters": {**hyper, "finetuning_type": "all_weights"}},
        "unknown training type": {**body, "hyperparameters": {**hyper, "training_type": "ppo"}},
        "max_steps as string": {**body, "hyperparameters": {**hyper, "max_steps": "3"}},
        "max_steps as bool": {**body, "hyperparameters": {**hyper, "max_steps": True}},
        "max_steps zero": {**body, "hyperparameters": {**hyper, "max_steps": 0}},
        "max_steps negative": {**body, "hyperparameters": {**hyper, "max_steps": -1}},
        "huge max_steps": {**body, "hyperparameters": {**hyper, "max_steps": 10**30}},
        "max_steps as float": {**body, "hyperparameters": {**hyper, "max_steps": 3.5}},
        "integration not wandb": {**body, "integrations": [{"type": "mlflow", "wandb": {}}]},
        "integration as string": {**body, "integrations": "wandb"},
        "too many integrations": {**body, "integrations": [{"wandb": {}}] * 5},
        "integration with a key": {**body, "integrations": [{"wandb": {"api_key": "x"}}]},
        "dataset as list": {**body, "dataset": ["demo"]},
        "dataset as number": {**body, "dataset": 3},
        "dataset as deep path": {**body, "dataset": "a/b/demo"},
        "name as number": {**body, "name": 3},
    }
    for i, value in enumerate(HOSTILE):
        cases[f"hostile dataset name {i}"] = {**body, "dataset": {"name": value}}
        cases[f"hostile dataset namespace {i}"] = {**body, "dataset": {"name": "demo", "namespace": value}}
        if value:
            cases[f"hostile config {i}"] = {**body, "config": f"ftc/tiny-llama@v1.0.0+CPU{value}"}
        cases[f"hostile output_model {i}"] = {**body, "output_model": f"default/{value}"}
        cases[f"hostile output_model version {i}"] = {**body, "output_model": f"default/x@{value}"}
        cases[f"hostile job name {i}"] = {**body, "name": value}
        cases[f"hostile job namespace {i}"] = {**body, "namespace": value}
        cases[f"hostile dataset string {i}"] = {**body, "dataset": value}
        cases[f"hostile wandb project {i}"] = {**body, "integrations": [{"wandb": {"project": value}}]}
        cases[f"hostile wandb tags {i}"] = {**body, "integrations": [{"wandb": {"tags": [value]}}]}
    for i, notes in enumerate(("", "a\ntouch PWNED", "x" * 5000, "\x00", "\r")):  # dropped, yet checked
        cases[f"hostile wandb notes {i}"] = {**body, "integrations": [{"wandb": {"notes": notes}}]}
    return cases


def test_refused_bodies_write_and_queue_nothing(server):
    before = server.files()
    for label, body in _refused_bodies().items():
        r = server.post(JOBS, json=body)
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail and "\n" not in detail and "Traceback" not in detail, (label, detail)
    head = '{"config": "ftc/tiny-llama@v1.0.0+CPU", "dataset": {"name": "demo"}, '
    for raw in (head + '"hyperparameters": {"learning_rate": NaN}}', head + '"hyperparameters": {"learning_rate": Infinity}}',
                "not json", "[]", '"config"', ""):
        r = server.post(JOBS, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (raw, r.text)
    r = server.post(JOBS, content=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert server.files() == before
    assert server.get(JOBS).json()["pagination"]["total_results"] == 0
    assert not list(Path.cwd().glob("PWNED")) and not list(server.root.parent.rglob("PWNED"))


def test_schema_errors_are_the_clis_lines(server, tmp_path):
    hyper = {**lora_body()["hyperparameters"], "lora": {"adapter_dim": 12, "adapter_dropout": 0.1}}
    r = server.post(JOBS, json={**lora_body(), "hyperparameters": hyper})
    assert r.status_code == 422
    line = cli(tmp_path, "model=tiny", "method.lora.adapter_dim=12").stderr.strip()
    assert line == f"ftc: error: {r.json()['detail']}" == "ftc: error: method.lora.adapter_dim: must be a power of 2 up to 256 (got 12)"


def test_a_body_compiles_to_the_clis_run_id(tmp_path, datasets):
    """The API's translation of a body and the equivalent command line give the same run id
    (the output root is part of a run id, so both use the same)."""
    srv = start(tmp_path / "srv", "--rate", "0", "--creates-per-min", "600", "cluster=local", "dry_run=true", env={"FTC_API_DATASETS": str(datasets)})
    try:
        body = lora_body(epochs=2, batch_size=8, learning_rate=0.001, lora={"adapter_dim": 16, "adapter_dropout": 0.05, "alpha": 32})
        job = srv.post(JOBS, json=body).json()
        assert job["status"] == "created"
        assert srv.post(JOBS, json=body).json()["id"] == job["id"]
        named = srv.post(JOBS, json={**body, "dataset": {"name": "email-assist"}}).json()
        renamed = srv.post(JOBS, json={**body, "output_model": "team-a/email-v2"}).json()
        assert (renamed["namespace"], renamed["name"]) == ("team-a", "email-v2")
        assert renamed["output_model"] == f"team-a/email-v2@{renamed['id']}"  # output_model names the output
        versioned = srv.post(JOBS, json={**body, "output_model": "team-a/email-v2@v3"}).json()
        assert versioned["output_model"] == "team-a/email-v2@v3"
        assert named["dataset"] == {"name": "email-assist", "namespace": "default"}
        spaced = srv.post(JOBS, json={**body, "dataset": {"name": "support", "namespace": "team-b"}}).json()
        assert spaced.get("dataset") == {"name": "support", "namespace": "team-b"}, spaced  # echoed as sent
    finally:
        srv.stop()
    args = ["model.urn=ftc/tiny-llama@v1.0.0+CPU", "method=lora", "method.epochs=2", "method.batch_size=8",
            "method.learning_rate=0.001", "method.lora.adapter_dim=16", "method.lora.adapter_dropout=0.05",
            "method.lora.alpha=32", "dry_run=true"]
    out = cli(srv.root, *args, "data=demo").stdout
    assert out.splitlines()[0].split()[-1] == job["output_model"] == f"default/tiny-llama-demo-lora@{job['id']}"
    out = cli(srv.root, *args, "data=custom", "data.name=email-assist", f"data.path={datasets / 'email-assist'}").stdout
    assert out.splitlines()[0].split()[-1] == named["output_model"] == f"default/tiny-llama-email-assist-lora@{named['id']}"


@pytest.mark.train
def test_lora_job_runs_to_completed_with_customizer_status(server):
    body = lora_body()
    r = server.post(JOBS, json=body)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["output_model"] == f"default/tiny-llama-demo-lora@{job['id']}"
    assert job["config"] == "ftc/tiny-llama@v1.0.0+CPU" and job["status"] in ("running", "completed")
    assert job["ownership"] == {"created_by": pwd.getpwuid(os.getuid()).pw_name}  # the run folder's owner
    again = server.post(JOBS, json=body)
    assert again.status_code in (200, 409) and (again.json().get("id") == job["id"])
    status = server.wait_for(job["id"])
    assert status["status"] == "completed", status
    assert status["percentage_done"] == 100.0
    assert status["steps_completed"] == status["max_steps"] > 0
    assert status["epochs_completed"] >= 1 and status["elapsed_time"] > 0
    assert isinstance(status["train_loss"], float) and isinstance(status["val_loss"], float)
    assert status["best_epoch"] is not None
    epochs = status["epochs"]
    assert all(e["val_loss"] is not None for e in epochs)
    assert len(epochs) in (status["epochs_completed"], status["epochs_completed"] + 1)  # + the partial last one
    assert status["eval"]["after"]["loss"] < status["eval"]["before"]["loss"]
    details = server.get(f"{JOBS}/{job['id']}").json()
    run_dir = Path(details["run_dir"])
    assert details["script"] == (run_dir / "job.sbatch").read_text()
    assert details["plan_summary"][0].split()[-1] == job["output_model"] and "warnings" in details
    record = (run_dir / "job.json").read_text()
    done = server.post(JOBS, json=body)
    assert done.status_code == 200 and done.json()["id"] == job["id"] and done.json()["status"] == "completed"
    assert (run_dir / "job.json").read_text() == record  # not run twice
    listed = server.get(JOBS, params={"filter[status]": "completed"}).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]


def _processes_of(run_dir: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and run_dir.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.train
def test_cancel_a_running_job(tmp_path):
    srv = start(tmp_path, "--rate", "0", "cluster=local", "method.max_steps=5000")  # long enough to catch running
    try:
        job_id = srv.post(JOBS, json=lora_body()).json()["id"]
        srv.wait_for(job_id, states=("running",), timeout=120)
        # Cancel once training is under way: during the runtime's start-up (model build, eval before) a stop
        # request can be lost and the worker, in its own session, outlives torchrun (a runtime issue).
        deadline = time.monotonic() + 300
        while not (srv.get(f"{JOBS}/{job_id}/status").json()["steps_completed"] or 0) and time.monotonic() < deadline:
            time.sleep(0.5)
        refresh = '<meta http-equiv="refresh"'
        assert refresh in srv.get(f"/runs/{job_id}").text and refresh in srv.get("/").text  # live while it runs
        cancelled = srv.post(f"{JOBS}/{job_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert srv.get(f"{JOBS}/{job_id}/status").json()["status"] == "cancelled"
        again = srv.post(f"{JOBS}/{job_id}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        assert refresh not in srv.get(f"/runs/{job_id}").text
        run_dir = srv.get(f"{JOBS}/{job_id}").json()["run_dir"]
        deadline = time.monotonic() + 60
        while _processes_of(run_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _processes_of(run_dir)  # the supervisor, torchrun and its worker all gone
    finally:
        srv.stop()


def test_token_file_is_generated_owner_only(tmp_path):
    token_file = tmp_path / "cfg" / "api-token"
    srv = start(tmp_path, "--token-file", str(token_file), "cluster=local", token=None)
    try:
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()
        assert token not in srv.log.read_text() and str(token_file) in srv.log.read_text()
        ok = httpx.get(srv.base + JOBS, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        login = httpx.post(srv.base + "/login", data={"token": token}, follow_redirects=False)
        assert login.status_code == 303 and "HttpOnly" in login.headers["set-cookie"]
        cookie = {"ftc_token": login.cookies["ftc_token"]}
        assert httpx.get(srv.base + "/", cookies=cookie).status_code == 200
        assert httpx.post(srv.base + JOBS, json=lora_body(), cookies=cookie).status_code == 401  # no CSRF
    finally:
        srv.stop()
    token_file.chmod(0o644)  # readable by others: refused, not used
    env = {k: v for k, v in os.environ.items() if k != "FTC_API_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "ftc", "serve", "--token-file", str(token_file)], check=False,
                       capture_output=True, text=True, timeout=60, env={**env, "FTC_OUTPUT_ROOT": str(tmp_path)})
    assert r.returncode == 2 and "readable by you only (chmod 600)" in r.stderr


def test_rate_limit_answers_429(tmp_path):
    srv = start(tmp_path, "--rate", "2", "cluster=local")
    try:
        codes = [srv.get(JOBS).status_code for _ in range(30)]
        assert 429 in codes and codes[0] == 200
    finally:
        srv.stop()


def test_serve_refuses_bad_options_in_one_line(tmp_path):
    cases = [(["cluster=nowhere"], "ftc: error: cluster: unknown option 'nowhere'"),
             (["cluster.setup=[touch PWNED]"], "ftc: error: cluster.setup: set in the site's config files"),
             (["cluster=example", "cluster.partitions.h100.max_time=999:00:00"],
              "ftc: error: cluster.partitions.h100.max_time: set in the site's config files"),
             (["cluster=example", "+cluster.partitions.h100.max_nodes=64"],
              "ftc: error: cluster.partitions.h100.max_nodes: set in the site's config files"),
             (["--port", "99999"], "ftc: error: ftc serve: --port must be 1-65535"),
             (["--port", "x"], "ftc: error: ftc serve: argument --port: invalid int value"),
             (["--datasets", str(tmp_path / "none")], "ftc: error: --datasets: "),
             (["--bogus"], "ftc: error: ftc serve: unrecognized arguments: --bogus")]
    for args, line in cases:
        r = subprocess.run([sys.executable, "-m", "ftc", "serve", *args], check=False, capture_output=True, text=True,
                           timeout=60, env={**os.environ, "FTC_OUTPUT_ROOT": str(tmp_path), "FTC_API_TOKEN": TOKEN})
        assert r.returncode == 2 and r.stderr.startswith(line) and len(r.stderr.splitlines()) == 1, (args, r.stderr)
    for token in ("short", "with space in the token 123"):
        r = subprocess.run([sys.executable, "-m", "ftc", "serve"], check=False, capture_output=True, text=True,
                           timeout=60, env={**os.environ, "FTC_OUTPUT_ROOT": str(tmp_path), "FTC_API_TOKEN": token})
        assert r.returncode == 2 and r.stderr.startswith("ftc: error: FTC_API_TOKEN: the API token must be"), r.stderr


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FTC_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.train
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromium-driver (apt; .ci/run installs them)")
def test_dashboard_in_a_real_browser(server, tmp_path):
    from selenium.webdriver.common.by import By

    done = server.get(JOBS, params={"filter[status]": "completed"}).json()["data"]
    job_id = done[0]["id"] if done else server.post(JOBS, json=lora_body()).json()["id"]
    assert server.wait_for(job_id)["status"] == "completed"
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for a browser online
    driver = _browser()
    try:
        driver.get(f"{server.base}/")  # sent to the sign-in form; the token is posted, never in an address
        driver.find_element(By.NAME, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        assert "token" not in driver.current_url and driver.current_url.rstrip("/") == server.base
        row = driver.find_element(By.CSS_SELECTOR, f'tr.run[data-id="{job_id}"]')
        assert "completed" in row.text and f"default/tiny-llama-demo-lora@{job_id}" in row.text
        owner = row.find_elements(By.TAG_NAME, "td")[1].text
        assert owner == pwd.getpwuid(os.getuid()).pw_name
        assert row.find_elements(By.CSS_SELECTOR, "svg.sparkline polyline.train")
        driver.save_screenshot(str(_artifacts(tmp_path) / "dashboard-runs.png"))
        row.find_element(By.LINK_TEXT, job_id).click()
        chart = driver.find_element(By.ID, "loss-chart")
        for cls in ("train", "val"):
            line = chart.find_element(By.CSS_SELECTOR, f"polyline.{cls}")
            assert len(line.get_attribute("points").split()) >= 5
            width = driver.execute_script("return arguments[0].getBBox().width", line)
            assert width > 300  # drawn across the chart, not a point
        assert driver.find_element(By.ID, "script").text.startswith("#!/bin/bash")
        assert driver.find_element(By.ID, "plan").text.startswith(f"run        default/tiny-llama-demo-lora@{job_id}")
        assert "completed" in driver.find_element(By.ID, "log").text
        shot = _artifacts(tmp_path) / "dashboard-run.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("FTC_UPDATE_DOCS") == "1":
            shutil.copy(shot, Path(__file__).resolve().parents[1] / "docs" / "dashboard.png")
    finally:
        driver.quit()


SERVER_PROBE = """
from starlette.testclient import TestClient
from ftc.compiler.api.serve import build, parse
app, token, _, _ = build(parse(["--rate", "0", "cluster=local", "dry_run=true"]))
client = TestClient(app, headers={{"Authorization": f"Bearer {{token}}"}})
job = client.post("/v1/customization/jobs", json={body!r}).json()
for path in ("/v1/customization/jobs", f"/v1/customization/jobs/{{job['id']}}", f"/v1/customization/jobs/{{job['id']}}/status",
             "/v1/customization/configs", "/", f"/runs/{{job['id']}}"):
    assert client.get(path).status_code == 200, path
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))))
"""


def test_the_server_imports_no_training_stack(tmp_path):
    from test_login_node import LOGIN_NODE_PRELUDE

    code = LOGIN_NODE_PRELUDE + SERVER_PROBE.format(body=lora_body())
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "FTC_OUTPUT_ROOT": str(tmp_path), "FTC_API_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_metrics_reader_skips_what_is_not_a_finite_loss(tmp_path):
    from ftc.compiler.api import metrics

    lines = ['{"step": 1, "epoch": 0.5, "train_loss": 2.0}', '{"step": 2, "epoch": 1.0, "train_loss": NaN}',
             '{"step": true, "epoch": 1.0, "train_loss": 1.0}', "[1, 2]", '{"step": 3, "epoch": "x", "val_loss": 1.0}',
             '{"step": 4, "epoch": 1.0, "val_loss": 1.5, "train_loss": 1.8}', '{"step": 5, "epoch": 1.5, "train_loss": 1.6}',
             '{"step": 6, "epoch": 2.0, "val_l']  # a line still being written
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    history = metrics.read(tmp_path)
    assert [(p.step, p.value) for p in history.train] == [(1, 2.0), (4, 1.8), (5, 1.6)]
    assert [(p.step, p.value) for p in history.val] == [(4, 1.5)]
    assert history.per_epoch() == [{"epoch": 1, "train_loss": 1.8, "val_loss": 1.5},
                                   {"epoch": 2, "train_loss": 1.6, "val_loss": None}]


def test_registries_refuse_bad_queries_in_one_line(server):
    for path in ("/v1/customization/configs", "/v1/customization/targets", "/v1/models"):
        assert server.get(path).json()["pagination"]["page"] == 1
        for params in ({"page": 0}, {"page": "x"}, {"page_size": 10**6}, {"page": "NaN"}, {"page_size": "1e3"}):
            r = server.get(path, params=params)
            assert r.status_code == 422 and "\n" not in r.json()["detail"], (path, params, r.text)
        for name in ("x" * 300, "%2e%2e%2fetc", "a'b", "a\\b", "%00"):
            r = server.get(f"{path}/ftc/{name}")
            assert r.status_code in (404, 422) and "\n" not in r.json()["detail"], (path, name, r.text)
    target = server.get("/v1/customization/targets/ftc/tiny-llama@v1.0.0").json()
    assert (target["num_parameters"], target["base_model"]) == (123200, "ftc/tiny-llama")


def test_registered_targets_round_trip_under_a_team_umask_and_refuse_a_writable_file(tmp_path):
    from ftc.compiler.api import targets_file

    previous = os.umask(0o002)  # a team's usual umask: files group-writable by default
    try:
        targets_file.save(tmp_path / "root", ["/models/a", "/models/b"])
    finally:
        os.umask(previous)
    saved = tmp_path / "root" / targets_file.FILE
    assert saved.stat().st_mode & 0o022 == 0
    assert targets_file.load(tmp_path / "root", 1000) == (["/models/a", "/models/b"], [])
    assert targets_file.load(tmp_path / "root", 1) == (["/models/a"], [])
    saved.chmod(0o664)  # writable by the group: anyone in it could add a target
    kept, notes = targets_file.load(tmp_path / "root", 1000)
    assert kept == [] and len(notes) == 1 and "writable by its group" in notes[0]
    saved.chmod(0o644)
    if os.geteuid() == 0:  # another user's file in this root (as a team member could plant it)
        os.chown(saved, 65534, -1)
        kept, notes = targets_file.load(tmp_path / "root", 1000)
        assert kept == [] and "owned by uid 65534" in notes[0]
        os.chown(saved, 0, -1)
    saved.write_text("x" * (targets_file.LIMIT + 1))
    kept, notes = targets_file.load(tmp_path / "root", 1000)
    assert kept == [] and "more than the" in notes[0]
    assert targets_file.load(tmp_path / "empty", 1000) == ([], [])
