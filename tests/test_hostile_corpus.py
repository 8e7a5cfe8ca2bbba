"""The hostile corpus (tests/hostile/*.yaml): every request in it is refused at compile time.

Refused means: exit 2, one line `ftc: error: <field or file:line>: ...`, no traceback, nothing under the
output root, nothing submitted. The cases run in-process (fast); a sample also runs through the real
CLI against the test Slurm, where "nothing queued" is asked of squeue itself.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from ftc.compiler.cli import main

from site_files import admin_site
from slurm_fixtures import CI_SITE, require_slurm, slurm

HOSTILE = Path(__file__).parent / "hostile"
COMPILE_CASES = yaml.safe_load((HOSTILE / "compile.yaml").read_text())
LINE_CASES = yaml.safe_load((HOSTILE / "dataset_lines.yaml").read_text())
GOOD_ROW = json.dumps({"prompt": "question?", "completion": "answer."})


@pytest.fixture
def places(tmp_path) -> dict[str, str]:
    """What {file}, {fifo}, ... in the corpus stand for: real files of each awkward kind."""
    (tmp_path / "a-file").write_text("not a folder\n")
    os.mkfifo(tmp_path / "a-fifo")
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.json").write_text("[1, 2]\n")
    site = tmp_path / "user-site"
    (site / "cluster").mkdir(parents=True)
    (site / "cluster" / "evil.yaml").write_text("defaults: [local, _self_]\nsetup: ['touch PWNED']\n")
    return {"tmp": str(tmp_path), "file": str(tmp_path / "a-file"), "fifo": str(tmp_path / "a-fifo"),
            "emptydir": str(tmp_path / "empty"), "jsonlist": str(tmp_path / "list.json"), "site": str(site)}


def _fill(arg: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def _refused(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_clean_line(code: int, out: str, err: str, field: str, root: Path) -> None:
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert re.match(r"ftc: error: " + re.escape(field) + r"(:|\.| )", lines[0]), lines[0]
    assert "Traceback" not in err and out == ""
    assert not root.exists() or not any(root.rglob("*")), f"left behind: {list(root.rglob('*'))}"


@pytest.mark.parametrize("case", COMPILE_CASES, ids=[f"{i}-{c['field']}" for i, c in enumerate(COMPILE_CASES)])
def test_hostile_request_is_one_line(case, places, output_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [_fill(a, places) for a in case["args"]]
    if "site" in case:
        args = [admin_site(tmp_path, monkeypatch, "example", case["site"], name="hostile"), *args]
    code, out, err = _refused([*args, "dry_run=true"], capsys)
    assert_one_clean_line(code, out, err, case["field"], output_root)
    assert case.get("says", "") in err, err
    assert not (tmp_path / "PWNED").exists()


def _line_bytes(case: dict) -> bytes:
    if "hex" in case:
        return bytes.fromhex(case["hex"])
    if "nested" in case:
        return (case["opener"] * case["nested"]).encode()
    return case["line"].encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("case", LINE_CASES, ids=[c["why"][:50] for c in LINE_CASES])
def test_hostile_dataset_line_is_one_line(case, output_root, tmp_path, capsys):
    data = tmp_path / "data"
    for split in ("training", "validation"):
        (data / split).mkdir(parents=True)
        (data / split / "part-0.jsonl").write_text(GOOD_ROW + "\n" + GOOD_ROW + "\n")
    training = data / "training" / "part-0.jsonl"
    training.write_bytes(GOOD_ROW.encode() + b"\n" + _line_bytes(case) + b"\n")
    code, out, err = _refused(["data=custom", "data.name=hostile", f"data.path={data}", "dry_run=true"], capsys)
    assert_one_clean_line(code, out, err, f"{training}:2", output_root)


def test_the_corpus_is_as_large_as_promised():
    assert len(COMPILE_CASES) >= 150 and len(LINE_CASES) >= 40
    fields = {c["field"].split(".")[0] for c in COMPILE_CASES}
    assert {"name", "output_root", "data", "method", "resources", "training", "cluster", "hydra", "model"} <= fields


# A sample through the real CLI, submitting to the test Slurm: refused before anything is queued.
SUBPROCESS_SAMPLE = [c for c in COMPILE_CASES if "site" not in c and "\x00" not in "".join(c["args"])][::40]


@pytest.mark.slurm
@pytest.mark.parametrize("case", SUBPROCESS_SAMPLE, ids=[c["field"] for c in SUBPROCESS_SAMPLE])
def test_hostile_request_through_the_cli_queues_nothing(case, places, ftc, output_root, tmp_path):
    require_slurm()
    args = [_fill(a, places) for a in case["args"]]
    if not any(a.startswith(("cluster", "+cluster", "~cluster", "++cluster")) for a in args):
        args = ["cluster=ci", *args]
    result = ftc(*args, env={"FTC_SITE_CONFIG": str(CI_SITE)})
    assert_one_clean_line(result.code, result.out, result.err, case["field"], output_root)
    queued = slurm("squeue", "-h", "-o", "%o", check=True).stdout.split()
    assert not [script for script in queued if script.startswith(str(output_root))]
