"""A team on one shared, setgid, group-writable run root: two real Unix users in one group.

Each user's ftc runs in a forked child that drops to that user (setgroups/setgid/setuid) after the
parent has imported what ftc needs, so the interpreter's own files need not be readable by them.
Checked: the second user's identical request changes no byte, owner or mode of the first user's
run and is one line naming the owner; the group reads every record, log and output whatever the
owner's umask; group and setgid survive; status, logs and cancel across users.
"""

from __future__ import annotations

import contextlib
import grp
import io
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ftc.compiler import cli, records
from ftc.compiler.runfolder import make_folders, open_append, use_team_umask, write_atomic
from ftc.compiler.runs import jobs, lock  # noqa: F401  (imported before the fork: the users cannot read the venv's interpreter)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd to create two Unix users in one group (CI runs as root)")

GROUP, ALICE, BOB = "ftc-team-t", "ftc-alice-t", "ftc-bob-t"


def _ensure(kind: str, name: str, *args: str) -> bool:
    """Create a group or user unless it exists; True when this call made it."""
    lookup = grp.getgrnam if kind == "group" else pwd.getpwnam
    try:
        lookup(name)
        return False
    except KeyError:
        pass
    command = ["groupadd", name] if kind == "group" else ["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", *args, name]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 9):  # 9: made meanwhile by another run
        pytest.skip(f"{command[0]} failed: {done.stderr.strip()}")
    return done.returncode == 0


@pytest.fixture(scope="module")
def team():
    made = [("group", GROUP)] if _ensure("group", GROUP) else []
    made += [("user", name) for name in (ALICE, BOB) if _ensure("user", name, "-g", GROUP)]
    base = Path(tempfile.mkdtemp(prefix="ftc-team-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "runs"
    root.mkdir()
    gid = grp.getgrnam(GROUP).gr_gid
    os.chown(root, 0, gid)
    root.chmod(0o2775)  # the admin's shared root: setgid, group-writable
    _warm_up(base)
    yield root, gid
    shutil.rmtree(base, ignore_errors=True)
    for kind, name in reversed(made):
        subprocess.run(["userdel" if kind == "user" else "groupdel", name], capture_output=True)


def _warm_up(base: Path) -> None:
    """Every lazy import of the paths the users take, done as root before forking."""
    scratch = base / "warm"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli.run([f"output_root={scratch}", "dry_run=true", "name=warm"])
        cli.run(["status", f"output_root={scratch}", "--all"])
        with contextlib.suppress(Exception):
            cli.run(["logs", "nosuchrun", f"output_root={scratch}"])
    shutil.rmtree(scratch)


def as_user(name: str, argv: list[str], umask: int = 0o022, call=None) -> tuple[int, str, str]:
    """`ftc ARGV` (or `call()`) as user `name` in the team group: (exit status, stdout, stderr)."""
    user = pwd.getpwnam(name)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
            os.setgroups([user.pw_gid])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.umask(umask)
            os.environ.update(HOME="/tmp", USER=name, LOGNAME=name, FTC_SHARED_GROUP=GROUP)
            os.chdir("/tmp")
            if call is not None:
                call()
                code = 0
            else:
                try:
                    cli.main(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001  (reported to the parent as text)
            print(f"child raised {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 71
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    return os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode()


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder`: bytes, owner, group, mode."""
    found = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = os.lstat(path)
        body = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        found[str(path)] = (body, info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))
    return found


def _runtime_files(run_dir: Path) -> None:
    """What a submission and its runtime write, by the writers they use (as the calling user)."""
    records.write_record(run_dir, records.new_record(run_dir, "slurm", job="987654", job_id="987654"))
    records.write_json_record(run_dir / records.STATUS_FILE, {"state": "running", "step": 1, "max_steps": 2})
    fd = open_append(run_dir / "logs" / "slurm-987654.out")
    os.write(fd, b"step 1 of 2\n")
    os.close(fd)
    make_folders(run_dir / "output" / "adapter")
    write_atomic(run_dir / "output" / "adapter" / "adapter_config.json", "{}\n")
    with lock.run_lock(run_dir):
        pass
    use_team_umask(run_dir)  # as the runtime starts; then what libraries write (torch.save, save_pretrained):
    os.makedirs(run_dir / "checkpoints" / "checkpoint-1")
    with open(run_dir / "checkpoints" / "checkpoint-1" / "model.safetensors", "wb") as weights:
        weights.write(b"weights")


def _run_dir(root: Path, stdout: str) -> Path:
    return Path(next(line.split()[-1] for line in stdout.splitlines() if line.startswith("run folder ")))


def test_a_second_user_never_changes_the_first_users_run(team):
    root, gid = team
    request = [f"output_root={root}", "name=team"]
    code, out, err = as_user(ALICE, [*request, "dry_run=true"], umask=0o077)
    assert code == 0, err
    run_dir = _run_dir(root, out)
    code, _, err = as_user(ALICE, [], umask=0o077, call=lambda: _runtime_files(run_dir))
    assert code == 0, err
    before = snapshot(run_dir)

    for extra in (["dry_run=true"], []):  # a dry run, and a submit (refused before any lock or job)
        code, out, err = as_user(BOB, [*request, *extra])
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (out, err)
        assert f"belongs to {ALICE}" in lines[0] and f"namespace={BOB}" in lines[0] and "Traceback" not in err
    code, _, err = as_user(BOB, [], call=lambda: lock.run_lock(run_dir).__enter__())
    assert code == 71 and f"the run belongs to {ALICE}" in err and "PermissionError" not in err
    assert snapshot(run_dir) == before

    # the group reads everything; the team's group and setgid survive, whatever alice's umask (077)
    for path, (_, uid, path_gid, mode) in before.items():
        assert uid == pwd.getpwnam(ALICE).pw_uid and path_gid == gid, path
        assert mode & 0o040, f"{path}: {oct(mode)} is not group-readable"
        if Path(path).is_dir():
            assert mode & stat.S_ISGID and mode & 0o010, f"{path}: {oct(mode)}"
    code, _, err = as_user(BOB, [], call=lambda: [Path(p).read_bytes() for p in before if Path(p).is_file()])
    assert code == 0, err
    for shared in (run_dir.parent, run_dir.parent.parent):  # <model>-<name> and <namespace>: every user adds runs
        mode = shared.stat().st_mode
        assert mode & 0o070 == 0o070 and mode & stat.S_ISGID and mode & stat.S_ISVTX, f"{shared}: {oct(mode)}"

    # the way out: bob's own run, in his namespace, and another run beside alice's
    for extra in ([f"namespace={BOB}"], ["name=bobs"]):
        code, out, err = as_user(BOB, [f"output_root={root}", "name=team", "dry_run=true", *extra])
        assert code == 0, err
        assert _run_dir(root, out).stat().st_uid == pwd.getpwnam(BOB).pw_uid
    assert snapshot(run_dir) == before


def test_status_logs_cancel_across_users(team):
    root, _ = team
    code, out, err = as_user(ALICE, [f"output_root={root}", "name=across", "dry_run=true"], umask=0o077)
    run_dir = _run_dir(root, out)
    assert as_user(ALICE, [], umask=0o077, call=lambda: _runtime_files(run_dir))[0] == 0
    as_user(BOB, [f"output_root={root}", "name=bobrun", "dry_run=true"])
    bob_run = next(p for p in root.glob("*/*-bobrun/*"))
    assert as_user(BOB, [], call=lambda: records.write_record(
        bob_run, records.new_record(bob_run, "slurm", job="987655", job_id="987655")))[0] == 0

    code, mine, err = as_user(ALICE, ["status", f"output_root={root}"])
    assert code == 0, err
    assert "OWNER" in mine.splitlines()[0] and run_dir.name in mine and bob_run.name not in mine
    code, everyone, _ = as_user(ALICE, ["status", "--all-users", "--root", str(root)])
    rows = {line.split()[1]: line.split()[2] for line in everyone.splitlines()[1:]}
    assert rows[run_dir.name] == ALICE and rows[bob_run.name] == BOB

    code, shown, err = as_user(BOB, ["status", run_dir.name, f"output_root={root}"])
    assert code == 0 and f"owner      {ALICE}" in shown and "damaged" not in shown, (shown, err)
    code, log, err = as_user(BOB, ["logs", run_dir.name, f"output_root={root}"])
    assert code == 0 and "step 1 of 2" in log, err

    code, out, err = as_user(BOB, ["cancel", run_dir.name, f"output_root={root}"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"belongs to {ALICE}" in err, (out, err)
    assert "cancelled" not in out and not (run_dir / "stop_requested").exists()

    # a record its owner made private is unreadable to the group, not damage
    (run_dir / records.STATUS_FILE).chmod(0o600)
    code, shown, err = as_user(BOB, ["status", run_dir.name, f"output_root={root}"])
    assert code == 0 and "unreadable" in shown and "damaged" not in shown, shown
