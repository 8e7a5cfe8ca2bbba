"""Submission and job control against the real local Slurm of .ci/slurm.sh (see tests/slurm_fixtures.py).

Run: eval "$(.ci/slurm.sh env)" && python -m pytest tests/test_submit_slurm.py -q
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftc.compiler.planning.build import CompiledRun
from ftc.compiler.planning.plan import Plan
from ftc.compiler.submit.submitter import render_sweep

from site_files import admin_cluster
from slurm_fixtures import CI_SITE, REPO, Cli, SlurmSite, jobs, queued_names, site, slurm  # noqa: F401

pytestmark = pytest.mark.slurm
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def timeout_run(site):
    """A one-minute job that outlives its limit, queued first: Slurm needs ~90 s to time it out."""
    cli = site.ftc(*site.compile_args("name=times-out", "resources.time=1"), FAKE_TORCHRUN_SECONDS="600")
    assert cli.code == 0, cli.err
    run_dir = site.run_dir(cli)
    yield run_dir
    slurm("scancel", site.record(run_dir)["job"])


@pytest.fixture(scope="module", autouse=True)
def _start_timeout_run_first(timeout_run):
    yield


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.sh")))
def test_examples_on_ci_site_pass_test_only(site, example, tmp_path):
    """Each shipped example, compiled for the CI site (cluster=ci appended), is accepted by Slurm as is."""
    env = {**site.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{site.env['PATH']}",
           "FTC_OUTPUT_ROOT": str(tmp_path)}
    proc = subprocess.run(["bash", str(EXAMPLES / example), "cluster=ci", "dry_run=true"], capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dirs = [p.parent for p in tmp_path.glob("*/*/*/plan.json")]
    assert run_dirs
    runs = []
    for run_dir in run_dirs:
        script = (run_dir / "job.sbatch").read_text()
        assert 'echo "ftc-ci job' in script  # the CI site's setup line: cluster=ci won
        answer = slurm("sbatch", "--test-only", str(run_dir / "job.sbatch"))
        assert answer.returncode == 0 and " to start at " in answer.stderr, f"{run_dir}: {answer.stderr}"
        runs.append(CompiledRun(Plan.model_validate_json((run_dir / "plan.json").read_text()), {"job.sbatch": script}))
    if len(runs) > 1:
        sweep = tmp_path / "sweep.sbatch"
        sweep.write_text(render_sweep(runs, "test", tmp_path / "sweep"))
        answer = slurm("sbatch", "--test-only", str(sweep))
        assert answer.returncode == 0 and " to start at " in answer.stderr, answer.stderr


@pytest.fixture(scope="module")
def refusing_site(site, tmp_path_factory):
    """A site file that claims more than the real controller has, so Slurm (not ftc) must refuse."""
    import yaml

    folder = tmp_path_factory.mktemp("refusing-site")
    (folder / "cluster").mkdir()
    cluster = yaml.safe_load((CI_SITE / "cluster" / "ci.yaml").read_text())
    parts = cluster["partitions"]
    parts["nosuch"] = dict(parts["h100"])
    parts["gpuH100x8"] = dict(parts["h100"], gres_type="h200")  # a type the nodes (gpu:h100:8) lack
    parts["h100"].update(gpus_per_node=16, max_nodes=4)
    parts["a100"].update(max_nodes=4, max_time="3-00:00:00")
    cluster["name"] = "refusing"
    (folder / "cluster" / "refusing.yaml").write_text(yaml.safe_dump(cluster))
    admin_cluster(folder, "refusing", {"partitions.h100.constraint": "v100"}, name="constrained")
    return {"FTC_SITE_CONFIG": f"{folder}{os.pathsep}{CI_SITE}"}


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["cluster.partition=nosuch"], "cluster.partition: Slurm refused partition 'nosuch': Invalid partition name specified"),
        (["resources.nodes=2", "resources.gpus_per_node=16", "method.batch_size=32"],
         ("resources.gpus_per_node: Slurm cannot place 2 nodes x 16 GPUs (--gres=gpu:h100:16; nodes have gpu:h100:8; "
          "96 CPUs per node) in partition h100 (Requested node configuration is not available)")),
        (["cluster.partition=gpuH100x8"],
         ("cluster.partitions.gpuH100x8.gres_type: Slurm refused --gres=gpu:h200:1 in partition gpuH100x8: its nodes "
          "have no GPU of type 'h200', they have gpu:h100:8 (Requested node configuration is not available)")),
        (["cluster.partition=a100", "resources.time=2-00:00:00"], "resources.time: Slurm refused --time=2-00:00:00"),
        (["cluster.partition=a100", "resources.nodes=3", "method.batch_size=24"], "resources.nodes: Slurm refused 3 node(s) in partition a100"),
        (["cluster=constrained"], "cluster.partitions.h100.constraint: Slurm refused constraint 'v100'"),
        (["cluster.partition=nosuch", "preflight=false"], "cluster.partition: Slurm refused partition 'nosuch'"),
    ],
)
def test_refusal_is_one_line_and_nothing_is_queued(site, refusing_site, overrides, expected):
    name = f"refused-{abs(hash(tuple(overrides))) % 10**6}"
    cluster = [o for o in overrides if o.startswith("cluster=")] or ["cluster=refusing"]
    overrides = [o for o in overrides if not o.startswith("cluster=")]
    cli = site.ftc(*cluster, f"data.path={site.data}", f"name={name}", *overrides, **refusing_site)
    assert cli.code == 2, cli.out + cli.err
    lines = cli.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ftc: error: {expected}"), cli.err
    assert not any(name in job for job in queued_names())
    assert not list(site.root.glob(f"*/*{name}*"))  # no "created" run folder left behind either


def test_a_refused_sweep_leaves_no_folder_and_no_sweep_record(site, refusing_site):
    before = set(site.root.glob("*/sweeps/*"))
    cli = site.ftc("-m", "cluster=refusing", f"data.path={site.data}", "name=refused-sweep", "cluster.partition=a100",
                   "resources.time=2-00:00:00", "method.learning_rate=1e-4,2e-4", **refusing_site)
    assert cli.code == 2 and "Slurm refused --time=2-00:00:00" in cli.err, cli.out + cli.err
    assert not list(site.root.glob("*/*refused-sweep*"))
    assert set(site.root.glob("*/sweeps/*")) == before  # neither sweeps/<id>.json nor the array's folder


def test_a_gres_refusal_names_the_gres_type_and_shows_slurms_words_escaped(site, refusing_site, monkeypatch, tmp_path):
    """An unparsable --gres (e.g. a cluster whose slurm.conf has no gpu GRES) blames the type ftc sent,
    never the GPU count; whatever Slurm's message holds, the line shows it escaped."""
    from ftc.compiler.config.compose import load_job
    from ftc.compiler.planning.build import compile_job
    from ftc.compiler.submit.submitter import refusal

    monkeypatch.setenv("FTC_SITE_CONFIG", refusing_site["FTC_SITE_CONFIG"])
    job, resolved = load_job(["cluster=refusing", "cluster.partition=gpuH100x8", f"data.path={site.data}",
                              f"output_root={tmp_path}"])
    plan = compile_job(job, resolved).plan
    line = refusal(plan, 'Invalid generic resource (gres) specification \x1b[2J"q"\\\u2028')
    assert line == ("cluster.partitions.gpuH100x8.gres_type: Slurm refused --gres=gpu:h200:1 in partition gpuH100x8: "
                    'Invalid generic resource (gres) specification \\x1b[2J"q"\\\\u2028')


def test_no_sbatch_on_path_is_one_line(site):
    cli = site.ftc(*site.compile_args("name=no-sbatch"), PATH="/nonexistent")
    assert cli.code == 2
    assert cli.err.strip() == ("ftc: error: sbatch not found: ftc submits to Slurm from a login node; "
                               "use cluster=local to run here")


def test_submission_completes_and_status_follows(site, jobs):
    args = site.compile_args("name=completes")
    dry = site.ftc(*args, "dry_run=true")
    run_dir = site.run_dir(dry)
    run_id = run_dir.name
    assert site.state(run_id) == "created"
    cli = site.ftc(*args, FAKE_TORCHRUN_SECONDS="4")
    assert cli.code == 0, cli.err
    record = site.record(run_dir)
    jobs.append(record["job"])
    plan = json.loads((run_dir / "plan.json").read_text())
    workers = plan["topology"]["gpus_per_node"]
    assert cli.out.splitlines() == [
        (f"submitted run {run_id} as Slurm job {record['job']} (partition h100, 1 node x {workers} GPU"
         f"{'s' * (workers > 1)}, --time={plan['time_limit']})"),
        f"run folder {run_dir}", f"  ftc status {run_id}", f"  ftc logs {run_id} -f", f"  ftc cancel {run_id}"]
    script = (run_dir / "job.sbatch").read_bytes()
    stored = slurm("scontrol", "write", "batch_script", record["job"], "-")
    assert stored.stdout.encode() == script  # byte for byte
    assert record["script_sha256"] == hashlib.sha256(script).hexdigest()
    follow = subprocess.Popen([sys.executable, "-m", "ftc", "logs", run_id, "-f"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=site.env)
    state, seen = site.wait(run_id)
    assert state == "completed", seen
    assert set(seen) <= {"pending", "running", "completed"} and len(seen) >= 2, seen
    out, err = follow.communicate(timeout=30)  # -f ends by itself once the job has ended
    assert follow.returncode == 0 and "FAKE torchrun done" in out and "is completed" in err, err
    table = site.ftc("status").out
    row = next(line for line in table.splitlines() if run_id in line)
    assert "completed" in row and "100%" in row and "1.25" in row and record["job"] in row
    log = site.ftc("logs", run_id)
    assert "FAKE torchrun done" in log.out
    again = site.ftc(*args)
    assert again.code == 0 and "already completed" in again.out
    assert site.record(run_dir)["job"] == record["job"]


def test_the_api_server_submits_to_slurm_without_printing_the_clis_lines(site, jobs, tmp_path):
    """`ftc serve` submits as the CLI does, but the CLI's lines about it stay out of the server's log."""
    from api_server import lora_body, start

    server = start(tmp_path / "api", "--rate", "0", "cluster=ci", "cluster.partition=cpu", env={
        k: v for k, v in site.env.items() if k != "FTC_OUTPUT_ROOT"})
    try:
        created = server.post("/v1/customization/jobs", json=lora_body(learning_rate=0.004))
        assert created.status_code == 200, created.text
        job = created.json()
        jobs.append(job["status_details"]["job"])
        assert server.wait_for(job["id"], timeout=90)["status"] == "completed"
    finally:
        server.stop()
    log = server.log.read_text()
    for cli_line in ("submitted run", "run folder", "ftc status", "ftc logs", "ftc cancel"):
        assert cli_line not in log, log


def test_on_a_shared_root_the_jobs_files_are_group_readable_whatever_the_umask(site, jobs, tmp_path):
    """sbatch hands its umask to the job: ftc submits into a setgid root with the user's umask less its group
    read bits, so Slurm's log and what the job writes (here FAKE torchrun's files) are readable by the team."""
    shared = tmp_path / "team"
    shared.mkdir()
    shared.chmod(0o2775)
    team = SlurmSite(shared, site.data, {**site.env, "FTC_OUTPUT_ROOT": str(shared)})
    proc = subprocess.run([sys.executable, "-m", "ftc", *team.compile_args("name=umask")], capture_output=True,
                          text=True, env=team.env, timeout=120, preexec_fn=lambda: os.umask(0o077))
    cli = Cli(proc.returncode, proc.stdout, proc.stderr)
    assert cli.code == 0, cli.err
    run_dir = team.run_dir(cli)
    record = team.record(run_dir)
    jobs.append(record["job"])
    assert team.wait(run_dir.name)[0] == "completed"
    written = [Path(record["log"]), run_dir / "fake-torchrun", run_dir / "fake-torchrun" / "node-0.json"]
    for path in written:
        mode = path.stat().st_mode
        assert mode & 0o040 and (mode & 0o010 or not path.is_dir()), f"{path}: {oct(mode)}"


def test_sweep_is_one_job_array(site, jobs):
    started = time.monotonic()
    cli = site.ftc("-m", *site.compile_args("name=sweep", "method.learning_rate=1e-4,2e-4,3e-4,4e-4"),
                   FAKE_TORCHRUN_SECONDS="5")
    returned = time.monotonic() - started
    assert cli.code == 0, cli.err
    run_dirs = [Path(line.split()[-1]) for line in cli.out.splitlines() if line.strip().startswith("[")]
    records = [site.record(d) for d in run_dirs]
    jobs.append(records[0]["job_id"])
    assert len(run_dirs) == 4 and len({r["job_id"] for r in records}) == 1
    assert sorted(r["array_index"] for r in records) == [0, 1, 2, 3]
    assert returned < 5 + 10 and any(site.state(d.name) in ("pending", "running") for d in run_dirs)
    sweep = Path(records[0]["sweep"])
    assert "#SBATCH --array=0-3%4" in (sweep / "sweep.sbatch").read_text()
    for run_dir in run_dirs:
        assert site.wait(run_dir.name)[0] == "completed"
    for run_dir, record in zip(run_dirs, records):
        launched = json.loads((run_dir / "fake-torchrun" / "node-0.json").read_text())
        assert launched["args"][-1] == str(run_dir)
        assert "FAKE torchrun done" in Path(record["log"]).read_text()
    again = site.ftc("-m", *site.compile_args("name=sweep", "method.learning_rate=1e-4,2e-4,3e-4,4e-4"))
    assert again.code == 0 and again.out.count("already completed") == 4


def test_sweep_with_different_resources_is_refused(site):
    cli = site.ftc("-m", *site.compile_args("name=mixed", "resources.gpus_per_node=1,2"))
    assert cli.code == 2 and "--gres=gpu:h100:2" in cli.err and len(cli.err.strip().splitlines()) == 1, cli.err
    assert "Submitted" not in cli.out and "submitted" not in cli.out


def test_sweep_array_asks_for_the_longest_time(site):
    cli = site.ftc("-m", *site.compile_args("name=times", "resources.time=00:10:00,00:20:00"))
    assert cli.code == 0, cli.err
    (script,) = [p.read_text() for p in site.root.glob("default/sweeps/*/sweep.sbatch") if "ftc-times-" in p.read_text()]
    assert "#SBATCH --time=00:20:00" in script and "00:10:00" not in script


def test_cancel_running_job(site, jobs):
    cli = site.ftc(*site.compile_args("name=cancelled"), FAKE_TORCHRUN_SECONDS="300")
    assert cli.code == 0, cli.err
    run_dir = site.run_dir(cli)
    jobs.append(site.record(run_dir)["job"])
    assert site.wait(run_dir.name, ("running",))[0] == "running"
    busy = site.ftc(*site.compile_args("name=cancelled"))
    assert busy.code == 2 and "already running" in busy.err
    cancel = site.ftc("cancel", run_dir.name)
    assert cancel.code == 0, cancel.err
    assert site.wait(run_dir.name)[0] == "cancelled"
    assert (run_dir / "stop_requested").read_text().strip() == "cancel"


def test_two_nodes_agree_on_rendezvous(site, jobs):
    cli = site.ftc(*site.compile_args("name=two-nodes", "resources.nodes=2", "resources.gpus_per_node=2"))
    assert cli.code == 0, cli.err
    run_dir = site.run_dir(cli)
    jobs.append(site.record(run_dir)["job"])
    assert site.wait(run_dir.name)[0] == "completed"
    launches = [json.loads(p.read_text()) for p in sorted((run_dir / "fake-torchrun").glob("node-*.json"))]
    assert sorted(x["node_id"] for x in launches) == ["0", "1"]
    assert sorted(x["slurmd_node"] for x in launches) == ["node1", "node2"]
    for flag in ("--nnodes=", "--rdzv-endpoint=", "--rdzv-id=", "--nproc-per-node="):
        values = {next(a for a in x["args"] if a.startswith(flag)) for x in launches}
        assert len(values) == 1, (flag, values)
    args = launches[0]["args"]
    port = 29500 + int(site.record(run_dir)["job"]) % 1000  # the job's own port, in the cluster's range
    assert "--nnodes=2" in args and "--nproc-per-node=2" in args and f"--rdzv-endpoint=node1:{port}" in args


def test_status_without_sacct(site, jobs, tmp_path):
    cli = site.ftc(*site.compile_args("name=no-sacct"))
    run_dir = site.run_dir(cli)
    jobs.append(site.record(run_dir)["job"])
    assert site.wait(run_dir.name)[0] == "completed"
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("sacct", "squeue"):
        (broken / name).write_text("#!/bin/sh\necho \"$0: error: Slurm accounting storage is disabled\" >&2\nexit 1\n")
        (broken / name).chmod(0o755)
    path = f"{broken}{os.pathsep}{site.env['PATH']}"
    detail = site.ftc("status", run_dir.name, PATH=path)
    assert "state      completed [from the job script's end record]" in detail.out, detail.out + detail.err
    assert detail.err.strip() == "ftc: squeue failed: Slurm accounting storage is disabled"
    (run_dir / "logs" / "job-end.json").unlink()
    detail = site.ftc("status", run_dir.name, PATH=path)
    assert "state      completed [from last known, " in detail.out, detail.out + detail.err
    (run_dir / "logs" / "slurm-last-known.json").unlink()
    detail = site.ftc("status", run_dir.name, PATH=path)
    assert "state      completed [from status.json" in detail.out, detail.out + detail.err


def test_timeout_says_failed_timeout(site, timeout_run):
    state, seen = site.wait(timeout_run.name, deadline=150)
    assert state == "failed (timeout)", seen
    row = next(line for line in site.ftc("status").out.splitlines() if timeout_run.name in line)
    assert "failed (timeout)" in row
