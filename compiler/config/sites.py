"""Site folders: an admin's config folders from $FTC_SITE_CONFIG, searched before ftc's own `conf/`."""

from __future__ import annotations

import os

SITE_ENV = "FTC_SITE_CONFIG"


def site_folders() -> list[str]:
    """Admin config folders from $FTC_SITE_CONFIG (colon-separated), searched before ftc's own."""
    return [p for p in os.environ.get(SITE_ENV, "").split(os.pathsep) if p]
