"""Every shipped model x method on every partition of both example sites (conf/cluster/example.yaml
and examples/site, plain and pyxis): each compiles to a script that passes shellcheck and the real
`sbatch --test-only` of the test controller, or is refused in one line.

The test controller's partitions carry the same names and GRES types, two nodes each, so plans are
capped at two nodes (partitions.<p>.max_nodes: 2 in an admin's file over each site's, as the command
line may not set a site's limits); .ci/slurm/slurm.conf has the shape.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ftc.compiler.config.sites import shipped_conf
from ftc.compiler.driver import compile_point
from ftc.compiler.errors import UserError
from ftc.compiler.submit.folder import write_run
from site_files import admin_cluster
from slurm_fixtures import REPO, require_slurm, slurm

EXAMPLE_SITE = REPO / "examples" / "site"
MODELS = sorted(p.stem for p in (shipped_conf() / "model").glob("*.yaml"))
METHODS = sorted(p.stem for p in (shipped_conf() / "method").glob("*.yaml"))
SITES = {  # cluster option -> its file
    "example": shipped_conf() / "cluster" / "example.yaml",
    "campus": EXAMPLE_SITE / "cluster" / "campus.yaml",
    "campus-pyxis": EXAMPLE_SITE / "cluster" / "campus.yaml",
}


def _partitions(cluster_file: Path) -> list[str]:
    return list(yaml.safe_load(cluster_file.read_text())["partitions"])


def _capped(folder: Path) -> None:
    """Each site's cluster at two nodes a partition: `<cluster>-2nodes`, as the test controller has."""
    for cluster, cluster_file in SITES.items():
        two = {f"partitions.{partition}.max_nodes": 2 for partition in _partitions(cluster_file)}
        admin_cluster(folder, cluster, two, name=f"{cluster}-2nodes")


def _compile_all(output_root: Path) -> tuple[list[Path], dict[str, str]]:
    scripts, refused = [], {}
    for cluster, cluster_file in SITES.items():
        for partition in _partitions(cluster_file):
            for model in MODELS:
                for method in METHODS:
                    args = [f"cluster={cluster}-2nodes", f"cluster.partition={partition}", f"model={model}",
                            f"method={method}", "dry_run=true", f"name={model.replace('.', '-')}-{method}"]
                    key = " ".join(args[:4])
                    try:
                        _, run = compile_point(args)
                    except UserError as exc:
                        refused[key] = exc.problems
                        continue
                    write_run(run)
                    scripts.append(Path(run.plan.run_dir) / "job.sbatch")
    return scripts, refused


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root, capped = tmp_path_factory.mktemp("site-scripts"), tmp_path_factory.mktemp("two-nodes-site")
    _capped(capped)
    saved = {k: os.environ.get(k) for k in ("FTC_SITE_CONFIG", "FTC_OUTPUT_ROOT")}
    os.environ["FTC_SITE_CONFIG"] = f"{capped}{os.pathsep}{EXAMPLE_SITE}"
    os.environ["FTC_OUTPUT_ROOT"] = str(root)
    try:
        yield _compile_all(root)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_every_combination_compiles_or_is_refused_in_one_line(compiled):
    scripts, refused = compiled
    combinations = sum(len(_partitions(f)) for f in SITES.values()) * len(MODELS) * len(METHODS)
    assert len(scripts) + len(refused) == combinations
    assert len(scripts) > combinations // 2, sorted(refused.items())[:5]
    for key, problems in refused.items():
        assert len(problems) == 1 and "\n" not in problems[0], (key, problems)


def test_every_script_passes_shellcheck(compiled):
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (.ci/run installs it)")
    scripts, _ = compiled
    proc = subprocess.run(["shellcheck", "--shell=bash", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_every_script_passes_sbatch_test_only(compiled):
    require_slurm()
    scripts, _ = compiled
    failures = []
    for script in scripts:
        proc = slurm("sbatch", "--test-only", str(script))
        if proc.returncode != 0 or "to start at" not in proc.stderr:
            failures.append(f"{script.parent.parent.name}: {proc.stderr.strip()}")
    assert not failures, f"{len(failures)} of {len(scripts)} refused:\n" + "\n".join(failures[:20])


def test_the_site_template_extends_every_block(compiled):
    scripts, _ = compiled
    campus = [s for s in scripts if "--partition=gpu" in s.read_text()]
    assert campus
    for script in campus:
        text = script.read_text()
        assert "#SBATCH --comment=ftc-" in text and "export CAMPUS_JOB_OUTPUT=" in text
        assert 'echo "campus: ftc run' in text and 'echo "campus: launching' in text
        assert "# campus: wait for the launch" in text and text.rstrip().endswith('exit "$status"')
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_the_site_model_copy_uses_its_own_weights(compiled):
    scripts, _ = compiled
    import json

    plans = [json.loads((s.parent / "plan.json").read_text()) for s in scripts if "llama8b" in s.parent.parent.name]
    paths = {p["job"]["cluster"]["name"]: p["job"]["model"]["path"] for p in plans}
    assert paths["campus"] == paths["campus-pyxis"] == "/projects/models/meta-llama/Llama-3.1-8B-Instruct"
    assert paths["example"] == "/projects/models/meta-llama/Llama-3.1-8B-Instruct"  # the site folder applies to all
