"""A site's own files checked as an admin needs them: every problem at its file and line, with a
close field name for a misspelt one, and the files and folders other users could rewrite.

Used by `ftc site check` (compiler/sitecheck.py). A user's compile reports the same schema errors
by field only; here the admin gets the place to edit.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ftc.compiler.checks import ownership
from ftc.compiler.config.schema import ClusterConfig, ModelConfig
from ftc.compiler.config.sites import site_folders
from ftc.compiler.config.validation import located_problems
from ftc.compiler.errors import UserError
from ftc.compiler.runs.terminal import printable

CHECKED = {"cluster": ClusterConfig, "model": ModelConfig}


def _loader():
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def key_line(node: yaml.Node | None, loc: tuple) -> int | None:
    """The 1-based line of the deepest key of `loc` the YAML file itself holds (None: none of it)."""
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
        if found is None:
            break
        line, node = found[0].start_mark.line + 1, found[1]
    return line


def _types(annotation) -> list:
    """The models, dicts and lists an annotation may hold (a union, Annotated, Optional unwrapped)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (dict, list):
        return [annotation]
    return [t for arg in typing.get_args(annotation) for t in _types(arg)]


def field_names_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names a value at `loc` (its parent's keys) may have: for a "did you mean"."""
    kinds: list = [model]
    for part in loc:
        following = []
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                field = kind.model_fields.get(str(part))
                following += _types(field.annotation) if field is not None else []
            elif typing.get_origin(kind) in (dict, list):  # `part` is a key or an index
                following += _types(typing.get_args(kind)[-1])
        kinds = following
    return [name for kind in kinds if isinstance(kind, type) and issubclass(kind, BaseModel) for name in kind.model_fields]


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def yaml_problem(path: Path) -> tuple[str | None, yaml.Node | None]:
    """(a syntax problem at its line, or None; the file's node tree)."""
    try:
        return None, yaml.compose(path.read_text(encoding="utf-8"), Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = _where(path, mark.line + 1 if mark else None)
        return f"{where}: not YAML: {printable(getattr(exc, 'problem', None) or exc)}", None
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot read it: {printable(getattr(exc, 'strerror', None) or exc)}", None


def check_file(group: str, path: Path) -> list[str]:
    """Every problem of one site file of `group` (cluster or model), each at its file and line."""
    from ftc.compiler.config.compose import _compose_groups, resolve

    syntax, tree = yaml_problem(path)
    if syntax:
        return [syntax]
    model = CHECKED[group]
    try:
        cfg = _compose_groups((f"{group}={path.stem}",), tuple(site_folders(trusted_only=False)))
        values = resolve(cfg[group])
        model.model_validate(values)
    except UserError as exc:
        return [f"{path}: {printable(p, 400)}" for p in exc.problems]
    except ValidationError as exc:
        problems = []
        for loc, line in located_problems(exc):
            at = key_line(tree, loc)
            hint = ""
            if line.endswith("unknown field"):
                near = difflib.get_close_matches(str(loc[-1]), field_names_at(model, loc[:-1]), n=1)
                hint = f"; did you mean {near[0]}?" if near else ""  # names of the schema: printable
            name, _, message = line.partition(": ")
            problems.append(f"{_where(path, at)}: {group}.{printable(name, 120)}: {printable(message, 300)}{hint}")
        return list(dict.fromkeys(problems))
    return []


def site_files(group: str) -> list[Path]:
    return [p for site in site_folders(trusted_only=False) for p in sorted((Path(site) / group).glob("*.yaml"))]


def writable_by_others(folders: list[str]) -> list[str]:
    """Site files or folders (and the folders above a site) that users other than the admins could
    rewrite: a site's setup lines are raw shell in every user's job. The rule every command refuses by."""
    return [found for folder in folders for found in ownership.tree_problems(folder, "site folder")]
