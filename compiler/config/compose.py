"""Hydra composition: command-line overrides in, a validated `JobConfig` out.

Config groups are composed once per distinct choice of groups; value overrides are applied
afterwards with Hydra's own override logic, so a 1000-point sweep composes only once.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from itertools import product
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from pydantic import ValidationError

from ftc.compiler import limits
from ftc.compiler.config.owners import SITE, owner, site_line
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.config.sites import GROUPS, initialize_hydra, site_folders
from ftc.compiler.config.urn import expand_urn_override
from ftc.compiler.config.validation import field_names, format_validation_error
from ftc.compiler.errors import UserError
from ftc.compiler.modelfolder.route import attach_model

DEMO_FORMS = {"lora": "sft", "sft": "sft", "dpo": "dpo", "grpo": "grpo"}


def bundled_dataset(name: str, method: str = "lora") -> str:
    """Path of a dataset shipped inside ftc (the demo), in the form `method` reads."""
    root = Path(str(resources.files("ftc.conf"))) / "datasets" / name
    return str(root / DEMO_FORMS.get(method, method))


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(args: Sequence[str]):
    """Hydra's overrides, each one a value the user may set: every form (+, ++, ~, a sweep) is
    refused here, before any composing, when its key is not the user's."""
    from hydra.errors import OverrideParseException

    check_override_bounds(args)
    try:
        overrides = _parser().parse_overrides(list(args))
    except OverrideParseException as exc:
        bad = next((a for a in args if not _parses(a)), "")
        key = bad.split("=", 1)[0].lstrip("+~") if "=" in bad else ""
        if key and owner(key) == SITE:  # the key alone refuses it, whatever the value
            raise UserError(site_line(key)) from None
        if key and GROUP_OPTION.fullmatch(key.replace("/", ".").replace("@", ".")):
            raise UserError(f"{key}: not a valid override: cannot read the value in {bad!r}; quote it: {key}='...'") from None
        raise UserError(f"override: {str(exc).splitlines()[0]}") from None
    _refuse_admin_overrides(overrides)
    return overrides


def check_override_bounds(args: Sequence[str]) -> None:
    """compiler/limits.py's bounds on a command line, checked by counting before Hydra's parser
    (which recurses per nesting level and slows with long lists) sees it."""
    if len(args) > limits.OVERRIDES:
        raise UserError(f"overrides: {len(args)} of them, more than {limits.OVERRIDES}")
    for arg in args:
        key = arg.split("=", 1)[0][:100]
        if owner(key.lstrip("+~")) == SITE:  # the key alone refuses it, whatever the value
            raise UserError(site_line(key.lstrip("+~")))
        if len(arg) > limits.OVERRIDE_CHARS:
            raise UserError(f"{key}: an override of {len(arg)} characters, more than {limits.OVERRIDE_CHARS}")
        depth = deepest = 0
        quote = None
        for char in arg:
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in "[{(":
                depth += 1
                deepest = max(deepest, depth)
            elif char in "]})":
                depth -= 1
        if deepest > limits.OVERRIDE_DEPTH:
            raise UserError(f"{key}: nested {deepest} deep, more than {limits.OVERRIDE_DEPTH}")
        if arg.count(",") >= limits.LIST_ITEMS:
            raise UserError(f"{key}: more than {limits.LIST_ITEMS} items in one override")


def _parses(arg: str) -> bool:
    from hydra.errors import OverrideParseException

    try:
        _parser().parse_overrides([arg])
        return True
    except OverrideParseException:
        return False


def _axis_length(override) -> int:
    """Values of one swept override, counted without expanding a range."""
    from hydra.core.override_parser.types import RangeSweep

    value = override.value()
    if isinstance(value, RangeSweep):
        if not value.step:
            return limits.SWEEP_AXIS + 1
        return max(0, math.ceil((value.stop - value.start) / value.step))
    return len(getattr(value, "list", None) or [None])


def sweep_points(args: Sequence[str]) -> int:
    """How many points a `-m` sweep has, counted before any is made (compiler/limits.py)."""
    total = 1
    for override in parse_overrides(args):
        if override.is_sweep_override():
            length = _axis_length(override)
            if length > limits.SWEEP_AXIS:
                raise UserError(f"{override.get_key_element()}: a sweep of {length} values, more than "
                                f"{limits.SWEEP_AXIS}")
            total *= max(1, length)
            if total > limits.SWEEP_POINTS_CEILING:
                raise UserError(f"sweep: more than {limits.SWEEP_POINTS_CEILING:,} points; no site allows that many")
    return total


def expand_sweep(args: Sequence[str]) -> list[list[str]]:
    """The points of a `-m` sweep: the cartesian product of every comma-separated override."""
    sweep_points(args)
    axes: list[list[str]] = []
    for override in parse_overrides(args):
        if override.is_sweep_override():
            key = override.get_key_element()
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            axes.append([override.input_line])
    return [list(point) for point in product(*axes)] if axes else [[]]


def _is_group_override(override) -> bool:
    key = override.key_or_group
    return key in GROUPS or key.startswith("hydra.") or key == "hydra"


@lru_cache(maxsize=64)
def _compose_groups(group_overrides: tuple[str, ...], site: tuple[str, ...], hydra: bool = False) -> DictConfig:
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException

    _register_resolvers()
    overrides = list(group_overrides)
    GlobalHydra.instance().clear()
    try:
        initialize_hydra(site)
        return compose(config_name="ftc", overrides=overrides, return_hydra_config=hydra)
    except MissingConfigException as exc:
        raise UserError(_missing_option_line(exc, group_overrides)) from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"config: {_first_line(exc)}") from None
    except yaml.YAMLError as exc:  # a site file that is not YAML: its file and line
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.name}:{mark.line + 1}" if mark else "config"
        raise UserError(f"{where}: {getattr(exc, 'problem', None) or _first_line(exc)}") from None
    finally:
        GlobalHydra.instance().clear()


def _missing_option_line(exc: Exception, group_overrides: Iterable[str]) -> str:
    options = getattr(exc, "options", None) or []
    for line in group_overrides:
        group, _, choice = line.partition("=")
        if f"'{group}/{choice}'" in str(exc):
            near = difflib.get_close_matches(choice, options, n=3)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            return f"{group}: unknown option {choice!r}{hint} (choose from {', '.join(sorted(options))})"
    return f"config: {_first_line(exc)}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("ftc_data"):
        OmegaConf.register_new_resolver("ftc_data", bundled_dataset)


def compose_config(args: Sequence[str]) -> tuple[DictConfig, dict]:
    """Compose the primary config with `args` (Hydra override syntax) applied.

    Returns the config without `model.training_options` and those options, resolved, apart:
    they are the model config's guard rails, which no override may change, and leaving them out
    of the per-point copy keeps large sweeps fast.
    """
    cfg, training_options, _ = compose_with_notes(args)
    return cfg, training_options


def compose_with_notes(args: Sequence[str]) -> tuple[DictConfig, dict, list[str]]:
    """compose_config, and the notes on what the caller's values changed besides themselves."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.errors import HydraException

    overrides = parse_overrides(expand_urn_override(args))
    groups = tuple(o.input_line for o in overrides if _is_group_override(o))
    values = [o for o in overrides if not _is_group_override(o)]
    base, training_options = _split_training_options(groups, tuple(site_folders()))
    cfg = base.copy()
    if isinstance(cfg.get("data"), DictConfig) and isinstance(cfg.data.get("fields"), DictConfig):
        OmegaConf.set_struct(cfg.data.fields, False)  # data.fields.<field>=<column>: its keys are the user's
    for override in values:
        try:
            ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
        except (HydraException, OmegaConfBaseException) as exc:
            raise UserError(_override_error_line(override, exc)) from None
    return cfg, training_options, _epochs_win(cfg, {o.key_or_group for o in values})


def _epochs_win(cfg: DictConfig, keys: set[str]) -> list[str]:
    """An explicit `method.epochs` turns off the max_steps a recipe (or a site's config) set, which
    would otherwise stop training early without a word; the note is the plan's first warning
    (so strict=true refuses the job naming both).
    Both set explicitly: both stand, max_steps decides as in transformers, and a note says so."""
    method = cfg.get("method")
    if "method.epochs" not in keys or method is None or method.get("max_steps") is None:
        return []
    if "method.max_steps" in keys:  # both said (an API operator's max_steps and a body's epochs): say which decides
        return [f"method.max_steps={method.max_steps}: set with method.epochs={method.epochs}; training stops "
                f"after {method.max_steps} steps, whatever the epochs"]
    note = (f"method.max_steps=null: method.epochs={method.epochs} was set, so the recipe's "
            f"max_steps={method.max_steps} is off and training runs {method.epochs} epoch(s)")
    method.max_steps = None
    return [note]


@lru_cache(maxsize=64)
def _split_training_options(groups: tuple[str, ...], site: tuple[str, ...]) -> tuple[DictConfig, dict | None]:
    from omegaconf import open_dict

    cfg = _compose_groups.__wrapped__(groups, site)  # a fresh compose, this cache's own: no deep copy of a cached one
    if "training_options" not in cfg.get("model", {}):
        return cfg, None
    options = resolve(cfg.model.training_options)
    with open_dict(cfg):
        del cfg.model["training_options"]
    return cfg, options


def _override_error_line(override, exc: Exception) -> str:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = override.key_or_group
    if isinstance(exc.__cause__, (ConfigAttributeError, ConfigKeyError)) or "not in struct" in str(exc):
        parent, _, leaf = key.rpartition(".")
        near = difflib.get_close_matches(leaf, field_names(parent), n=1)
        hint = f"; did you mean {parent + '.' if parent else ''}{near[0]}?" if near else ""
        return f"{key}: unknown field{hint}"
    return f"{key}: {_first_line(exc)}"


GROUP_OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _refuse_admin_overrides(overrides) -> None:
    """Overrides set values; config files (and with them raw shell) come only from conf/ and $FTC_SITE_CONFIG."""
    for override in overrides:
        key = override.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise UserError(f"{key}: Hydra's own settings are not overrides here; config folders come only from "
                            "$FTC_SITE_CONFIG, set by the site's admins")
        if override.package is not None or "/" in key:
            raise UserError(f"{key}: choose a config as GROUP=OPTION (e.g. cluster=example), without @packages or paths")
        if key in GROUPS and not (override.type.name == "CHANGE" and isinstance(override.value(), str)
                                  and GROUP_OPTION.fullmatch(override.value())):
            raise UserError(f"{key}: choose one of its config files by name, as {key}=OPTION "
                            "(no paths, interpolations, +, ++ or ~)")
        if owner(key) == SITE:  # the schema's set_by: a site's limits, raw shell and guard rails
            raise UserError(site_line(key))


def resolve(cfg: DictConfig) -> dict:
    """The plain, fully interpolated dict of a composed config."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as exc:
        key = exc.full_key or "config"
        raise UserError(f"{key}: no value given; set it, e.g. {key}=...") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise UserError(f"{key}: {_first_line(exc)}") from None


def load_job(args: Sequence[str]) -> tuple[JobConfig, dict]:
    """Compose, resolve and validate: the validated job and the resolved dict it came from."""
    cfg, training_options, notes = compose_with_notes(args)
    resolved = resolve(cfg)
    if training_options is not None:
        resolved["model"]["training_options"] = training_options
    try:
        job = JobConfig.model_validate(resolved)
    except ValidationError as exc:
        raise UserError(*format_validation_error(exc)) from None
    job = attach_model(job)
    job.notes.extend(notes)
    return job, resolved


def load_model_config(option: str):
    """One model config, validated, without composing a whole job."""
    from ftc.compiler.config.schema import ModelConfig

    cfg = _compose_groups((f"model={option}",), tuple(site_folders()))
    try:
        return ModelConfig.model_validate(resolve(cfg.model))
    except ValidationError as exc:
        raise UserError(*(f"model.{line}" for line in format_validation_error(exc))) from None


def hydra_view(args: Sequence[str]) -> DictConfig:
    """Hydra's own record of composing `args`' config groups (runtime.choices, config_sources): ftc --info."""
    groups = tuple(o.input_line for o in parse_overrides(expand_urn_override(args)) if _is_group_override(o))
    return _compose_groups(groups, tuple(site_folders()), hydra=True).hydra


def default_cluster():
    """The cluster a plain `ftc` composes (the site's default), validated."""
    from ftc.compiler.config.schema import ClusterConfig

    cfg = _compose_groups((), tuple(site_folders()))
    try:
        return ClusterConfig.model_validate(resolve(cfg.cluster))
    except ValidationError as exc:
        raise UserError(*(f"cluster.{line}" for line in format_validation_error(exc))) from None
