"""The inputs issue 18 adds, taken hostile: `output_root=` on the commands that read runs,
`--all-users`, and the listing's owner filter (the two-user checks are in tests/test_team.py)."""

from __future__ import annotations

import os

import pytest
from test_jobs import compiled

from ftc.compiler import cli
from ftc.compiler.errors import UserError
from ftc.compiler.runs import jobs

COMMANDS = ["status", "compare", "logs", "cancel", "generate", "chat", "export"]


@pytest.mark.parametrize("value, says", [
    ("", "output_root: empty"),
    ("   ", "output_root: empty"),
    ("a" * 5000, "not a folder name"),
    ("runs\x1b[31m", "not a folder name"),
    ("ru\nns", "not a folder name"),
    ("ru\x00ns", "not a folder name"),
])
@pytest.mark.parametrize("command", COMMANDS)
def test_output_root_refused_in_one_line(command, value, says):
    with pytest.raises(UserError) as refused:
        cli.run([command, "abc123", f"output_root={value}"])
    assert says in str(refused.value) and "\x1b" not in str(refused.value) and "\n" not in str(refused.value)


def test_output_root_given_twice_is_refused():
    with pytest.raises(UserError, match="more than once"):
        cli.run(["status", "output_root=a", "--root", "b"])


@pytest.mark.parametrize("value", ["we'ird", 'q"uote', "back\\slash", "sp ace"])
def test_output_root_with_quotes_and_backslashes_is_a_folder(tmp_path, value, capsys):
    """Quoted and backslashed names are folder names like any other: status lists the runs there."""
    run = compiled(tmp_path / "plain", "cluster=example", "name=odd")
    from ftc.compiler import records

    run_dir = __import__("pathlib").Path(run.plan.run_dir)
    records.write_record(run_dir, records.new_record(run_dir, "slurm", job="77", job_id="77"))
    root = tmp_path / value
    (tmp_path / "plain").rename(root)  # the main command takes such a name quoted (Hydra); these take it as is
    assert cli.run(["status", f"output_root={root}"]) == 0
    assert run.plan.run_id in capsys.readouterr().out
    assert cli.run(["status", run.plan.run_id[:8], f"output_root={root}"]) == 0
    assert "owner " in capsys.readouterr().out


def test_output_root_is_not_a_run_selector(tmp_path, capsys):
    """`ftc status output_root=X` lists X (it was read as a run id before)."""
    assert cli.run(["status", f"output_root={tmp_path}"]) == 0
    assert f"no submitted runs of yours under {tmp_path}" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--all-users=yes"], ["--all-users", "--all-users=1"], ["--all-user\x1b"]])
def test_all_users_takes_no_value(args):
    with pytest.raises(UserError) as refused:
        jobs.status_command(args)
    assert "\x1b" not in str(refused.value)


def test_the_listing_is_the_callers_runs(tmp_path, capsys, monkeypatch):
    """A run folder owned by another uid is left out by default and listed with --all-users."""
    run = compiled(tmp_path, "cluster=example", "name=theirs")
    from ftc.compiler import records

    run_dir = __import__("pathlib").Path(run.plan.run_dir)
    records.write_record(run_dir, records.new_record(run_dir, "slurm", job="78", job_id="78"))
    monkeypatch.setattr(os, "getuid", lambda: 4242)  # as if another user looked
    assert jobs.status_command(["--root", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert run.plan.run_id not in listed and "(1 run of other users: ftc status --all-users lists them)" in listed
    assert jobs.status_command(["--root", str(tmp_path), "--all-users"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if run.plan.run_id in line)
    assert row.split()[2] == __import__("pwd").getpwuid(run_dir.stat().st_uid).pw_name


def test_export_of_another_users_run_writes_nothing_into_it(tmp_path, monkeypatch):
    """Export writes its log (and by default the export) into the run folder: not into another's."""
    import json
    from pathlib import Path

    from ftc.runtime import export

    run = compiled(tmp_path, "name=exported")
    run_dir = Path(run.plan.run_dir)
    (run_dir / "output" / "adapter").mkdir(parents=True)
    (run_dir / "outputs.json").write_text(json.dumps({"paths": {"adapter": str(run_dir / "output" / "adapter")}}))
    before = sorted(p.name for p in run_dir.rglob("*"))
    monkeypatch.setattr(os, "getuid", lambda: 4242)
    with pytest.raises(UserError, match="belongs to .*--to DIR"):
        export.export_command([run.plan.run_id, "--root", str(tmp_path)])
    assert sorted(p.name for p in run_dir.rglob("*")) == before
