"""Values for `#SBATCH` lines and `srun` options that Slurm reads exactly as written.

bash never reads an `#SBATCH` line (to bash it is a comment); Slurm's own parser does
(`_get_argument` in src/sbatch/opt.c). It splits words at unquoted whitespace, ends the line at an
unquoted `#`, strips single and double quotes, and reads a backslash as an escape *everywhere*,
inside single quotes too. The renderer writes each value with `shlex.quote`, which Slurm unquotes
to the same text except where a backslash is involved; so a backslash is refused, as are control
characters. On top of that, each option has its own grammar: names (partition, account, QoS, GRES
type, MPI plugin) take no spaces, commas or colons; `--output` expands `%` patterns; an
`sbatch_extra` key is an option name. Every refusal is one line naming the field.
"""

from __future__ import annotations

import re

from ftc.compiler.errors import UserError

SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+@-]{0,127}")
OPTION_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
# The sbatch options a site may add with sbatch_extra (Slurm 22.05's, less those ftc sets itself and
# those that change what the script is: a heterogeneous job, another command, an array, another user).
# An option outside this list is refused by name rather than failing in sbatch.
SBATCH_EXTRA_OPTIONS = frozenset("""
    acctg-freq bb bbf begin cluster-constraint clusters comment container contiguous core-spec cores-per-socket
    cpu-freq cpus-per-gpu deadline delay-boot distribution exclude exclusive export extra-node-info gpu-bind
    gpu-freq gpus gpus-per-socket gpus-per-task gres-flags hint hold kill-on-invalid-dep licenses mail-type
    mail-user mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus network nice nodelist ntasks-per-core
    ntasks-per-gpu ntasks-per-socket overcommit oversubscribe power priority profile propagate reboot reservation
    sockets-per-node spread-job switches thread-spec threads-per-core time-min tmp use-min-nodes wckey
""".split())


def slurm_text(field: str, value: object) -> str:
    """Any value on an #SBATCH line: no backslash, no control characters."""
    text = str(value)
    if "\\" in text:
        raise UserError(f"{field}: a backslash is not allowed here: Slurm's #SBATCH parser reads it as an escape, "
                        f"even inside quotes (got {text!r})")
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        raise UserError(f"{field}: control character {bad!r} is not allowed on an #SBATCH line (got {text!r})")
    return text


def slurm_name(field: str, value: object) -> str:
    """A Slurm name (partition, account, QoS, GRES type, MPI plugin): one word, no separators."""
    text = slurm_text(field, value)
    if not SLURM_NAME.fullmatch(text):
        raise UserError(f"{field}: must be a Slurm name: up to 128 letters, digits, '.', '_', '-', '+' or '@', "
                        f"not starting with a punctuation mark (got {text!r})")
    return text


def slurm_path(field: str, value: object) -> str:
    """A path for --output: Slurm expands `%` patterns in it, so none may come from a value."""
    text = slurm_text(field, value)
    if "%" in text:
        raise UserError(f"{field}: '%' is not allowed: Slurm expands %-patterns in the log path (got {text!r})")
    return text


def extra_option(key: object) -> str:
    """An sbatch_extra key: a long option name that ftc does not set itself."""
    text = str(key)
    field = f"cluster.sbatch_extra.{text}"
    if not OPTION_NAME.fullmatch(text):
        raise UserError(f"{field}: must be an sbatch long option name like mail-type (got {text!r})")
    if text not in SBATCH_EXTRA_OPTIONS:
        raise UserError(f"{field}: not an sbatch option a site may add (ftc sets the job's shape, log and name "
                        f"itself; see SBATCH_EXTRA_OPTIONS in compiler/render/directives.py)")
    return text


def extra_value(key: str, value: object | None) -> str | None:
    """An sbatch_extra value: None for an option without one (exclusive: null), else non-empty text."""
    if value is None:
        return None
    text = slurm_text(f"cluster.sbatch_extra.{key}", value)
    if not text:
        raise UserError(f"cluster.sbatch_extra.{key}: empty value; give one, or null for an option without a value")
    return text


def mount_entry(field: str, value: object) -> str:
    """One pyxis mount, SRC[:DST[:FLAGS]]: the list is joined with commas, so none inside one."""
    text = slurm_text(field, value)
    if "," in text or not text.strip():
        raise UserError(f"{field}: a mount is SRC[:DST[:FLAGS]] without commas (got {text!r})")
    return text
