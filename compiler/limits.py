"""Every bound on what ftc reads, stated once: README's "What ftc refuses, and why" lists these.

A login node is shared, so no input may make ftc run for minutes or take gigabytes: each bound
refuses in one line naming the field, before anything is written. Readers of datasets, site
files, overrides and sweeps import their bound from here.
"""

from __future__ import annotations

import os

from ftc.compiler.errors import UserError

SWEEP_POINTS = 1_000  # default points of one `-m` sweep; a site raises it with cluster.max_sweep_points
SWEEP_POINTS_CEILING = 100_000  # no site goes above this: each point is a run folder
SWEEP_AXIS = 10_000  # values of one swept override (a range is counted, never expanded first)
OVERRIDES = 1_000  # command-line overrides in one command
OVERRIDE_CHARS = 64 * 1024  # one override, key and value
OVERRIDE_DEPTH = 32  # nesting of [ ] and { } in an override value (Hydra's parser recurses)
LIST_ITEMS = 10_000  # items of a list or mapping given in one override
DATASET_LINE_BYTES = 16 << 20  # one JSONL line (a row); datasets readers import it
DATASET_ROWS = 10_000_000  # rows of one dataset file
DATASET_JSON_BYTES = 256 << 20  # a .json array file, parsed whole (JSON Lines streams and has no such bound)
SITE_FILE_BYTES = 1 << 20  # one site YAML or template file
SITE_YAML_NODES = 100_000  # scalars, lists and mappings in one site YAML file (aliases refused outright)


def check_site_file(path: str) -> None:
    """A site file is small, and a YAML one has no anchors or aliases (a 665-byte file of nested
    aliases expands to 10^9 nodes): refused by its tokens, before any loader builds anything."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    if size > SITE_FILE_BYTES:
        raise UserError(f"{path}: {size} bytes, more than the {SITE_FILE_BYTES} a site file may have")
    if path.endswith((".yaml", ".yml")):
        with open(path, "rb") as handle:
            check_yaml_text(path, handle.read().decode("utf-8", errors="replace"))


def check_yaml_text(where: str, text: str) -> None:
    import yaml

    nodes = 0
    try:
        for token in yaml.scan(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(token, (yaml.AliasToken, yaml.AnchorToken)):
                line = token.start_mark.line + 1
                raise UserError(f"{where}:{line}: YAML anchors and aliases are not accepted in site files "
                                "(they can expand a small file without bound); write the values out")
            if isinstance(token, (yaml.ScalarToken, yaml.BlockMappingStartToken, yaml.FlowMappingStartToken,
                                  yaml.BlockSequenceStartToken, yaml.FlowSequenceStartToken)):
                nodes += 1
                if nodes > SITE_YAML_NODES:
                    raise UserError(f"{where}: more than {SITE_YAML_NODES} YAML nodes; a site file is a config")
    except yaml.YAMLError:
        return  # not YAML: the loader names its file and line
