"""compiler/limits.py's bounds at the edge (tests/hostile/bounds.yaml): one line, at once, nothing written."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from ftc.compiler.cli import main

HERE = Path(__file__).resolve().parent
CASES = yaml.safe_load((HERE / "hostile" / "bounds.yaml").read_text())


def _expand(text: str) -> str:
    return re.sub(r"\{(\d+)\*([^}]*)\}", lambda m: m.group(2) * int(m.group(1)), text)


def _run(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def warm():
    """Hydra composed once, as on a second command in one process: the bound is timed, not the imports."""
    import contextlib

    with contextlib.suppress(SystemExit):
        main(["dry_run=true", "model=tiny", "output_root=/nonexistent/never/written", "training.seed=-1"])


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_a_bound_is_one_line_at_once(case, warm, tmp_path, capsys):
    root = tmp_path / "runs"
    args = [f"output_root={root}", "dry_run=true", "model=tiny"]
    for arg in case.get("args", []):
        expanded = _expand(arg)
        args += expanded.split() if arg.startswith("{2000*") else [expanded]
    if "dataset" in case or "json_array" in case:
        data = tmp_path / "data"
        (data / "training").mkdir(parents=True)
        (data / "validation").mkdir()
        (data / "validation" / "part-0.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
        if "json_array" in case:
            with open(data / "training" / "part-0.json", "w") as handle:
                handle.write('[{"prompt": "a", "completion": "b"}')
                handle.truncate(case["json_array"])
        else:
            with open(data / "training" / "part-0.jsonl", "w") as handle:
                handle.write('{"prompt": "a", "completion": "b"}\n' + _expand(case["dataset"]) + "\n")
        args.append(f"data.path={data}")
    if args.count("-m"):
        args.remove("-m")
        args.insert(0, "-m")
    capsys.readouterr()
    started = time.monotonic()
    code, err = _run(args, capsys)
    took = time.monotonic() - started
    assert code == 2, err[-2000:]
    (line,) = err.splitlines()
    assert line.startswith("ftc: error: ") and case["says"] in line, line[:500]
    assert "Traceback" not in err
    assert took < 1.0, f"{took:.2f} s"
    assert not root.exists() or not any(root.rglob("*"))


def test_readme_states_every_bound_as_limits_has_it():
    from ftc.compiler import limits

    readme = (HERE.parent / "README.md").read_text()
    section = readme[readme.index("- **Bounds, stated once**"):]
    section = section[:section.index("\n- **", 5)]
    for name in ("SWEEP_POINTS", "SWEEP_POINTS_CEILING", "SWEEP_AXIS", "OVERRIDES", "OVERRIDE_CHARS", "OVERRIDE_DEPTH",
                 "LIST_ITEMS", "DATASET_ROWS", "SITE_YAML_NODES"):
        assert f"{getattr(limits, name):,}" in section, name
    assert f"{limits.DATASET_JSON_BYTES >> 20} MiB" in section
    assert f"{limits.DATASET_LINE_BYTES >> 20} MiB" in section and f"{limits.SITE_FILE_BYTES >> 20} MiB" in section
