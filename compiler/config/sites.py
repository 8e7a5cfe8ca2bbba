"""Site folders: an admin's config folders from $FTC_SITE_CONFIG, searched before ftc's own `conf/`."""

from __future__ import annotations

import os

SITE_ENV = "FTC_SITE_CONFIG"


def site_folders() -> list[str]:
    """Admin config folders from $FTC_SITE_CONFIG (colon-separated), searched before ftc's own."""
    return [p for p in os.environ.get(SITE_ENV, "").split(os.pathsep) if p]


def searchpath_override(folders: list[str] | tuple[str, ...]) -> list[str]:
    """The Hydra override that adds site folders to its search path; none without site folders."""
    if not folders:
        return []
    return ["hydra.searchpath=[" + ",".join(f"file://{os.path.abspath(p)}" for p in folders) + "]"]
