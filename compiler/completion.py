"""Tab completion for `ftc` in bash and zsh: commands, flags, config groups and their options, field
names and their values, run ids after status/logs/cancel.

As with Hydra's `--shell-completion`, `eval "$(ftc --shell-completion install=bash)"` defines a shell
function that asks ftc itself for candidates (`ftc --shell-completion query=bash`, reading COMP_LINE and
COMP_POINT), so completion always matches the installed ftc, the groups chosen earlier on the line and
the site folders in $FTC_SITE_CONFIG. Completion never prints an error: a failure offers nothing.
"""

from __future__ import annotations

import os
import sys
import types
import typing
from collections.abc import Callable, Iterable

from ftc.compiler.errors import UserError

SHELLS = ("bash", "zsh")
FUNCTION = "_ftc_complete"
# Commands whose argument is a run (id, prefix or Slurm job id).
RUN_COMMANDS = ("status", "logs", "cancel", "generate", "chat", "export")
FLAGS = ("-m", "--help", "--version", "--multirun", "--cfg", "--resolve", "--package", "--info", "--shell-completion",
         "--hydra-help")
VALUES_AFTER = {
    "--cfg": ("job", "hydra", "all"), "-c": ("job", "hydra", "all"),
    "--info": ("all", "searchpath", "groups", "choices"), "-i": ("all", "searchpath", "groups", "choices"),
    "--shell-completion": tuple(f"{a}={s}" for a in ("install", "uninstall") for s in SHELLS),
    "-sc": tuple(f"{a}={s}" for a in ("install", "uninstall") for s in SHELLS),
}

BASH_SCRIPT = f"""\
# ftc completion for bash; load it with: eval "$(ftc --shell-completion install=bash)"
{FUNCTION}() {{
    local line
    COMPREPLY=()
    while IFS= read -r line; do
        COMPREPLY+=("$line")
    done < <(COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" COMP_WORDBREAKS="${{COMP_WORDBREAKS-}}" \\
        "${{COMP_WORDS[@]:0:1}}" --shell-completion query=bash 2>/dev/null)
}}
complete -o nospace -F {FUNCTION} ftc
"""
ZSH_SCRIPT = f"""\
# ftc completion for zsh; load it with: eval "$(ftc --shell-completion install=zsh)"
autoload -Uz +X compinit bashcompinit
(( $+functions[compdef] )) || compinit
bashcompinit
{BASH_SCRIPT.split(chr(10), 1)[1]}"""
UNINSTALL = f"unset -f {FUNCTION}\ncomplete -r ftc\n"


def completion_command(action: str, commands: dict[str, Callable]) -> int:
    """`ftc --shell-completion install=SHELL | uninstall=SHELL | query=SHELL`."""
    verb, _, shell = action.partition("=")
    if verb not in ("install", "uninstall", "query") or shell not in SHELLS:
        raise UserError(f"--shell-completion: use install=bash, install=zsh or uninstall=bash|zsh (got {action!r})")
    if verb == "install":
        sys.stdout.write(BASH_SCRIPT if shell == "bash" else ZSH_SCRIPT)
    elif verb == "uninstall":
        sys.stdout.write(UNINSTALL)
    else:
        line, point = os.environ.get("COMP_LINE", ""), os.environ.get("COMP_POINT", "")
        breaks = os.environ.get("COMP_WORDBREAKS", "")
        try:
            replies = query(line[: int(point)] if point.isdigit() else line, breaks, commands)
        except Exception:  # noqa: BLE001 - completion must never print a traceback into someone's prompt
            replies = []
        sys.stdout.write("".join(f"{r}\n" for r in replies))
    return 0


def query(line: str, breaks: str, commands: Iterable[str]) -> list[str]:
    """The COMPREPLY for a command line up to the cursor.

    Candidates are whole words; bash replaces only the part after the last COMP_WORDBREAKS character
    (by default `=` and `:` split words), so that much of the word is cut off each candidate. A finished
    word ends with a space; a prefix (`method.`, `model=`) does not, so typing continues.
    """
    words = line.split()
    if line and not line[-1].isspace():
        current = words.pop()
    else:
        current = ""
    full = [c for c in candidates(words[1:], current, commands) if c.startswith(current)]
    cut = max((current.rfind(ch) for ch in breaks), default=-1) + 1
    return sorted({c[cut:] for c in full})


def candidates(words: list[str], current: str, commands: Iterable[str]) -> list[str]:
    """Whole-word candidates for `current`, given the words before it (without the program name)."""
    previous = words[-1] if words else ""
    if words and words[0] in commands:
        return _run_ids() if words[0] in RUN_COMMANDS and len(words) == 1 and not current.startswith("-") else []
    if previous in VALUES_AFTER:
        return [f"{v} " for v in VALUES_AFTER[previous]]
    overrides = [w for w in words if "=" in w and not w.startswith("-")]
    if previous in ("-p", "--package"):
        return _keys(current, overrides, package=True)
    if current.startswith("-"):
        return [f"{f} " for f in FLAGS]
    found = _values(current, overrides) if "=" in current else _keys(current, overrides)
    if not words:
        found += [f"{c} " for c in commands]
    return found


def _run_ids() -> list[str]:
    from ftc.compiler.runs.runstate import find_runs, output_root

    return [f"{p.name} " for p in find_runs(output_root())]


def _chosen_groups(overrides: list[str]) -> list[str]:
    """The group choices already on the line that exist (others would only make composition fail)."""
    from ftc.compiler.config.catalog import USER_GROUPS, group_options

    options = group_options()
    chosen = []
    for override in overrides:
        group, _, option = override.partition("=")
        if group in USER_GROUPS and option in options[group]:
            chosen.append(override)
    return chosen


def _leaf_paths(overrides: list[str]) -> dict[str, object]:
    """Every overridable field of the config these group choices compose, and its value."""
    from omegaconf import DictConfig, OmegaConf

    from ftc.compiler.config.catalog import USER_GROUPS
    from ftc.compiler.config.compose import compose_config
    from ftc.compiler.config.owners import SITE, owner

    cfg, _ = compose_config(_chosen_groups(overrides))
    paths: dict[str, object] = {group: None for group in USER_GROUPS}
    paths["model.urn"] = None

    def walk(node: DictConfig, prefix: str) -> None:
        for key in node:
            path = f"{prefix}{key}"
            if owner(path) == SITE:
                continue
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                walk(child, path + ".")
            elif child._is_interpolation() or child._is_missing():
                paths[path] = None
            else:
                paths[path] = OmegaConf.to_container(child) if isinstance(child, DictConfig) else child._value()

    walk(cfg, "")
    return paths


def _keys(current: str, overrides: list[str], package: bool = False) -> list[str]:
    """Field names one level at a time: `meth` -> `method=`, `method.`; `method.lora.a` -> `method.lora.alpha=`."""
    found = set()
    for path in _leaf_paths(overrides):
        if not path.startswith(current):
            continue
        dot = path.find(".", len(current))
        if dot != -1:
            found.add(path[: dot + 1])
        else:
            found.add(f"{path} " if package else f"{path}=")
    return sorted(found)


def _values(current: str, overrides: list[str]) -> list[str]:
    """Values for `key=`: a group's options, the model URNs, a field's allowed values and its current one."""
    from ftc.compiler.config.catalog import USER_GROUPS, group_options

    key = current.partition("=")[0].lstrip("+")
    if key in USER_GROUPS:
        values = group_options()[key]
    elif key == "model.urn":
        from ftc.compiler.config.urn import model_entries

        values = [u for entry in model_entries() for u in entry.urns]
    else:
        paths = _leaf_paths(overrides)
        if key not in paths:
            return []
        values = _allowed(key)
        if paths[key] is not None:
            values.append(_hydra_text(paths[key]))
    return [f"{key}={v} " for v in dict.fromkeys(values)]


def _hydra_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_hydra_text(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _allowed(path: str) -> list[str]:
    """The values the schema allows for a field, when it names them (Literal choices, booleans)."""
    from pydantic import BaseModel

    from ftc.compiler.config.schema import JobConfig

    annotations: list = [JobConfig]
    for part in path.split("."):
        following = []
        for annotation in annotations:
            for model in _members(annotation):
                if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
                    following.append(model.model_fields[part].annotation)
                elif typing.get_origin(model) is dict:  # a dict's key, e.g. cluster.partitions.<name>
                    following.append(typing.get_args(model)[1])
        annotations = following
    values: list[str] = []
    for annotation in annotations:
        values += _choices(annotation)
    return values


def _members(annotation) -> list:
    """The alternatives of a union (Annotated and Optional unwrapped), or the annotation itself."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in args for m in _members(a)]
    return [annotation]


def _choices(annotation) -> list[str]:
    found: list[str] = []
    for member in _members(annotation):
        if member is bool:
            found += ["true", "false"]
        elif typing.get_origin(member) is typing.Literal:
            found += [_hydra_text(v) for v in typing.get_args(member)]
        elif typing.get_origin(member) is list:
            found += [f"[{v}]" for v in _choices(typing.get_args(member)[0])]
    return found
