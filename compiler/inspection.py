"""`ftc --cfg` and `ftc --info`: what a command line composes, shown before anything is compiled.

As in Hydra, `--cfg job` is the composed config (what overrides can change), `--cfg hydra` Hydra's own
record of the composition (runtime.choices and config_sources), `--cfg all` both plus the model's
training_options (the guard rails no override may change). Nothing is validated or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from ftc.compiler.errors import UserError

CFG_KINDS = ("job", "hydra", "all")
INFO_KINDS = ("all", "searchpath", "groups", "choices")


def _one_point(overrides: Sequence[str], flag: str) -> None:
    from ftc.compiler.config.compose import parse_overrides

    for override in parse_overrides(overrides):
        if override.is_sweep_override():
            raise UserError(f"{flag}: shows one config, but {override.get_key_element()} has several values; "
                            "ftc -m ... dry_run=true lists a sweep's points")


def composed(kind: str, overrides: Sequence[str], resolve_values: bool) -> dict:
    """The composed config as a plain dict; `kind` is job, hydra or all."""
    from omegaconf import OmegaConf

    from ftc.compiler.config.compose import compose_config, hydra_view, resolve

    if kind not in CFG_KINDS:
        raise UserError(f"--cfg: choose job, hydra or all (got {kind!r})")
    _one_point(overrides, "--cfg")
    shown: dict = {}
    if kind in ("job", "all"):
        cfg, training_options = compose_config(overrides)
        shown = resolve(cfg) if resolve_values else OmegaConf.to_container(cfg, resolve=False)
        if kind == "all" and training_options is not None:
            shown["model"]["training_options"] = training_options
    if kind in ("hydra", "all"):
        runtime = hydra_view(overrides).runtime
        shown["hydra"] = {"runtime": {
            "choices": {g: c for g, c in OmegaConf.to_container(runtime.choices).items() if not g.startswith("hydra/")},
            "config_sources": OmegaConf.to_container(runtime.config_sources),
        }}
    return shown


def show_config(kind: str, overrides: Sequence[str], resolve_values: bool, package: str | bool | None) -> str:
    shown: object = composed(kind, overrides, resolve_values)
    if package:
        where = "the composed config"
        for part in str(package).split("."):
            if not isinstance(shown, dict) or part not in shown:
                keys = ", ".join(shown) if isinstance(shown, dict) else "none, it is a value"
                raise UserError(f"--package: no {part!r} in {where} (keys there: {keys})")
            shown, where = shown[part], repr(part) if where.startswith("the") else f"{where[:-1]}.{part}'"
    text = yaml.safe_dump(shown, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    return text.removesuffix("...\n")  # a lone value: YAML's end-of-document marker says nothing here


def _site_lines(groups: dict[str, list[str]]) -> list[str]:
    from ftc.compiler.config.sites import SITE_ENV, site_entries

    folders = site_entries()
    if not folders:
        return [f"  none: set {SITE_ENV}=DIR[:DIR...] to add a site's clusters, models or templates (README: Adding a site)"]
    lines = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            lines.append(f"  {folder}  (missing: not a folder)")
            continue
        found = [f"{g}: {', '.join(sorted(p.stem for p in (root / g).glob('*.yaml')))}"
                 for g in groups if (root / g).is_dir() and any((root / g).glob("*.yaml"))]
        lines.append(f"  {root.resolve()}  ({'; '.join(found) or 'no config groups'})")
    return lines


def info(what: str, overrides: Sequence[str]) -> str:
    """Search path, config groups and their options, the choices `overrides` make, site folders."""
    from ftc.compiler.cli import version
    from ftc.compiler.config.catalog import AUTO_GROUPS, USER_GROUPS, choices_and_sources, group_options

    if what not in INFO_KINDS:
        raise UserError(f"--info: choose {', '.join(INFO_KINDS)} (got {what!r})")
    _one_point(overrides, "--info")
    try:
        groups = group_options()
        choices, sources = choices_and_sources(overrides)
    except UserError as exc:  # a broken site folder: show them, with the reason nothing composes
        if what not in ("all", "searchpath"):
            raise
        sites = ["Site folders ($FTC_SITE_CONFIG):", *_site_lines({g: [] for g in (*USER_GROUPS, *AUTO_GROUPS)})]
        return "\n\n".join([version(), "\n".join(sites), f"Nothing composes with these site folders: {exc}"])
    sections: list[list[str]] = [[version()]]
    if what in ("all", "searchpath"):
        width = max(len(s.url) for s in sources)
        sections.append(["Search path (Hydra looks for each config in this order and takes the first it finds):"]
                        + [f"  {s.url.ljust(width)}  {_provider(s)}" for s in sources])
        sections.append(["Site folders ($FTC_SITE_CONFIG):", *_site_lines(groups)])
    if what in ("all", "groups"):
        width = max(map(len, groups))
        lines = ["Config groups and their options (* = chosen by this command line):"]
        for group, options in groups.items():
            marked = " ".join(f"*{o}" if o == choices.get(group) else o for o in options)
            auto = "  (picked for you: <model>-<method>, when one exists)" if group in AUTO_GROUPS else ""
            lines.append(f"  {group.ljust(width)}  {marked}{auto}")
        sections.append(lines)
    if what in ("all", "choices"):
        chosen = " ".join(f"{g}={c}" for g, c in choices.items() if c in groups.get(g, ()))
        sections.append(["Choices for this command line:", f"  {chosen}"])
    return "\n\n".join("\n".join(s) for s in sections)


def _provider(source) -> str:
    if source.provider == "main":
        from importlib import resources

        return f"ftc's own configs ({resources.files('ftc.conf')})"
    if source.provider == "hydra":
        return "Hydra's own"
    if source.provider == "schema":
        return "Hydra's structured configs"
    return f"site folder, from $FTC_SITE_CONFIG ({source.provider})"
