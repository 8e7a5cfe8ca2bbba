"""The cluster schema: what a site declares (partitions, GPUs, QOS limits, containers, templates)
and the few choices a user may make in it. Fields marked set_by: site are refused as overrides."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ftc.compiler.config.fields import (
    MAX_COUNT,
    SET_BY_SITE,
    SET_BY_USER,
    EnvName,
    PathText,
    ShellText,
    Strict,
    identifier,
    slurm_minutes,
)
from ftc.compiler.config.gpus import GPUS, Gpu, catalogue
from ftc.compiler.limits import SWEEP_POINTS, SWEEP_POINTS_CEILING
from ftc.compiler.render.directives import SLURM_NAME

class Partition(Strict):
    gpu: str = Field(description=f"one of {', '.join(GPUS)}, or a GPU the site declares in cluster.gpus")
    gpus_per_node: int = Field(ge=0)
    max_nodes: int = Field(1, ge=1)
    max_time: str = "1-00:00:00"
    cpus_per_node: int = Field(8, ge=1)
    mem_per_node_gb: int = Field(64, ge=1)
    constraint: ShellText | None = Field(None, description="sbatch --constraint, e.g. h100")
    gres_type: ShellText | None = Field(None, description="the TYPE in --gres=gpu:TYPE:N here; else cluster.gres_name")
    mem: ShellText | None = Field(None, description="sbatch --mem, e.g. 0 (all of a node) or 500G")
    mem_per_gpu: ShellText | None = Field(None, description="sbatch --mem-per-gpu, e.g. 80G")
    exclusive: bool = Field(False, description="sbatch --exclusive: whole nodes only")
    requeue: Literal["allow", "refuse"] = Field(
        "allow", description="refuse: plans that would need a checkpoint-and-requeue are refused (interactive partitions)"
    )
    setup: list[str] = Field(default_factory=list, description="admin shell lines run after cluster.setup")
    container_setup: list[str] = Field(
        default_factory=list, description="admin shell lines run inside the container, before the launch"
    )
    env: dict[EnvName, ShellText] = Field(default_factory=dict, description="environment exported here; wins over cluster.env")
    sbatch_extra: dict[str, ShellText | None] = Field(
        default_factory=dict, description="extra #SBATCH directives here; win over cluster.sbatch_extra; null: no value"
    )

    @field_validator("mem", "mem_per_gpu")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^\d+[KMGT]?$", value):
            raise ValueError(f"must be a Slurm memory size like 0, 512000, 500G or 2T (got {value!r})")
        return value

    @model_validator(mode="after")
    def _one_memory_request(self) -> "Partition":
        if self.mem is not None and self.mem_per_gpu is not None:
            raise ValueError("set mem or mem_per_gpu, not both (Slurm refuses --mem with --mem-per-gpu)")
        return self

    @field_validator("gpu")
    @classmethod
    def _gpu_name(cls, value: str) -> str:
        return identifier(value)

    @field_validator("max_time")
    @classmethod
    def _time(cls, value: str) -> str:
        slurm_minutes(value)
        return value


class Container(Strict):
    kind: Literal["none", "pyxis", "apptainer", "singularity"] = "none"
    image: ShellText | None = None
    mounts: list[ShellText] = Field(
        default_factory=list, description="SRC[:DST[:OPTS]] each: pyxis --container-mounts, apptainer/singularity --bind"
    )

    @model_validator(mode="after")
    def _image(self) -> "Container":
        if self.kind != "none" and not self.image:
            raise ValueError(f"cluster.container.image: container kind {self.kind} needs cluster.container.image")
        return self


class QosLimit(Strict):
    """A QOS's per-job limits, as `sacctmgr show qos` lists them (MaxWall, MaxTRESPerJob): the planner
    keeps within them and refuses what Slurm would leave pending for ever."""

    max_time: str | None = Field(None, description="MaxWall, a Slurm time like 04:00:00")
    max_gpus_per_job: int | None = Field(None, ge=1, le=MAX_COUNT, description="MaxTRESPerJob gres/gpu")
    max_nodes_per_job: int | None = Field(None, ge=1, le=MAX_COUNT, description="MaxTRESPerJob node")

    @field_validator("max_time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            slurm_minutes(value)
        return value


class SiteGpu(Strict):
    """A GPU a site declares: the planner sizes memory and time with it; `family` is its URN variant."""

    memory_gib: float = Field(gt=0, le=65536, allow_inf_nan=False, description="total memory the device reports")
    bf16_tflops: float = Field(gt=0, le=1e6, allow_inf_nan=False, description="dense bf16 peak, no sparsity")
    family: str = Field(description="the +VARIANT of model config URNs it trains, e.g. A40")

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        return identifier(value)


class ClusterConfig(Strict):
    """The site's cluster: its admins set every field in a site file; a user picks only the partition,
    account and QoS (Slurm checks the user may use them)."""

    model_config = ConfigDict(json_schema_extra=SET_BY_SITE)

    name: str
    executor: Literal["local", "slurm"]
    partition: str = Field(
        description="the partition to run in; a key of cluster.partitions", json_schema_extra=SET_BY_USER
    )
    partitions: dict[str, Partition] = Field(min_length=1)
    account: ShellText | None = Field(None, json_schema_extra=SET_BY_USER)
    qos: ShellText | None = Field(None, json_schema_extra=SET_BY_USER)
    qos_limits: dict[str, QosLimit] = Field(
        default_factory=dict, description="per QOS name: its per-job limits (else read with sacctmgr when it answers)"
    )
    gpu_request: Literal["gpus", "gpus-per-node", "gres"] = Field(
        "gpus-per-node", description="how GPUs are asked for: gpus (or gpus-per-node): --gpus-per-node=N; "
        "gres: --gres=gpu:TYPE:N"
    )
    gres_name: ShellText | None = Field(
        None, description="the TYPE in --gres=gpu:TYPE:N where a partition sets no gres_type; none: --gres=gpu:N"
    )
    srun_mpi: ShellText | None = Field(None, description="srun --mpi value, e.g. pmix")
    container: Container = Field(default_factory=Container)
    gpus: dict[str, SiteGpu] = Field(default_factory=dict, description="the site's own GPUs, by the name partitions use")
    user_models: bool = Field(True, description="whether users may train their own model folders (model=custom, model.path)")
    model_paths: list[PathText] = Field(
        default_factory=list, description="folders users' own models must be under (links resolved); empty: anywhere"
    )
    setup: list[str] = Field(default_factory=list, description="admin shell lines run before the launch (module load ...)")
    env: dict[EnvName, ShellText] = Field(default_factory=dict, description="environment exported in the job")
    sbatch_extra: dict[str, ShellText | None] = Field(
        default_factory=dict, description="extra #SBATCH directives admins allow; null: an option without a value")
    template_dir: str | None = Field(None, description="folder of Jinja2 templates that override ftc's blocks")
    array_parallelism: int = Field(8, ge=1, description="K in --array=0-N%K for sweeps")
    max_sweep_points: int = Field(
        SWEEP_POINTS, ge=1, le=SWEEP_POINTS_CEILING, description="points one `-m` sweep may have (each is a run folder)")
    requeue_signal_seconds: int = Field(300, ge=30, le=65535, description="Slurm sends USR1 this long before the time limit")
    fs_bandwidth_gbs: float = Field(
        2.0, gt=0, le=10000, allow_inf_nan=False,
        description="GB/s one node reads or writes the shared filesystem at: model load and checkpoint time",
    )
    rdzv_port_first: int = Field(
        29500, ge=1024, le=65535, description="multi-node jobs: rendezvous port = first + SLURM_JOB_ID % count"
    )
    rdzv_port_count: int = Field(1000, ge=1, le=64512, description="how many ports multi-node rendezvous may use")

    @model_validator(mode="after")
    def _partition_exists(self) -> "ClusterConfig":
        if self.partition not in self.partitions:
            raise ValueError(
                f"cluster.partition: unknown partition {self.partition!r}; choose from {', '.join(self.partitions)}"
            )
        return self

    @model_validator(mode="after")
    def _known_gpus(self) -> "ClusterConfig":
        known = catalogue(self.gpus)
        for name, part in self.partitions.items():
            if part.gpu not in known:
                raise ValueError(f"cluster.partitions.{name}.gpu: unknown GPU {part.gpu!r}; known: {', '.join(known)}; "
                                 "a site declares its own in cluster.gpus")
        for name in self.gpus:
            identifier(name)
        return self

    def gpu_spec(self, name: str | None = None) -> Gpu:
        """The chosen partition's GPU (or the one named), from ftc's catalogue and the site's."""
        return catalogue(self.gpus)[name or self.chosen.gpu]

    @field_validator("qos_limits")
    @classmethod
    def _qos_names(cls, value: dict) -> dict:
        for name in value:
            if not SLURM_NAME.fullmatch(name):
                raise ValueError(f"{name[:80]!r} is not a Slurm QOS name (letters, digits, '.', '_', '-', '+', '@')")
        return value

    @model_validator(mode="after")
    def _rdzv_ports(self) -> "ClusterConfig":
        last = self.rdzv_port_first + self.rdzv_port_count - 1
        if last > 65535:
            raise ValueError(f"cluster.rdzv_port_count: ports {self.rdzv_port_first}-{last} pass 65535")
        return self

    @model_validator(mode="after")
    def _container_setup_needs_a_container(self) -> "ClusterConfig":
        for name, part in self.partitions.items():
            if part.container_setup and self.container.kind == "none":
                raise ValueError(f"cluster.partitions.{name}.container_setup: needs cluster.container.kind pyxis, apptainer or singularity")
        return self

    @property
    def chosen(self) -> Partition:
        return self.partitions[self.partition]

    @property
    def gres_type(self) -> str | None:
        return self.chosen.gres_type or self.gres_name

    @property
    def setup_lines(self) -> list[str]:
        return [*self.setup, *self.chosen.setup]

    @property
    def job_env(self) -> dict[str, str]:
        return {**self.env, **self.chosen.env}

    @property
    def extra_directives(self) -> dict[str, str]:
        return {**self.sbatch_extra, **self.chosen.sbatch_extra}
