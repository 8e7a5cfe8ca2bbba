"""Tab completion through the shells' own machinery: bash's `complete` (and an interactive bash in a
pty pressing TAB), and zsh's bashcompinit when zsh is installed."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CI_SITE = REPO / ".ci" / "site"


@pytest.fixture
def shell_env(tmp_path, output_root) -> dict:
    """An `ftc` on PATH that runs this checkout, as the console script would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ftc"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ftc "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMP_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env.pop("FTC_SITE_CONFIG", None)
    return env


BASH_DRIVER = r'''
eval "$(ftc --shell-completion install=bash)"
spec=$(complete -p ftc) || exit 3
function=${spec##*-F }; function=${function%% *}
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
# bash splits words at COMP_WORDBREAKS (= among them) and the function gets: command, word, previous word.
read -r -a COMP_WORDS <<<"${COMP_LINE//=/ = }"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
"$function" ftc "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s|\n' "${COMPREPLY[@]}"
'''


def bash_complete(line: str, env: dict) -> list[str]:
    """COMPREPLY for `line`, from the function the installed script registered with `complete`."""
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "driver", line],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [reply.removesuffix("|") for reply in proc.stdout.splitlines() if reply != "|"]


def test_the_script_registers_a_function_for_ftc_and_passes_shellcheck(shell_env):
    script = subprocess.run(["ftc", "--shell-completion", "install=bash"], capture_output=True, text=True,
                            env=shell_env, check=True).stdout
    assert "complete -o nospace -F _ftc_complete ftc" in script
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "bash", "-"], input=script, text=True, check=True)
    undo_line = 'eval "$(ftc -sc install=bash)"; eval "$(ftc -sc uninstall=bash)"; complete -p ftc'
    undo = subprocess.run(["bash", "--norc", "-c", undo_line], capture_output=True, text=True, env=shell_env, check=False)
    assert undo.returncode != 0 and "no completion specification" in undo.stderr


def test_first_word_offers_commands_groups_and_fields(shell_env):
    replies = bash_complete("ftc ", shell_env)
    assert {"status ", "configs ", "model=", "method=", "method.", "training.", "dry_run="} <= set(replies)
    assert bash_complete("ftc mo", shell_env) == ["model.", "model="]


def test_group_options_after_the_equals_sign(shell_env):
    # bash replaces only what follows `=`, so the candidates are the options themselves
    assert bash_complete("ftc model=", shell_env) == sorted(
        f"{p.stem} " for p in (REPO / "conf" / "model").glob("*.yaml"))
    assert bash_complete("ftc method=d", shell_env) == ["dpo "]


def test_field_names_follow_the_groups_chosen_on_the_line(shell_env):
    dpo = bash_complete("ftc method=dpo method.b", shell_env)
    assert dpo == ["method.batch_size=", "method.beta="]
    assert bash_complete("ftc method=sft method.b", shell_env) == ["method.batch_size="]
    assert bash_complete("ftc method.lora.a", shell_env) == [
        "method.lora.adapter_dim=", "method.lora.adapter_dropout=", "method.lora.alpha="]
    # admins' fields are refused on the command line, so they are not offered
    assert bash_complete("ftc cluster.", shell_env) == ["cluster.account=", "cluster.partition=", "cluster.qos="]
    assert bash_complete("ftc cluster=example cluster.partitions.", shell_env) == []


def test_field_values_from_the_schema_and_the_current_value(shell_env):
    assert bash_complete("ftc method.lr_scheduler=", shell_env) == ["constant ", "cosine ", "linear "]
    assert bash_complete("ftc dry_run=", shell_env) == ["false ", "true "]
    assert bash_complete("ftc method.learning_rate=", shell_env) == ["0.005 "]  # tiny's recipe
    assert bash_complete("ftc model=llama8b method.learning_rate=", shell_env) == ["0.0001 "]
    assert bash_complete("ftc training.report_to=[t", shell_env) == ["[tensorboard] "]


def test_flags_and_their_values(shell_env):
    assert {"--cfg ", "--info ", "--shell-completion ", "--version ", "-m "} <= set(bash_complete("ftc -", shell_env))
    assert bash_complete("ftc --cfg ", shell_env) == ["all ", "hydra ", "job "]
    assert bash_complete("ftc --cfg job -p method.l", shell_env) == [
        "method.learning_rate ", "method.lora.", "method.lr_scheduler "]
    assert bash_complete("ftc -sc ", shell_env) == [
        "install=bash ", "install=zsh ", "uninstall=bash ", "uninstall=zsh "]


def test_run_ids_after_status(shell_env, ftc):
    dry = ftc("model=tiny", "dry_run=true")
    assert dry.code == 0, dry.err
    run_id = Path(dry.out.split("run folder ")[1].split("\n")[0]).name
    assert bash_complete("ftc status ", shell_env) == [f"{run_id} "]
    assert bash_complete(f"ftc logs {run_id[:3]}", shell_env) == [f"{run_id} "]
    assert bash_complete("ftc schema ", shell_env) == []


def test_a_site_folders_cluster_is_offered(shell_env):
    env = {**shell_env, "FTC_SITE_CONFIG": str(CI_SITE)}
    assert "ci " in bash_complete("ftc cluster=", env)


def test_urns_complete_past_the_equals_sign(shell_env):
    replies = bash_complete("ftc model.urn=meta/llama-3.1-8b", shell_env)
    assert replies == [f"meta/llama-3.1-8b-instruct@v1.0.0+{gpu} " for gpu in ("A100", "H100", "H200")]


@pytest.mark.parametrize("line", [
    "ftc " + "x" * 100_000,
    "ftc model=\x1b[2J\r",
    "ftc method.lora.alpha='\"\\",
    "ftc \t\t model==",
    "ftc method.nan=nan",
    "",
])
def test_hostile_lines_offer_nothing_and_print_no_error(line, shell_env):
    proc = subprocess.run(["ftc", "-sc", "query=bash"], capture_output=True, text=True, timeout=120, check=False,
                          env={**shell_env, "COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert proc.returncode == 0 and proc.stderr == ""
    assert all(not c.isspace() or c == " " for c in proc.stdout.replace("\n", ""))


def test_an_unreadable_point_falls_back_to_the_whole_line(shell_env):
    proc = subprocess.run(["ftc", "-sc", "query=bash"], capture_output=True, text=True, timeout=120, check=False,
                          env={**shell_env, "COMP_LINE": "ftc method=d", "COMP_POINT": "-5"})
    assert proc.stdout == "method=dpo \n"


# ---------------------------------------------------------------- an interactive bash, pressing TAB


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_tab_in_an_interactive_bash(shell_env, tmp_path):
    env = {**shell_env, "PS1": "PROMPT> ", "TERM": "dumb", "HOME": str(tmp_path), "INPUTRC": "/dev/null"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive bash on the pty
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
    try:
        assert b"PROMPT> " in _read_until(fd, b"PROMPT> ", 30)
        os.write(fd, b'eval "$(ftc --shell-completion install=bash)"\n')
        _read_until(fd, b"PROMPT> ", 60)
        os.write(fd, b"ftc method=dp\t")
        screen = _read_until(fd, b"o ", 90)  # bash echoes what the TAB inserted
        os.write(fd, b"--version\n")  # after `method=dpo ` --version is a word of its own
        screen += _read_until(fd, b"PROMPT> ", 90)
        assert b"ftc method=dp" in screen and b"o --version\r\nftc 0." in screen, screen
    finally:
        os.write(fd, b"exit\n")
        os.waitpid(pid, 0)
        os.close(fd)


# ---------------------------------------------------------------- zsh


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (.ci/run installs it)")
def test_zsh_loads_the_script_and_the_same_function_answers(shell_env):
    driver = r'''
eval "$(ftc --shell-completion install=zsh)"
print -r -- "registered: $_comps[ftc]"
COMP_LINE="ftc method=dpo method.b"; COMP_POINT=${#COMP_LINE}
COMP_WORDS=(ftc method=dpo method.b); COMP_CWORD=2
_ftc_complete ftc method.b method=dpo
print -rl -- "${COMPREPLY[@]}"
'''
    proc = subprocess.run(["zsh", "-f", "-c", driver], capture_output=True, text=True, env=shell_env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "registered: _bash_complete -o nospace -F _ftc_complete"
    # zsh does not split words at `=`: the candidates are whole words
    assert lines[1:] == ["method.batch_size=", "method.beta="]
