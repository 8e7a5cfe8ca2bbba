"""What Hydra can compose: the config search path, the config groups and their options, and the
choices a command line makes. `ftc --help`, `ftc --info` and shell completion all read it here, from
Hydra itself, so they show what a composition would really use (site folders included).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ftc.compiler.config.sites import initialize_hydra, site_folders

# The groups a user picks on the command line; `recipe` is chosen for them (<model>-<method>).
USER_GROUPS = ("model", "method", "data", "cluster", "resources")
AUTO_GROUPS = ("recipe",)


@dataclass(frozen=True)
class Source:
    """One entry of Hydra's config search path."""

    provider: str  # hydra, main (ftc's own conf/), or where a site folder came from
    scheme: str  # pkg, file, structured
    path: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.path}"


@contextmanager
def _quiet_missing_folders() -> Iterator[None]:
    """Hydra warns of a missing search path folder; ftc --info names it instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"provider=.* is not available")
        yield


def group_options() -> dict[str, list[str]]:
    """Every config group and its options, along the whole search path (site folders included)."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with _quiet_missing_folders():
            initialize_hydra(tuple(site_folders()))
            loader = GlobalHydra.instance().config_loader()
            return {g: loader.get_group_options(g, config_name="ftc") for g in (*USER_GROUPS, *AUTO_GROUPS)}
    finally:
        GlobalHydra.instance().clear()


def choices_and_sources(args: Sequence[str]) -> tuple[dict[str, str | None], list[Source]]:
    """The option each config group gets with `args`, and Hydra's search path, in lookup order."""
    from omegaconf import OmegaConf

    from ftc.compiler.config.compose import hydra_view

    with _quiet_missing_folders():
        hydra = hydra_view(args)
    choices = OmegaConf.to_container(hydra.runtime.choices)
    ours = {g: choices.get(g) for g in (*USER_GROUPS, *AUTO_GROUPS)}
    sources = [Source(s.provider, s.schema, s.path) for s in hydra.runtime.config_sources]
    return ours, sources


def default_choices() -> dict[str, str | None]:
    return choices_and_sources([])[0]
