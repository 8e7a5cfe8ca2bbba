"""Rendering a plan into the sbatch script.

Every expression a template prints passes through `shell_quote` (Jinja's `finalize` hook), so no
template, ftc's or an admin's, can forget to quote. The only raw shell is `ShellRaw`, made here
from the cluster's admin setup lines.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
import jinja2.runtime

from ftc.compiler.config.sites import site_template_dirs
from ftc.compiler.errors import UserError
from ftc.compiler.render import directives as slurm
from ftc.compiler.planning.plan import Plan
from ftc.compiler.render.collisions import extra_directives
from ftc.compiler.runfolder import REQUEUE_FILE, STOP_FILE

TEMPLATE = "job.sbatch.j2"


class ShellRaw(str):
    """Shell text that goes into the script as is: admin setup lines and fixed syntax."""


def shell_quote(value: object) -> str:
    if isinstance(value, ShellRaw):
        return value
    if isinstance(value, bool):
        value = str(value).lower()
    text = str(value)
    if any(c in text for c in "\n\r\0"):
        raise UserError(f"template: refusing to put a value with a line break into a script: {text!r}")
    return shlex.quote(text)


class _RenderedBlock(jinja2.runtime.BlockReference):
    """`{{ super() }}`: a parent block rendered by these same rules (its values already quoted,
    its raw lines the admin's), so it goes into the script as is rather than being quoted again."""

    def __call__(self) -> str:
        return ShellRaw(super().__call__())


class _ShellContext(jinja2.runtime.Context):
    def super(self, name, current):  # noqa: A003 (Jinja's name)
        parent = super().super(name, current)
        if isinstance(parent, jinja2.runtime.BlockReference):
            parent.__class__ = _RenderedBlock
        return parent


def builtin_templates() -> Path:
    return Path(str(resources.files("ftc.templates")))


def environment(template_dir: str | None) -> jinja2.Environment:
    """Templates from cluster.template_dir and the sites' `templates/` folders before ftc's own."""
    return _environment(tuple(site_template_dirs(template_dir)))


@lru_cache(maxsize=16)
def _environment(folders: tuple[str, ...]) -> jinja2.Environment:
    builtin = jinja2.FileSystemLoader(builtin_templates())
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(folder) for folder in folders]
    loaders += [jinja2.PrefixLoader({"ftc": builtin}), builtin]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        finalize=shell_quote,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.context_class = _ShellContext
    return env


def gres_type_field(cluster) -> str:
    """The field the TYPE in --gres=gpu:TYPE:N comes from."""
    return f"cluster.partitions.{cluster.partition}.gres_type" if cluster.chosen.gres_type else "cluster.gres_name"


def sbatch_directives(plan: Plan, log_pattern: str = "%j") -> list[tuple[str, object | None]]:
    job, topo = plan.job, plan.topology
    cluster, partition = job.cluster, job.cluster.chosen
    directives: list[tuple[str, object | None]] = [
        ("job-name", f"ftc-{job.name}-{plan.run_id}"),
        ("partition", slurm.slurm_name("cluster.partition", cluster.partition)),
        ("nodes", topo.nodes),
        ("ntasks-per-node", 1),
    ]
    if partition.gpu != "cpu":
        if cluster.gpu_request == "gres":
            field = gres_type_field(cluster)
            gres_type = f"{slurm.slurm_name(field, cluster.gres_type)}:" if cluster.gres_type else ""
            directives.append(("gres", f"gpu:{gres_type}{topo.gpus_per_node}"))
        else:
            directives.append(("gpus-per-node", topo.gpus_per_node))
    directives.append(("cpus-per-task", cpus_per_task(plan)))
    for flag, value in (("mem", partition.mem), ("mem-per-gpu", partition.mem_per_gpu)):
        if value is not None:
            directives.append((flag, value))
    if partition.exclusive:
        directives.append(("exclusive", None))
    directives.append(("time", plan.time_limit))
    for flag, value, check in (("account", cluster.account, slurm.slurm_name), ("qos", cluster.qos, slurm.slurm_name),
                               ("constraint", partition.constraint, slurm.slurm_text)):
        if value:
            field = f"cluster.partitions.{cluster.partition}.constraint" if flag == "constraint" else f"cluster.{flag}"
            directives.append((flag, check(field, value)))
    directives += [
        ("output", f"{slurm.slurm_path('output_root', plan.run_dir)}/logs/slurm-{log_pattern}.out"),
        ("open-mode", "append"),
        ("signal", f"B:USR1@{cluster.requeue_signal_seconds}"),
    ]
    if partition.requeue == "allow":
        directives.append(("requeue", None))
    directives += sorted((slurm.extra_option(key), slurm.extra_value(key, value))
                         for key, value in extra_directives(cluster, directives))
    return directives


def cpus_per_task(plan: Plan) -> int:
    """The job's CPUs on each node: the partition's share for the GPUs it takes."""
    partition, gpus = plan.job.cluster.chosen, plan.topology.gpus_per_node
    share = gpus / partition.gpus_per_node if partition.gpus_per_node else 1.0
    return max(1, int(partition.cpus_per_node * min(share, 1.0)))


def threads_per_worker(plan: Plan) -> int:
    """OMP_NUM_THREADS for several workers on a node: each its share of the job's CPUs. ftc sets it
    so that torchrun neither picks its own (1) nor prints a notice about that into the job's log."""
    return max(1, cpus_per_task(plan) // plan.topology.gpus_per_node)


def job_context(plan: Plan) -> dict:
    """The variables job.sbatch.j2 (and a site's override of it) renders with."""
    cluster, topo = plan.job.cluster, plan.topology
    srun_args: list[object] = ["--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if cluster.srun_mpi:
        srun_args.append(f"--mpi={slurm.slurm_name('cluster.srun_mpi', cluster.srun_mpi)}")
    container = cluster.container
    mounts = [slurm.mount_entry(f"cluster.container.mounts.{i}", m) for i, m in enumerate(container.mounts)]
    image = slurm.slurm_text("cluster.container.image", container.image) if container.kind != "none" else None
    if container.kind == "pyxis":
        srun_args.append(f"--container-image={image}")
        if mounts:
            srun_args.append(f"--container-mounts={','.join(mounts)}")
    return {
        "ftc_version": plan.ftc_version,
        "run_id": plan.run_id,
        "output_name": plan.output_name,
        "run_dir": plan.run_dir,
        "directives": [(ShellRaw(flag), value) for flag, value in sbatch_directives(plan)],
        "env": sorted(cluster.job_env.items()),
        "setup_lines": [ShellRaw(line) for line in cluster.setup_lines],
        "srun_args": srun_args,
        "container_runtime": None if container.kind == "none" else container.kind,
        # apptainer/singularity exec --nv [--bind SRC[:DST[:OPTS]] ...] IMAGE: one --bind per mount
        "container_exec": [container.kind, "exec", "--nv", *(a for m in mounts for a in ("--bind", m)), image]
        if container.kind in ("apptainer", "singularity") else None,
        "container_setup": container_setup(cluster.chosen.container_setup),
        "nproc_per_node": topo.gpus_per_node,
        "threads_per_worker": threads_per_worker(plan),
        "multi_node": topo.nodes > 1,
        "rdzv_port_first": cluster.rdzv_port_first,
        "rdzv_port_count": cluster.rdzv_port_count,
        "stop_file": STOP_FILE,
        "requeue_file": REQUEUE_FILE,
        "gpu": cluster.gpu_spec(plan.gpu),
    }


def container_setup(lines: list[str]) -> ShellRaw | None:
    """The admin's in-container setup lines as one quoted `bash -c` script that ends by running the
    launch it is given (`exec "$@"`), so they run inside the container, not on the host."""
    if not lines:
        return None
    return ShellRaw(shlex.quote("\n".join(["set -e", *lines, 'exec "$@"'])))


def render_sbatch(plan: Plan) -> str:
    return render_template(plan.job.cluster.template_dir, TEMPLATE, job_context(plan))


def render_template(template_dir: str | None, name: str, context: dict) -> str:
    """A script template rendered by these rules; a template's mistake is one line naming it."""
    env = environment(template_dir)
    try:
        return env.get_template(name).render(context)
    except jinja2.UndefinedError as exc:
        raise UserError(f"template {name}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise UserError(f"template {name}: {exc}") from None
