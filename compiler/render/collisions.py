"""An admin's extra #SBATCH directives against ftc's own: a collision is refused, naming both.

sbatch takes the last of two equal flags and silently mixes related ones (`--gres` with
`--gpus`, `--mem` with `--mem-per-gpu`), so a second `--time` in `sbatch_extra` would quietly
replace the planned one. Each flag is reduced to what it decides (its class) before comparing.
"""

from __future__ import annotations

from ftc.compiler.config.schema import ClusterConfig
from ftc.compiler.errors import UserError

# sbatch's one-letter forms
SHORT = {
    "A": "account", "C": "constraint", "G": "gpus", "J": "job-name", "N": "nodes", "a": "array",
    "c": "cpus-per-task", "d": "dependency", "e": "error", "n": "ntasks", "o": "output", "p": "partition",
    "q": "qos", "t": "time", "w": "nodelist", "x": "exclude",
}
# flags that decide the same thing
CLASS = {
    "gpus": "gpus", "gres": "gpus", "gpus-per-node": "gpus", "gpus-per-task": "gpus", "gpus-per-socket": "gpus",
    "mem": "memory", "mem-per-gpu": "memory", "mem-per-cpu": "memory",
    "ntasks": "tasks", "ntasks-per-node": "tasks",
    "cpus-per-task": "cpus", "cpus-per-gpu": "cpus",
    "requeue": "requeue", "no-requeue": "requeue",
    "output": "output", "error": "output",
    "exclusive": "exclusive", "oversubscribe": "exclusive",
}


def flag_class(flag: str) -> str:
    flag = flag.lstrip("-")
    flag = SHORT.get(flag, flag)
    return CLASS.get(flag, flag)


def extra_directives(cluster: ClusterConfig, ours: list[tuple[str, object | None]]) -> list[tuple[str, str]]:
    """The site's extra directives (a partition's win over the cluster's), refused where they
    collide with one ftc writes itself."""
    taken = {flag_class(flag): (flag, value) for flag, value in ours}
    extras = cluster.extra_directives
    for flag in sorted(extras):
        where = (f"cluster.partitions.{cluster.partition}.sbatch_extra" if flag in cluster.chosen.sbatch_extra
                 else "cluster.sbatch_extra")
        if flag_class(flag) in taken:
            own, value = taken[flag_class(flag)]
            shown = f"--{own}" if value is None else f"--{own}={value}"
            raise UserError(f"{where}.{flag}: collides with ftc's own {shown}; ftc sets it from the plan "
                            "(remove it from the site file)")
    return [(flag.lstrip("-"), extras[flag]) for flag in sorted(extras)]
