"""`ftc site check`: both shipped sites pass against the test Slurm; a broken copy fails at its file and line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from slurm_fixtures import CI_SITE, REPO, require_slurm  # noqa: E402

EXAMPLE_SITE = REPO / "examples" / "site"


def site_check(*folders: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("FTC_SITE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "ftc", "site", "check", *map(str, folders)],
                          capture_output=True, text=True, env=full, timeout=300)


@pytest.mark.slurm
@pytest.mark.parametrize("folder", [CI_SITE, EXAMPLE_SITE], ids=["ci", "example"])
def test_a_shipped_site_passes_with_its_scripts_accepted_by_slurm(folder):
    require_slurm()
    result = site_check(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("site check: clean")
    for name in ("job.sbatch", "sweep.sbatch (array)"):
        assert f"{name} accepted by sbatch --test-only" in result.stdout
    assert "refuses  llama70b/sft" in result.stdout  # shown with its reason, not a problem


def broken_copy(tmp_path: Path, edit) -> Path:
    site = tmp_path / "site"
    shutil.copytree(CI_SITE, site)
    path = site / "cluster" / "ci.yaml"
    path.write_text(edit(path.read_text()))
    return site


def test_a_broken_copy_fails_naming_file_line_and_a_close_name(tmp_path):
    site = broken_copy(tmp_path, lambda text: text.replace("    gpus_per_node: 8\n", "    gpus_per_nod: 8\n", 1)
                       .replace("array_parallelism: 4", "array_parallelism: many"))
    (site / "cluster").chmod(0o757)
    result = site_check(site)
    path = site / "cluster" / "ci.yaml"
    lines = path.read_text().splitlines()
    typo = lines.index("    gpus_per_nod: 8") + 1
    bad = lines.index("array_parallelism: many") + 1
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"{path}:{typo}: cluster.partitions.h100.gpus_per_nod: unknown field; did you mean gpus_per_node?" in out
    assert f"{path}:{bad}: cluster.array_parallelism: input should be a valid integer" in out
    assert f"{site / 'cluster'}: writable by every user (mode 0757; chmod o-w)" in out
    assert out.rstrip().endswith("site check: 4 problems")  # the missing field too: it is what the typo hides


def test_a_file_that_is_not_yaml_names_its_line(tmp_path):
    site = broken_copy(tmp_path, lambda text: text.replace("partition: h100", "partition: [h100", 1))
    result = site_check(site)
    assert result.returncode == 1 and f"{site / 'cluster' / 'ci.yaml'}:" in result.stdout
    assert "not YAML" in result.stdout


@pytest.mark.parametrize("key, value", [
    ("", "x"), ("x" * 5000, "1"), ("\x1b[31mred", "1"), ('qu"ote', "'"), ("back\\slash", "\\"),
])
def test_hostile_unknown_fields_are_one_escaped_line_each(tmp_path, key, value):
    import yaml

    site = broken_copy(tmp_path, lambda text: text + yaml.safe_dump({key: value}))
    result = site_check(site)
    assert result.returncode == 1 and "unknown field" in result.stdout
    assert "\x1b" not in result.stdout and "Traceback" not in result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1 and len(problems[0]) < 1000


def test_usage_mistakes_are_one_line_exit_2(tmp_path):
    for args in (["site"], ["site", "lint"], ["site", "check", "--fast"], ["site", "check", str(tmp_path / "none")]):
        proc = subprocess.run([sys.executable, "-m", "ftc", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
