"""Site knobs real clusters need: a QOS's per-job limits in the plan (declared by the site or read
with sacctmgr), and gpu_request: gpus honoured by single and array scripts alike."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ftc.compiler.cli import main  # noqa: E402
from ftc.compiler.planning import qos  # noqa: E402
from site_files import admin_site  # noqa: E402
from slurm_fixtures import CI_SITE, require_slurm, slurm  # noqa: E402

QOS = {"qos_limits": {"short": {"max_time": "01:00:00", "max_gpus_per_job": 4}}}


def run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "dry_run=true"])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_a_declared_qos_refuses_a_longer_time_at_compile_time(tmp_path, monkeypatch, output_root, capsys):
    cluster = admin_site(tmp_path, monkeypatch, "example", QOS)
    code, out, err = run([cluster, "model=llama8b", "cluster.qos=short", "resources.time=04:00:00"], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("ftc: error: resources.time: --time=04:00:00 is longer than QOS short's MaxWall 01:00:00")
    assert "cluster.qos_limits.short" in err and not output_root.exists()


def test_the_planner_keeps_within_the_qos(tmp_path, monkeypatch, output_root, capsys):
    cluster = admin_site(tmp_path, monkeypatch, "example", QOS)
    code, out, err = run([cluster, "model=llama8b", "method=sft", "cluster.qos=short"], capsys)
    assert code == 0, err
    assert "#SBATCH --qos=short" in out and "#SBATCH --gpus-per-node=4" in out  # the fewest that fit, within 4
    code, out, err = run([cluster, "model=llama70b", "method=sft", "cluster.qos=short"], capsys)
    assert code == 2 and "under cluster.qos=short: QOS short allows MaxWall 01:00:00, 4 GPUs per job" in err
    code, out, err = run([cluster, "model=llama8b", "method=sft"], capsys)  # another QOS: the partition's own limits
    assert code == 0, err


def test_without_a_declaration_and_without_sacctmgr_nothing_is_limited(tmp_path, monkeypatch, output_root, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sacctmgr
    qos.read_sacctmgr.cache_clear()
    code, out, err = run(["cluster=example", "model=llama8b", "cluster.qos=short", "resources.time=04:00:00"], capsys)
    assert code == 0, err


def test_sacctmgr_limits_are_read():
    assert qos._tres("cpu=8,gres/gpu:h100=4,node=2", "gres/gpu") == 4
    assert qos._tres("cpu=8,node=2", "node") == 2 and qos._tres("", "node") is None


@pytest.mark.slurm
def test_a_qos_with_maxwall_1h_refuses_a_4h_plan_on_the_test_slurm(monkeypatch, output_root, capsys):
    require_slurm()
    slurm("sacctmgr", "-i", "add", "qos", "ftc-site-1h", "MaxWall=01:00:00")  # idempotent; no restart
    assert slurm("sacctmgr", "-n", "-P", "show", "qos", "ftc-site-1h", "format=maxwall").stdout.strip() == "01:00:00"
    monkeypatch.setenv("FTC_SITE_CONFIG", str(CI_SITE))
    qos.read_sacctmgr.cache_clear()
    args = ["cluster=ci", "cluster.partition=cpu", "model=tiny", "cluster.qos=ftc-site-1h"]
    code, out, err = run([*args, "resources.time=04:00:00"], capsys)
    assert code == 2 and "QOS ftc-site-1h's MaxWall 01:00:00 (from sacctmgr)" in err and len(err.splitlines()) == 1
    code, out, err = run([*args, "resources.time=00:45:00"], capsys)
    assert code == 0, err


@pytest.mark.slurm
def test_gpu_request_gpus_renders_gpus_per_node_in_single_and_array_scripts_accepted_by_slurm(
        tmp_path, monkeypatch, output_root, capsys):
    require_slurm()
    monkeypatch.setenv("FTC_SITE_CONFIG", str(CI_SITE))
    cluster = admin_site(tmp_path, monkeypatch, "ci", {"gpu_request": "gpus"})
    code, out, err = run([cluster, "model=llama8b"], capsys)
    assert code == 0, err
    single = next(output_root.rglob("job.sbatch"))
    with pytest.raises(SystemExit):
        main(["-m", cluster, "model=llama8b", "method.learning_rate=1e-4,2e-4", "dry_run=true"])
    capsys.readouterr()
    array = next(output_root.rglob("sweep.sbatch"))
    for script in (single, array):
        text = script.read_text()
        assert "#SBATCH --gpus-per-node=1" in text and "--gres" not in text
        proc = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and " to start at " in proc.stderr, proc.stderr


def scripts(output_root: Path, cluster: str, capsys) -> tuple[str, str]:
    """The single job's script and the job array's, from dry runs."""
    code, out, err = run([cluster, "model=llama8b"], capsys)
    assert code == 0, err
    with pytest.raises(SystemExit):
        main(["-m", cluster, "model=llama8b", "method.learning_rate=1e-4,2e-4", "dry_run=true"])
    capsys.readouterr()
    single = sorted(output_root.rglob("job.sbatch"))[0].read_text()
    return single, next(output_root.rglob("sweep.sbatch")).read_text()


def test_a_sites_directive_override_applies_to_single_jobs_and_arrays(tmp_path, monkeypatch, output_root, capsys):
    cluster = admin_site(tmp_path, monkeypatch, "example", {})
    templates = tmp_path / "admin-site-admin" / "templates"
    templates.mkdir()
    (templates / "job.sbatch.j2").write_text(
        '{% extends "ftc/job.sbatch.j2" %}\n{% block directives %}{{ super() }}#SBATCH --comment=site-{{ run_id }}\n'
        "{% endblock %}\n")
    single, array = scripts(output_root, cluster, capsys)
    assert "#SBATCH --comment=site-" in single and "#SBATCH --array=0-1%" in array
    sweep_id = re.search(r"# ftc sweep (\w+):", array).group(1)
    assert f"#SBATCH --comment=site-sweep-{sweep_id}\n" in array


@pytest.mark.parametrize("kind", ["apptainer", "singularity"])
def test_apptainer_binds_come_from_container_mounts(tmp_path, monkeypatch, output_root, capsys, kind):
    cluster = admin_site(tmp_path, monkeypatch, "example", {"container": {
        "kind": kind, "image": "/c/ftc.sif", "mounts": ["/data:/data:ro", "/scratch"]}})
    single, _ = scripts(output_root, cluster, capsys)
    assert f"  {kind} exec --nv --bind /data:/data:ro --bind /scratch /c/ftc.sif \\\n" in single


@pytest.mark.parametrize("mount", ["", "a,b", "a\\b", "a\nb", "a\x1bb"])
def test_a_bad_mount_is_one_line(tmp_path, monkeypatch, output_root, capsys, mount):
    cluster = admin_site(tmp_path, monkeypatch, "example", {"container": {
        "kind": "apptainer", "image": "/c/ftc.sif", "mounts": [mount]}})
    code, out, err = run([cluster, "model=llama8b"], capsys)
    assert code == 2 and err.startswith("ftc: error: cluster.container.mounts") and len(err.splitlines()) == 1


@pytest.mark.parametrize("kind, says", [
    ("pyxis", "srun on {host} has no --container-image option: the pyxis plugin is not installed here (cluster.container.kind=pyxis)"),
    ("apptainer", "apptainer is not installed on {host} (cluster.container.kind=apptainer)"),
])
def test_a_missing_container_runtime_on_the_node_is_named(tmp_path, monkeypatch, output_root, capsys, kind, says):
    """The real script, run by bash with Slurm's own srun (no pyxis here) and no apptainer on PATH."""
    if not shutil.which("srun"):
        pytest.skip("srun not installed")
    cluster = admin_site(tmp_path, monkeypatch, "local", {"container": {"kind": kind, "image": "/c/ftc.sif"}})
    code, out, err = run([cluster, "model=tiny"], capsys)
    assert code == 0, err
    script = next(output_root.rglob("job.sbatch"))
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not Path(p, "apptainer").exists())
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": path, "SLURM_JOB_ID": "1"})
    assert proc.returncode == 69, proc.stderr  # EX_UNAVAILABLE
    assert proc.stderr.strip() == f"ftc: error: {says.format(host=socket.gethostname())}"
