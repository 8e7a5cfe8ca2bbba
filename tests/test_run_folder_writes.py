"""A run folder is written whole or not at all, and output_root is checked before anything is written."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ftc.compiler.checks.inputs import check_output_root
from ftc.compiler.cli import main
from ftc.compiler.errors import UserError
from ftc.compiler.submit import folder


def _run(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_failing_disk_leaves_nothing_behind(code, fail_at, tmp_path, monkeypatch, capsys):
    """The disk fails at the fail_at-th file write of a fresh run folder under fresh namespace/name folders."""
    root = tmp_path / "runs"
    root.mkdir()
    writes = {"n": 0}
    real_write_text = Path.write_text

    def flaky_write_text(self, *args, **kwargs):
        writes["n"] += 1
        if writes["n"] == fail_at:
            raise OSError(code, __import__("os").strerror(code), str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", flaky_write_text)
    status, err = _run([f"output_root={root}", "dry_run=true"], capsys)
    assert status == 2
    (line,) = err.splitlines()
    assert line.startswith("ftc: error: output_root: cannot write ") and line.endswith("nothing was written")
    assert list(root.iterdir()) == [], "folders or files were left behind"


def test_a_failing_sweep_point_takes_back_the_points_written_before(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    real = folder._write_one
    calls = {"n": 0}

    def second_fails(run, created):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", run.plan.run_dir)
        return real(run, created)

    monkeypatch.setattr(folder, "_write_one", second_fails)
    status, err = _run(["-m", f"output_root={root}", "method.learning_rate=1e-4,2e-4", "dry_run=true"], capsys)
    assert status == 2 and "No space left on device" in err
    assert not root.exists() or not any(root.rglob("*"))


def test_an_existing_run_folder_keeps_its_records_when_a_refresh_fails(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    assert _run([f"output_root={root}", "dry_run=true"], capsys)[0] == 0
    (run_dir,) = [p for p in root.rglob("plan.json")]
    record = run_dir.parent / "job.json"
    record.write_text("{}\n")
    monkeypatch.setattr(folder, "write_atomic", lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    status, err = _run([f"output_root={root}", "dry_run=true"], capsys)
    assert status == 2 and "Read-only file system" in err
    assert record.read_text() == "{}\n" and run_dir.exists()


def test_output_root_is_checked_before_anything_is_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for root, why in [(str(blocker), "is not a folder"), (f"{blocker}/deeper/still", "is not a folder"),
                      ("/proc/ftc-runs", "pseudo filesystem")]:
        with pytest.raises(UserError) as exc:
            check_output_root(root)
        assert why in exc.value.problems[0]
    check_output_root(str(tmp_path / "new" / "runs"))  # creatable: fine
    assert not (tmp_path / "new").exists()


def test_a_run_folder_path_longer_than_the_system_allows_is_refused(tmp_path):
    with pytest.raises(UserError) as exc:
        check_output_root(str(tmp_path), run_dir=str(tmp_path) + "/x" * 3000)
    assert exc.value.problems[0].startswith("output_root: the run folder")
