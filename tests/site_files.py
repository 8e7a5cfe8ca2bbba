"""An admin's cluster file, written by a test: a test that needs other site limits (a partition's
max_nodes, a filesystem's bandwidth, ports, a container) writes them where an admin would, since a
command line may not set them (compiler/config/owners.py)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def nested(changes: dict) -> dict:
    """{"partitions.h100.max_nodes": 2} -> {"partitions": {"h100": {"max_nodes": 2}}}."""
    out: dict = {}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def admin_cluster(folder: Path, base: str, changes: dict, name: str = "admin") -> str:
    """Write `<folder>/cluster/<name>.yaml`: cluster `base` with `changes` (dotted keys under
    cluster) merged in, as Hydra merges a site file; returns the override that picks it."""
    (folder / "cluster").mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"defaults": [base, "_self_"], **nested(changes)}, allow_unicode=True)
    (folder / "cluster" / f"{name}.yaml").write_text(text)
    return f"cluster={name}"


def use_site(monkeypatch, folder: Path) -> None:
    """Search `folder` first, before any site folder the test already uses."""
    existing = os.environ.get("FTC_SITE_CONFIG", "")
    monkeypatch.setenv("FTC_SITE_CONFIG", os.pathsep.join(filter(None, [str(folder), existing])))


def admin_site(tmp_path: Path, monkeypatch, base: str, changes: dict, name: str = "admin") -> str:
    """admin_cluster in a fresh site folder that the test (and its subprocesses) then use."""
    folder = tmp_path / f"admin-site-{name}"
    choice = admin_cluster(folder, base, changes, name)
    use_site(monkeypatch, folder)
    return choice
