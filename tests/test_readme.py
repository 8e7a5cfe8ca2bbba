"""The README, followed as written: its command blocks run in order in a fresh clone, each exit status
checked, and the lines it shows found in what the commands print.

How a block is read (README, "For contributors"):
- a `bash`/`sh` block: every line is a command (a trailing backslash continues it);
- a block whose lines start with `$ `: those are commands, the lines after each are what it prints
  (`...` and `<run id>` match anything); a shown `ftc: error:` line means exit status 2, else 0;
- `<!-- readme-test: output -->` before a plain block: the lines the previous command prints;
- `<!-- readme-test: new-shell -->`: a fresh shell from here on, with nothing from earlier blocks;
- `<!-- readme-test: WORD (why) -->`, any other WORD (slurm, server, skip): the block is not run;
- any other block is an illustration.
Commands of one shell run in one bash process, so `. .venv/bin/activate` or `export` carries on.

The install line is checked, not downloaded: `python3 -m venv` runs for real, and each `pip install`
is replaced by a check that this test's own environment already holds every requirement it names
(the extras of `.` from pyproject.toml included), then a link from the new venv to that environment
and an editable install of the clone without dependencies. Everything else runs as written.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHOWN_HOME = "/home/me"  # the README's paths are written as if the clone were $HOME
MARKER = re.compile(r"^<!--\s*readme-test:\s*([\w-]+)")
PLACEHOLDERS = {re.escape("..."): ".*", re.escape("<run id>"): "[0-9a-f]{10}"}

pytestmark = [pytest.mark.train, pytest.mark.timeout(3600)]


@dataclass
class Command:
    text: str
    line: int  # where it is in the README
    shell: int  # commands of one shell session share a bash process
    expected: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return 2 if any(x.startswith("ftc: error:") for x in self.expected) else 0


@dataclass
class Block:
    lang: str
    lines: list[str]
    line: int
    marker: str | None


def blocks(text: str) -> list[Block]:
    """Fenced blocks, each with the readme-test marker on the last non-blank line before it."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            before = [x for x in lines[:i] if x.strip()]
            marker = MARKER.match(before[-1]) if before else None
            start, i = i, i + 1
            while i < len(lines) and not lines[i].startswith("```"):
                i += 1
            found.append(Block(lines[start][3:].strip(), lines[start + 1:i], start + 1, marker and marker[1]))
        i += 1
    return found


def commands(text: str) -> tuple[list[Command], list[str]]:
    """The README's commands in order, and a note for each block left out."""
    found: list[Command] = []
    skipped: list[str] = []
    shell = 0
    for block in blocks(text):
        if block.marker == "output":
            assert found, f"README line {block.line}: an output block with no command before it"
            found[-1].expected += block.lines
            continue
        if block.marker == "new-shell":
            shell += 1
        elif block.marker is not None:
            skipped.append(f"line {block.line}: {block.marker}")
            continue
        if any(x.startswith("$ ") for x in block.lines):
            for offset, x in enumerate(block.lines):
                if x.startswith("$ "):
                    found.append(Command(x[2:], block.line + offset + 1, shell))
                elif found and found[-1].line > block.line:
                    found[-1].expected.append(x)
        elif block.lang in ("bash", "sh", "shell", "console"):
            pending = ""
            for offset, x in enumerate(block.lines):
                if not x.strip() or x.lstrip().startswith("#"):
                    continue
                pending += x.strip() if pending else x
                if pending.endswith("\\"):
                    pending = pending[:-1].rstrip() + " "
                    continue
                found.append(Command(pending, block.line + offset + 1, shell))
                pending = ""
    return found, skipped


# ---------------------------------------------------------------- the install line, checked


def _is_pip_install(words: list[str]) -> bool:
    program = Path(words[0]).name if words else ""
    if re.fullmatch(r"pip[\d.]*", program):
        return words[1:2] == ["install"]
    return bool(re.fullmatch(r"python[\d.]*", program)) and words[1:4] == ["-m", "pip", "install"]


def rewrite_installs(command: str, checker: Path) -> str:
    """Each `pip install ...` piece of an `&&` chain becomes a call of the checker, with the pip used."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    chain: list[list[str]] = [[]]
    for word in words:
        chain.append([]) if word == "&&" else chain[-1].append(word)
    if not any(_is_pip_install(piece) for piece in chain):
        return command
    return " && ".join(" ".join(w if w == "." else shlex.quote(w) for w in
                                ([sys.executable, str(checker), *piece] if _is_pip_install(piece) else piece))
                       for piece in chain)


CHECKER = r'''
"""Stands in for `pip install ARGS`: checks every requirement is already in this environment, links
the target venv to it, installs the project itself editable without dependencies."""
import os, subprocess, sys, sysconfig, tomllib
from importlib import metadata
from pathlib import Path
from packaging.requirements import Requirement

pip, args = sys.argv[1], sys.argv[2:]
args = args[args.index("install") + 1:]
python = str(Path(pip).parent / "python") if "/" in pip else "python"
if not Path(python).exists() and "/" not in pip:
    python = subprocess.run(["sh", "-c", "command -v python"], capture_output=True, text=True).stdout.strip()
problems, project, editable = [], None, False
i = 0
while i < len(args):
    arg = args[i]; i += 1
    if arg in ("-c", "--constraint", "-i", "--index-url", "--extra-index-url"):
        i += 1; continue
    if arg in ("-e", "--editable"):
        editable = True; continue
    if arg.startswith("-"):
        continue
    if arg.startswith(".") or arg.startswith("/"):
        path, _, extras = arg.partition("[")
        project = Path(path)
        meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        wanted = list(meta.get("dependencies", []))
        for extra in filter(None, extras.rstrip("]").split(",")):
            if extra not in meta.get("optional-dependencies", {}):
                problems.append(f"{arg}: no extra {extra!r} in pyproject.toml")
            wanted += meta.get("optional-dependencies", {}).get(extra, [])
    else:
        wanted = [arg]
    for spec in wanted:
        req = Requirement(spec)
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{spec}: not installed in the test's environment")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(f"{spec}: the test's environment has {req.name} {have}")
if problems:
    sys.exit("pip install would not give what the tests run with:\n  " + "\n  ".join(problems))
site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      capture_output=True, text=True, check=True).stdout.strip()
Path(site, "zz_readme_test_reuse.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
if project is not None:  # built with this environment's setuptools, installed into the target venv
    build_env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    *(["-e"] if editable else []), str(project)], check=True, env=build_env)
'''


# ---------------------------------------------------------------- running it


def _clone(dest: Path) -> None:
    """A clone of this checkout, plus its uncommitted changes to tracked files (new files must be added)."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True)
    diff = subprocess.run(["git", "-C", str(REPO), "diff", "HEAD", "--binary"], capture_output=True, check=True).stdout
    if diff.strip():
        subprocess.run(["git", "-C", str(dest), "apply", "--whitespace=nowarn"], input=diff, check=True)


def _clean_env(home: Path, bin_dir: Path) -> dict:
    """A new user's shell: no venv active, no PYTHONPATH, no ftc settings, nothing downloaded."""
    venvs = {str(Path(sys.executable).parent), os.environ.get("VIRTUAL_ENV", "") + "/bin"}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in venvs]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FTC_", "PYTHON", "VIRTUAL_ENV", "PIP_", "CONDA"))}
    env.update(PATH=os.pathsep.join([str(bin_dir), *path]), HOME=str(home), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1", TERM="dumb")
    return env


def _matches(expected: list[str], actual: list[str], home: str) -> str | None:
    """None when every expected line matches an actual line, in order; else the first one missing."""
    position = 0
    for line in expected:
        pattern = re.escape(line.replace(SHOWN_HOME, home).rstrip())
        for literal, regex in PLACEHOLDERS.items():
            pattern = pattern.replace(literal, regex)
        while position < len(actual) and not re.fullmatch(pattern, actual[position].rstrip()):
            position += 1
        if position == len(actual):
            return line
        position += 1
    return None


def test_readme_blocks_are_read_as_documented():
    text = "\n".join([
        "```bash", "echo one \\", "  two", "# a comment", "```",
        "<!-- readme-test: output -->", "```", "one two", "```",
        "<!-- readme-test: slurm (needs it) -->", "```bash", "sbatch x", "```",
        "<!-- readme-test: new-shell -->", "```", "$ ftc bad=1", "ftc: error: bad", "$ true", "```",
        "```yaml", "a: 1", "```",
    ])
    found, skipped = commands(text)
    assert [(c.text, c.shell, c.expected, c.exit_status) for c in found] == [
        ("echo one two", 0, ["one two"], 0), ("ftc bad=1", 1, ["ftc: error: bad"], 2), ("true", 1, [], 0)]
    assert skipped == ["line 11: slurm"]
    assert rewrite_installs("python3 -m venv .venv && .venv/bin/pip install 'a[b]' -e . && x", Path("/c")) == \
        f"python3 -m venv .venv && {sys.executable} /c .venv/bin/pip install 'a[b]' -e . && x"


def test_readme_commands_work_as_written_in_a_fresh_clone(tmp_path):
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(REPO), "rev-parse"], check=False).returncode:
        pytest.skip("not a git checkout")
    clone = tmp_path / "ftc"
    _clone(clone)
    checker = tmp_path / "pip_install_check.py"
    checker.write_text(CHECKER)
    bin_dir = tmp_path / "bin"  # python3 is the interpreter this environment was made from
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = _clean_env(clone, bin_dir)
    found, skipped = commands((clone / "README.md").read_text())
    assert found, "no commands in the README"
    out = tmp_path / "out"
    out.mkdir()
    for shell in sorted({c.shell for c in found}):
        script = [f"cd {shlex.quote(str(clone))}"]
        for index, command in enumerate(found):
            if command.shell == shell:
                script += ["{ " + rewrite_installs(command.text, checker),
                           f'}} >{out}/{index}.out 2>{out}/{index}.err </dev/null; echo $? >{out}/{index}.rc']
        subprocess.run(["bash", "--norc", "--noprofile", "-c", "\n".join(script)], check=False, env=env, timeout=3000)
    for index, command in enumerate(found):
        where = f"README line {command.line}: {command.text}"
        rc = (out / f"{index}.rc").read_text().strip() if (out / f"{index}.rc").exists() else "(never ran)"
        stdout, stderr = ((out / f"{index}.{s}").read_text(errors="replace") for s in ("out", "err"))
        assert rc == str(command.exit_status), f"{where}\nexit status {rc}\n{stdout[-3000:]}\n{stderr[-3000:]}"
        missing = _matches(command.expected, (stdout + stderr).splitlines(), str(clone))
        assert missing is None, f"{where}\ndoes not print the README's line\n  {missing}\nit printed:\n{stdout[-3000:]}{stderr[-3000:]}"
    print(f"ran {len(found)} README commands; not run: {', '.join(skipped)}")
