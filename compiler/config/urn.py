"""Model config URNs, `namespace/name@version+VARIANT`, as NeMo Customizer names its configs."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ftc.compiler.config.sites import group_files, site_folders
from ftc.compiler.errors import UserError

URN = re.compile(r"^(?P<namespace>[^/@+\s]+)/(?P<name>[^/@+\s]+)(?:@(?P<version>[^+\s]*))?(?:\+(?P<variant>\S+))?$")


@dataclass(frozen=True)
class ModelEntry:
    """One model config file and the URNs it offers (one per GPU variant)."""

    option: str  # the Hydra group option, e.g. llama8b
    namespace: str
    name: str
    version: str
    variants: tuple[str, ...]

    def urn(self, variant: str) -> str:
        return f"{self.namespace}/{self.name}@{self.version}+{variant}"

    @property
    def urns(self) -> list[str]:
        return [self.urn(v) for v in self.variants]


def model_entries() -> list[ModelEntry]:
    """Every model option, a site's first: read as YAML, or composed when it inherits (`defaults`)."""
    import yaml

    entries = []
    for option, (path, _) in group_files("model").items():
        try:
            raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: a model config is a mapping, not {type(raw).__name__}")
        if raw.get("source") == "local":  # model=custom: a user's folder, no config URN of its own
            continue
        if "defaults" in raw:
            raw = _composed_model(option)
        try:
            entries.append(ModelEntry(option, raw["namespace"], raw["name"], str(raw["version"]), tuple(raw["training_options"])))
        except (KeyError, TypeError) as exc:
            raise UserError(f"{path}: model config lacks {exc}") from None
    return entries


def _composed_model(option: str) -> dict:
    """A model config that inherits through `defaults`, as Hydra composes it (names only, unresolved)."""
    from omegaconf import OmegaConf

    from ftc.compiler.config.compose import _compose_groups

    model = _compose_groups((f"model={option}",), tuple(site_folders())).model
    return {key: OmegaConf.to_container(model[key]) if key == "training_options" else model[key]
            for key in ("namespace", "name", "version", "training_options") if key in model}


def find_model(urn: str) -> tuple[ModelEntry, str | None]:
    """The model config a URN names, and its variant (None when the URN has no +VARIANT)."""
    entries = model_entries()
    valid = [u for e in entries for u in e.urns]
    match = URN.match(urn.strip())
    if not match:
        raise UserError(f"model.urn: {urn!r} is not a config URN like meta/llama-3.1-8b-instruct@v1.0.0+H100")
    if not match["version"]:
        raise UserError(f"model.urn: Version is not specified in the config URN {urn!r}; valid URNs: {', '.join(valid)}")
    for entry in entries:
        if (entry.namespace, entry.name, entry.version) == (match["namespace"], match["name"], match["version"]):
            variant = match["variant"]
            if variant is not None and variant not in entry.variants:
                break
            return entry, variant
    near = difflib.get_close_matches(urn, valid, n=3, cutoff=0.3)
    raise UserError(f"model.urn: no model config {urn!r}; nearest: {', '.join(near) or ', '.join(valid)}")


def expand_urn_override(args: list[str] | tuple[str, ...]) -> list[str]:
    """Rewrite `model.urn=...` into the model group choice it names (and the variant's check)."""
    out = []
    for arg in args:
        if arg.startswith("model.urn="):
            entry, variant = find_model(arg.split("=", 1)[1])
            out.append(f"model={entry.option}")
            if variant:
                out.append(f"++model.variant={variant}")
        else:
            out.append(arg)
    return out
