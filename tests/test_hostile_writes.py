"""Writes that cannot be redirected, and files others could have changed, refused in one line.

A run id is predictable, so anyone who can write under output_root could plant a link where the
next run folder goes; a site file's `setup:` runs on every job and a token file submits as you,
so one that others may write is not used (as ssh refuses a loose authorized_keys).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ftc.compiler.api.auth import load_token
from ftc.compiler.cli import main
from ftc.compiler.errors import UserError

from site_files import admin_site


def _run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _one_refusal(code: int, err: str, says: str) -> None:
    assert code == 2, err
    (line,) = err.splitlines()
    assert line.startswith("ftc: error: ") and says in line, line
    assert "Traceback" not in err


@pytest.fixture
def planned(tmp_path, capsys) -> tuple[Path, Path]:
    """(output root, the run folder a dry run makes there), the folder then removed again."""
    root = tmp_path / "runs"
    code, _, err = _run([f"output_root={root}", "dry_run=true", "model=tiny"], capsys)
    assert code == 0, err
    (plan,) = root.glob("*/*/*/plan.json")
    run_dir = plan.parent
    for path in sorted(run_dir.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    run_dir.rmdir()
    return root, run_dir


@pytest.mark.parametrize("level", [0, 1, 2], ids=["run folder", "model-name folder", "namespace folder"])
def test_a_planted_link_in_place_of_a_folder_is_never_written_through(level, planned, tmp_path, capsys):
    root, run_dir = planned
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = [run_dir, run_dir.parent, run_dir.parent.parent][level]
    for path in sorted(link.rglob("*"), reverse=True) if link.exists() else []:
        path.rmdir()
    if link.exists():
        link.rmdir()
    link.symlink_to(target)
    code, _, err = _run([f"output_root={root}", "dry_run=true", "model=tiny"], capsys)
    _one_refusal(code, err, "a symbolic link")
    assert str(link) in err
    assert list(target.rglob("*")) == [], "written through the link"


@pytest.mark.parametrize("name", ["plan.json", "job.sbatch", "config.yaml"])
def test_a_planted_file_link_is_replaced_not_written_through(name, planned, tmp_path, capsys):
    root, run_dir = planned
    run_dir.mkdir(parents=True)
    outside = tmp_path / "precious.txt"
    outside.write_text("precious\n")
    (run_dir / name).symlink_to(outside)
    code, _, err = _run([f"output_root={root}", "dry_run=true", "model=tiny"], capsys)
    assert code == 0, err
    assert outside.read_text() == "precious\n"
    assert not (run_dir / name).is_symlink()


def test_a_planted_logs_link_is_refused(tmp_path):
    from ftc.compiler.runfolder import open_append, write_atomic

    (tmp_path / "run").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "logs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="a symbolic link"):
        write_atomic(tmp_path / "run" / "logs" / "job-end.json", "{}")
    (tmp_path / "run" / "local.out").symlink_to(tmp_path / "elsewhere" / "x")
    with pytest.raises(OSError, match="a symbolic link"):
        open_append(tmp_path / "run" / "local.out")
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("loose", ["folder 777", "file 666", "file 620", "group folder 770"])
def test_a_site_others_may_write_is_refused(loose, tmp_path, monkeypatch, capsys):
    choice = admin_site(tmp_path, monkeypatch, "example", {"setup": ["module load cuda"]})
    folder = tmp_path / "admin-site-admin"
    what, mode = loose.rsplit(" ", 1)
    path = folder if "folder" in what else folder / "cluster" / "admin.yaml"
    path.chmod(int(mode, 8))
    code, _, err = _run([f"output_root={tmp_path / 'runs'}", "dry_run=true", choice], capsys)
    _one_refusal(code, err, "writable by")
    assert str(path) in err
    assert not (tmp_path / "runs").exists()


def test_a_shared_group_site_is_accepted_when_named(tmp_path, monkeypatch, capsys):
    import grp

    choice = admin_site(tmp_path, monkeypatch, "example", {"setup": ["module load cuda"]})
    (tmp_path / "admin-site-admin" / "cluster" / "admin.yaml").chmod(0o664)
    monkeypatch.setenv("FTC_SHARED_GROUP", grp.getgrgid(os.getgid()).gr_name)
    code, _, err = _run([f"output_root={tmp_path / 'runs'}", "dry_run=true", choice], capsys)
    assert code == 0, err


def test_an_output_root_under_a_folder_others_may_write_is_refused(tmp_path, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    code, _, err = _run([f"output_root={shared / 'me' / 'runs'}", "dry_run=true"], capsys)
    _one_refusal(code, err, "writable by every user")
    assert not (shared / "me").exists()
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot rename what is yours
    code, _, err = _run([f"output_root={shared / 'me' / 'runs'}", "dry_run=true"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("setup", ["symlink", "folder 777", "file 640"])
def test_a_token_file_others_could_change_or_read_is_refused(setup, tmp_path, monkeypatch):
    monkeypatch.delenv("FTC_API_TOKEN", raising=False)
    folder = tmp_path / "config"
    folder.mkdir(mode=0o700)
    real = folder / "real-token"
    real.write_text("t" * 32 + "\n")
    real.chmod(0o600)
    token = folder / "api-token"
    if setup == "symlink":
        token.symlink_to(real)
    else:
        token.write_text("t" * 32 + "\n")
        token.chmod(0o640 if setup == "file 640" else 0o600)
        if setup == "folder 777":
            folder.chmod(0o777)
    with pytest.raises(UserError) as refused:
        load_token(token)
    assert "token file" in str(refused.value) and "t" * 32 not in str(refused.value)


def test_a_site_file_of_nested_aliases_is_refused_at_once(tmp_path, monkeypatch, capsys):
    """The 665-byte 'billion laughs' file: refused by its tokens, never expanded."""
    (tmp_path / "site" / "cluster").mkdir(parents=True)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "site" / "cluster" / "bomb.yaml").write_text("\n".join(["defaults: [example, _self_]", *lines]) + "\n")
    monkeypatch.setenv("FTC_SITE_CONFIG", str(tmp_path / "site"))
    started = time.monotonic()
    code, _, err = _run([f"output_root={tmp_path / 'runs'}", "dry_run=true", "cluster=bomb"], capsys)
    assert time.monotonic() - started < 1.0
    _one_refusal(code, err, "anchors and aliases are not accepted")
    assert "bomb.yaml:2" in err


def test_a_huge_site_file_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "site" / "cluster").mkdir(parents=True)
    (tmp_path / "site" / "cluster" / "big.yaml").write_text("defaults: [example, _self_]\n" + "#" * (2 << 20) + "\n")
    monkeypatch.setenv("FTC_SITE_CONFIG", str(tmp_path / "site"))
    code, _, err = _run([f"output_root={tmp_path / 'runs'}", "dry_run=true", "cluster=big"], capsys)
    _one_refusal(code, err, "a site file may have")


def test_a_template_folder_others_may_write_is_refused(tmp_path, monkeypatch, capsys):
    templates = tmp_path / "templates"
    templates.mkdir()
    templates.chmod(0o777)
    choice = admin_site(tmp_path, monkeypatch, "example", {"template_dir": str(templates)})
    code, _, err = _run([f"output_root={tmp_path / 'runs'}", "dry_run=true", choice], capsys)
    _one_refusal(code, err, "cluster.template_dir")
    assert "writable by every user" in err


def test_two_threads_submitting_into_a_shared_root_leave_the_umask_as_it_was(tmp_path):
    """The API server submits from threads and the umask is the process's: the second caller waits, so the
    first one's restore cannot be undone by the second's (which would leave the team umask for good)."""
    import threading

    from ftc.compiler.runfolder import umask_for

    shared = tmp_path / "team"
    shared.mkdir()
    shared.chmod(0o2775)
    previous = os.umask(0o077)
    try:
        def submit(delay: float, hold: float) -> None:
            time.sleep(delay)
            with umask_for(shared):
                time.sleep(hold)

        threads = [threading.Thread(target=submit, args=(0.0, 0.3)), threading.Thread(target=submit, args=(0.1, 0.3))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert os.umask(0o077) == 0o077
        with umask_for(shared):
            assert os.umask(0o027) == 0o027  # inside: the user's umask less the group's read and search bits
        assert os.umask(0o077) == 0o077
    finally:
        os.umask(previous)
