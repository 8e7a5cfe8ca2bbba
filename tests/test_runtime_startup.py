"""The runtime's first input is plan.json: a bad one, or one compiled for another folder, is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

sys.path.insert(0, str(Path(__file__).parent))

from ftc.compiler.errors import UserError

from plan_factory import OFFLINE_ENV, make_run


@pytest.fixture
def plan_json(tmp_path) -> dict:
    make_run(tmp_path / "run", "lora")
    return json.loads((tmp_path / "run" / "plan.json").read_text())


def load(run_dir: Path) -> str:
    from ftc.runtime.planfile import load_plan

    with pytest.raises(UserError) as caught:
        load_plan(str(run_dir))
    (line,) = caught.value.problems
    assert "\n" not in line and len(line) < 600
    assert all(c.isprintable() for c in line), repr(line)
    return line


def write(run_dir: Path, text: str | bytes) -> Path:
    path = run_dir / "plan.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def with_field(plan: dict, dotted: str, value) -> str:
    node = plan
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return json.dumps(plan)


CASES = {
    "empty": (lambda plan: "", "plan.json: (the whole file):"),
    "not json": (lambda plan: "{'run_id': ", "plan.json: (the whole file):"),
    "a list": (lambda plan: "[]", "plan.json: (the whole file):"),
    "huge": (lambda plan: "[" + "1," * 2_000_000 + "1]", "plan.json: (the whole file):"),
    "deep": (lambda plan: "[" * 100_000 + "]" * 100_000, "plan.json: (the whole file):"),
    "binary": (lambda plan: b"\xff\xfe\x00plan", "plan.json: not UTF-8 text"),
    "wrong type": (lambda plan: with_field(plan, "job.method.learning_rate", "fast"), "job.method.learning_rate:"),
    "non-finite": (lambda plan: with_field(plan, "job.method.learning_rate", float("nan")), "learning_rate: Input"),
    "missing field": (lambda plan: json.dumps({k: v for k, v in plan.items() if k != "topology"}), "topology:"),
    "unknown field": (lambda plan: with_field(plan, "job.method.surprise", 1), "job.method.surprise:"),
    "control characters": (lambda plan: with_field(plan, "topology.nodes", "\x1b[31mred\x07"), "topology.nodes:"),
    "quotes and backslashes": (lambda plan: with_field(plan, "job.training.seed", "'\"\\"), "job.training.seed:"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_plan_names_the_field(tmp_path, plan_json, case):
    make_text, expected = CASES[case]
    run_dir = tmp_path / "run"
    write(run_dir, make_text(plan_json))
    line = load(run_dir)
    assert expected in line, line
    assert "recompile" in line


def test_a_missing_plan_says_how_to_make_one(tmp_path):
    assert "no plan here" in load(tmp_path)


@pytest.mark.parametrize("elsewhere", ["/somewhere/else/run", "/tmp/\x1b[2Jrun'\"\\", "relative/run", ""])
def test_a_plan_of_another_folder_is_refused(tmp_path, plan_json, elsewhere):
    run_dir = tmp_path / "run"
    write(run_dir, with_field(plan_json, "run_dir", elsewhere))
    line = load(run_dir)
    assert "run_dir:" in line and "not this folder" in line, line


def test_the_same_folder_by_another_path_is_accepted(tmp_path, plan_json):
    from ftc.runtime.planfile import load_plan

    (tmp_path / "link").symlink_to(tmp_path / "run")
    assert load_plan(str(tmp_path / "link")).run_id == "run"


def test_a_moved_run_folder_exits_2_with_one_line_and_writes_nothing(tmp_path, plan_json):
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    before = sorted(p.name for p in moved.iterdir())
    proc = subprocess.run([sys.executable, "-m", "ftc.runtime", str(moved)], capture_output=True, text=True,
                          env={**os.environ, **OFFLINE_ENV}, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ftc.runtime: error: ") and "run_dir:" in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in moved.iterdir()) == before
    assert not (tmp_path / "run").exists()
