"""Site folders: an admin's config folders from $FTC_SITE_CONFIG, searched before ftc's own `conf/`.

A site file with a shipped name replaces the shipped one for every group (model, method, data,
cluster, resources); a site's `templates/` folder overrides ftc's templates without being named.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ftc.compiler import limits
from ftc.compiler.checks import ownership
from ftc.compiler.errors import UserError

SITE_ENV = "FTC_SITE_CONFIG"
SITE_TEMPLATES = "templates"


def site_entries() -> list[str]:
    """$FTC_SITE_CONFIG as written, one entry per folder: `ftc --info` shows missing ones too."""
    return [entry for entry in os.environ.get(SITE_ENV, "").split(os.pathsep) if entry]


def site_folders(trusted_only: bool = True) -> list[str]:
    """Admin config folders from $FTC_SITE_CONFIG (colon-separated), first one wins, as absolute paths.

    Each is refused when others may write it; `ftc site check` alone asks for them unchecked, to list
    every such problem beside the others."""
    folders = []
    for entry in site_entries():
        if any(c in entry for c in "\n\r\0"):
            raise UserError(f"{SITE_ENV}: a folder name with a control character: {entry!r}")
        if not os.path.isdir(entry):
            raise UserError(f"{SITE_ENV}: no such folder {entry}")
        if trusted_only:
            ownership.check_tree(entry, "site folder", each=limits.check_site_file)  # others may not write it
        folders.append(os.path.abspath(entry))
    return folders


def shipped_conf() -> Path:
    return Path(str(resources.files("ftc.conf")))


def group_files(group: str) -> dict[str, tuple[Path, Path | None]]:
    """Each option of a config group: the file that wins, and the shipped file it replaces (if any)."""
    shipped = {p.stem: p for p in sorted((shipped_conf() / group).glob("*.yaml"))}
    chosen: dict[str, tuple[Path, Path | None]] = {}
    for site in site_folders():
        for path in sorted((Path(site) / group).glob("*.yaml")):
            chosen.setdefault(path.stem, (path, shipped.get(path.stem)))
    for stem, path in shipped.items():
        chosen.setdefault(stem, (path, None))
    return chosen


def site_template_dirs(template_dir: str | None) -> list[str]:
    """Template folders before ftc's own: cluster.template_dir, then every site's `templates/`.

    A relative template_dir is resolved against the site folders, first match wins.
    """
    folders = site_folders()
    out: list[str] = []
    if template_dir:
        if os.path.isabs(template_dir):
            candidates = [template_dir]
        else:
            candidates = [os.path.join(site, template_dir) for site in folders]
        found = [c for c in candidates if os.path.isdir(c)]
        if not found:
            where = f" (looked in {', '.join(candidates)})" if candidates != [template_dir] else ""
            raise UserError(f"cluster.template_dir: no such folder {template_dir}{where}")
        ownership.check_tree(found[0], "cluster.template_dir", each=limits.check_site_file)
        out.append(os.path.abspath(found[0]))
    for site in folders:
        folder = os.path.join(site, SITE_TEMPLATES)
        if os.path.isdir(folder) and folder not in out:
            out.append(folder)
    return out


GROUPS = ("model", "method", "data", "cluster", "resources")


def site_changes() -> list[str]:
    """One line per site file: which shipped option it replaces, or that it adds one."""
    lines = []
    for group in GROUPS:
        for option, (path, replaced) in group_files(group).items():
            if replaced is not None:
                lines.append(f"{group}={option}: {path} replaces ftc's {replaced}")
            elif not path.is_relative_to(shipped_conf()):
                lines.append(f"{group}={option}: {path} (added by the site)")
    return lines


def initialize_hydra(site: tuple[str, ...]) -> None:
    """Start Hydra with the site folders searched before ftc's own `conf/` (after Hydra's own),
    so that a site file with a shipped name replaces it in every group."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.version import setbase

    setbase("1.3")
    search_path = create_config_search_path("pkg://ftc.conf")
    for folder in site:
        search_path.prepend("site", f"file://{folder}", anchor="main")
    Hydra.create_main_hydra2("ftc", search_path)
