"""A QOS's per-job limits in the plan: a job over MaxWall or MaxTRESPerJob is accepted by sbatch and
then pends for ever (QOSMaxWallDurationPerJobLimit) while status says "pending"; ftc plans within
the limits instead, and refuses at compile time what cannot fit, naming the QOS.

The limits come from the site (cluster.qos_limits.<name>) or, where the site declares none, from
`sacctmgr show qos` when accounting answers from this node; a declared value wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ftc.compiler.config.fields import slurm_minutes
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning.estimate import format_slurm_time

SACCTMGR_TIMEOUT = 5


@dataclass(frozen=True)
class QosLimits:
    name: str
    max_minutes: int | None = None
    max_gpus: int | None = None
    max_nodes: int | None = None
    source: str = "sacctmgr"

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.max_minutes, self.max_gpus, self.max_nodes))


def _tres(text: str, key: str) -> int | None:
    """gres/gpu=4,node=1 -> 4 for gres/gpu (a typed gres/gpu:h100=4 counts too), 1 for node."""
    for item in text.split(","):
        name, _, value = item.partition("=")
        if (name == key or name.startswith(key + ":")) and value.isdigit():
            return int(value)
    return None


@lru_cache(maxsize=16)
def read_sacctmgr(name: str) -> QosLimits | None:
    """The QOS as accounting knows it; None when sacctmgr is absent, silent, or has no such QOS."""
    from ftc.compiler.submit import slurm

    if not slurm.have("sacctmgr"):
        return None
    proc = slurm.call("sacctmgr", "--noheader", "--parsable2", "show", "qos", name, "format=name,maxwall,maxtres",
                      timeout=SACCTMGR_TIMEOUT)
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[0] == name:
            wall = fields[1].strip()
            try:
                minutes = slurm_minutes(wall) if re.fullmatch(r"[0-9:-]+", wall) else None
            except ValueError:
                minutes = None
            return QosLimits(name, minutes, _tres(fields[2], "gres/gpu"), _tres(fields[2], "node"))
    return None


def qos_limits(job: JobConfig) -> QosLimits | None:
    """The limits of the job's QOS: the site's declaration, filled in from accounting."""
    cluster = job.cluster
    if not cluster.qos:
        return None
    declared = cluster.qos_limits.get(cluster.qos)
    read = read_sacctmgr(cluster.qos) if cluster.executor == "slurm" else None
    if declared is None:
        return read if read is not None and read.any else None
    return QosLimits(
        cluster.qos,
        slurm_minutes(declared.max_time) if declared.max_time else (read.max_minutes if read else None),
        declared.max_gpus_per_job if declared.max_gpus_per_job is not None else (read.max_gpus if read else None),
        declared.max_nodes_per_job if declared.max_nodes_per_job is not None else (read.max_nodes if read else None),
        source=f"cluster.qos_limits.{cluster.qos}",
    )


def within(job: JobConfig, limits: QosLimits | None) -> JobConfig:
    """The job as the planner sees it under the QOS: the partition's time, nodes and GPUs per node
    cut to what the QOS allows one job (the plan itself keeps the request as asked)."""
    if limits is None or not limits.any:
        return job
    part = job.cluster.chosen
    update: dict = {}
    if limits.max_minutes is not None and limits.max_minutes < slurm_minutes(part.max_time):
        update["max_time"] = format_slurm_time(limits.max_minutes)
    nodes = part.max_nodes if limits.max_nodes is None else min(part.max_nodes, limits.max_nodes)
    if limits.max_gpus is not None and part.gpus_per_node:
        if limits.max_gpus < part.gpus_per_node:
            update["gpus_per_node"], nodes = limits.max_gpus, 1
        else:
            nodes = min(nodes, limits.max_gpus // part.gpus_per_node)
    if nodes != part.max_nodes:
        update["max_nodes"] = nodes
    if not update:
        return job
    partitions = {**job.cluster.partitions, job.cluster.partition: part.model_copy(update=update)}
    return job.model_copy(update={"cluster": job.cluster.model_copy(update={"partitions": partitions})})


def describe(limits: QosLimits) -> str:
    parts = [f"MaxWall {format_slurm_time(limits.max_minutes)}" if limits.max_minutes else "",
             f"{limits.max_gpus} GPUs per job" if limits.max_gpus else "",
             f"{limits.max_nodes} node(s) per job" if limits.max_nodes else ""]
    return f"QOS {limits.name} allows {', '.join(p for p in parts if p)} (from {limits.source})"


def check_time(time_limit: str, limits: QosLimits | None) -> None:
    """An explicit --time over the QOS's MaxWall would pend for ever: refused now."""
    if limits is None or limits.max_minutes is None or slurm_minutes(time_limit) <= limits.max_minutes:
        return
    wall = format_slurm_time(limits.max_minutes)
    raise UserError(f"resources.time: --time={time_limit} is longer than QOS {limits.name}'s MaxWall {wall} "
                    f"(from {limits.source}); the job would pend "
                    f"for ever (QOSMaxWallDurationPerJobLimit): ask for at most {format_slurm_time(limits.max_minutes)} "
                    "or resources.time=auto (checkpoints and requeues within it), or pick another cluster.qos")


def explain(exc: UserError, limits: QosLimits | None) -> UserError:
    """A planner refusal under a QOS: the QOS's share of the reason said."""
    if limits is None or not (limits.max_gpus or limits.max_nodes):
        return exc
    return UserError(*(f"{p} (the nodes and GPUs above are what one job may use under cluster.qos={limits.name}: "
                        f"{describe(limits)})" for p in exc.problems))
