"""Upgrades that keep the queue: run ids across releases, stored plans of every earlier schema version,
plans this ftc cannot run refused on the login node, folders with history keep their plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import ftc
from ftc.compiler import records
from ftc.compiler.driver import compile_and_run, compile_point
from ftc.compiler.errors import UserError
from ftc.compiler.planning import build
from ftc.compiler.planning.versions import PLAN_SCHEMA
from ftc.compiler.submit import submitter
from ftc.compiler.submit.folder import write_run
from ftc.compiler.submit.kept import folder_run
from ftc.runtime.planfile import load_plan

sys.path.insert(0, str(Path(__file__).parent))

from plan_factory import CONF, default_model_path, log_tail, read_status, run_runtime  # noqa: E402

STORED = Path(__file__).parent / "data" / "plans"
TINY = ["model=tiny", "method=lora", "cluster=local", "method.max_steps=2", "eval.before=false"]


def stored_plan(version: int, run_dir: Path) -> Path:
    """tests/data/plans/plan-vN.json (written by the release that wrote schema N) in a run folder here."""
    text = (STORED / f"plan-v{version}.json").read_text()
    for mark, value in {"@RUN_DIR@": run_dir, "@RUN_ROOT@": run_dir.parents[2], "@MODEL@": default_model_path(),
                        "@DATA@": CONF / "datasets" / "demo" / "sft"}.items():
        text = text.replace(mark, str(value))
    run_dir.mkdir(parents=True)
    (run_dir / "plan.json").write_text(text)
    return run_dir


def test_every_earlier_schema_has_a_stored_plan_that_migrates(tmp_path):
    for version in range(1, PLAN_SCHEMA):
        run_dir = stored_plan(version, tmp_path / "default" / f"tiny-llama-demo-lora-v{version}" / "r1")
        plan = load_plan(str(run_dir))
        assert plan.plan_schema == PLAN_SCHEMA and plan.ftc_version == "0.1.0"


@pytest.mark.train
@pytest.mark.parametrize("version", range(1, PLAN_SCHEMA))
def test_a_stored_plan_of_each_earlier_version_runs(tmp_path, version):
    run_dir = stored_plan(version, tmp_path / "default" / "tiny-llama-demo-lora" / "269acfef97")
    assert run_runtime(run_dir) == 0, log_tail(run_dir)
    assert read_status(run_dir)["state"] == "completed"


@pytest.mark.parametrize("change, words", [
    ({"plan_schema": PLAN_SCHEMA + 1}, f"plan_schema {PLAN_SCHEMA + 1} is newer than this ftc"),
    ({"ftc_version": "7.0.0"}, "another major release"),
    ({"plan_schema": "2"}, "plan_schema: must be a whole number"),
    ({"plan_schema": True}, "plan_schema: must be a whole number"),
    ({"plan_schema": 0}, "plan_schema: must be a whole number"),
])
def test_a_plan_this_ftc_cannot_run_is_refused_in_one_line(tmp_path, change, words):
    run_dir = stored_plan(1, tmp_path / "default" / "x" / "r1")
    plan = json.loads((run_dir / "plan.json").read_text())
    (run_dir / "plan.json").write_text(json.dumps({**plan, **change}))
    with pytest.raises(UserError) as caught:
        load_plan(str(run_dir))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_changing_the_version_keeps_the_run_id(output_root, monkeypatch):
    _, before = compile_point(TINY)
    monkeypatch.setattr(ftc, "__version__", "0.1.1")
    _, after = compile_point(TINY)
    assert after.plan.run_id == before.plan.run_id and after.plan.run_dir == before.plan.run_dir
    assert (before.plan.ftc_version, after.plan.ftc_version) == ("0.1.0", "0.1.1")
    _, other = compile_point([*TINY, "method.max_steps=3"])
    assert other.plan.run_id != before.plan.run_id


def submitted_before(run) -> Path:
    """A folder as a submission leaves it: the files and a job record."""
    run_dir = write_run(run)
    records.write_record(run_dir, records.new_record(run_dir, "slurm", job="123", job_id="123", array_index=None))
    return run_dir


def test_a_submitted_run_keeps_its_plan_after_an_upgrade_and_says_what_changed(output_root, monkeypatch, capsys):
    _, old = compile_point(TINY)
    run_dir = submitted_before(old)
    monkeypatch.setattr(ftc, "__version__", "0.1.1")
    monkeypatch.setattr(build, "advise", lambda job, rows: (["a warning the new release adds"], []))
    _, new = compile_point(TINY)
    assert new.files["plan.json"] != old.files["plan.json"]
    write_run(new)
    assert (run_dir / "plan.json").read_text() == old.files["plan.json"]  # not rewritten under the queue
    kept, note = folder_run(new)
    assert kept.files == old.files and kept.plan == old.plan
    assert f"run {old.plan.run_id} keeps the plan ftc 0.1.0 compiled for it" in note
    assert "(warnings)" in note and f"remove {run_dir}" in note
    assert compile_and_run([*TINY, "dry_run=true"], multirun=False) == 0
    out = capsys.readouterr().out
    assert "keeps the plan ftc 0.1.0" in out and old.script in out and "Compiled by ftc 0.1.1" not in out


def test_a_completed_run_stays_completed_after_an_upgrade(output_root, monkeypatch):
    _, old = compile_point(TINY)
    run_dir = submitted_before(old)
    records.write_json_record(run_dir / records.JOB_END_FILE, {
        "job": "123", "state": "completed", "exit_code": 0, "finished_at": records.now()})
    monkeypatch.setattr(ftc, "__version__", "0.1.1")
    monkeypatch.setattr(build, "advise", lambda job, rows: (["a warning the new release adds"], []))
    _, new = compile_point(TINY)
    lines = list(submitter.submission(new))
    assert lines[0].startswith(f"run {old.plan.run_id} keeps the plan")
    assert lines[1].startswith(f"run {old.plan.run_id} already completed") and len(lines) == 2


def test_a_kept_plan_this_ftc_cannot_run_is_refused_at_submit(output_root, monkeypatch):
    _, old = compile_point(TINY)
    run_dir = submitted_before(old)
    plan = json.loads((run_dir / "plan.json").read_text())
    (run_dir / "plan.json").write_text(json.dumps({**plan, "plan_schema": PLAN_SCHEMA + 1}))
    with pytest.raises(UserError) as caught:
        list(submitter.submission(old))
    assert "is newer than this ftc" in str(caught.value) and f"remove {run_dir}" in str(caught.value)


def test_a_folder_never_submitted_gets_the_new_plan(output_root, monkeypatch):
    _, old = compile_point(TINY)
    run_dir = write_run(old)
    monkeypatch.setattr(build, "advise", lambda job, rows: (["a warning the new release adds"], []))
    _, new = compile_point(TINY)
    write_run(new)
    assert (run_dir / "plan.json").read_text() == new.files["plan.json"]
    assert folder_run(new) == (new, None)


def test_status_shows_a_plan_an_earlier_release_wrote(output_root, ftc):
    stored_plan(1, output_root / "default" / "tiny-llama-demo-lora" / "269acfef97")
    result = ftc("status", "269acfef97")
    assert result.code == 0, result.err
    assert "run        default/tiny-llama-demo-lora@269acfef97" in result.out and "\nlayout " in result.out
