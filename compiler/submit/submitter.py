"""Submission: a compiled run (or a sweep of them) to Slurm, or to the local executor.

Slurm gets the run folder's job.sbatch byte for byte (see slurm.submit), after `sbatch --test-only`
has answered; a refusal becomes one line naming the field to change. A sweep is one job array
whose task i runs point i's own job.sbatch. The same run id is never run twice at once, and a
completed one is not run again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import ftc
from ftc.compiler import records
from ftc.compiler.config.fields import slurm_minutes
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import CompiledRun
from ftc.compiler.planning.plan import Plan
from ftc.compiler.render.directives import slurm_path
from ftc.compiler.render.sbatch import ShellRaw, gres_type_field, job_context, render_template, sbatch_directives
from ftc.compiler.runfolder import make_folders, umask_for, write_atomic
from ftc.compiler.runs import reasons, runstate
from ftc.compiler.runs.lock import run_lock, run_locks
from ftc.compiler.runs.terminal import printable
from ftc.compiler.submit import slurm
from ftc.compiler.submit.kept import folder_run

SWEEP_TEMPLATE = "sweep.sbatch.j2"
PER_RUN_DIRECTIVES = ("job-name", "output", "time")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def refusal(plan: Plan, message: str) -> str:
    """Slurm's refusal as one line naming the field to change."""
    topo, cluster = plan.topology, plan.job.cluster
    name, partition = cluster.partition, cluster.chosen
    message = printable(message)  # Slurm's words, escaped: one line whatever they hold
    text = message.lower()
    if "invalid partition" in text:
        return f"cluster.partition: Slurm refused partition {name!r}: {message}"
    if "time limit" in text:
        return f"resources.time: Slurm refused --time={plan.time_limit} in partition {name} ({message})"
    if "node count" in text:
        return f"resources.nodes: Slurm refused {topo.nodes} node(s) in partition {name} ({message})"
    if "feature" in text:
        return f"cluster.partitions.{name}.constraint: Slurm refused constraint {partition.constraint!r} ({message})"
    if "account" in text:
        return f"cluster.account: Slurm refused account {cluster.account!r}: {message}"
    if "qos" in text:
        return f"cluster.qos: Slurm refused QOS {cluster.qos!r}: {message}"
    gres = dict(sbatch_directives(plan)).get("gres")
    if gres is not None and ("node configuration is not available" in text or "gres" in text):
        return gres_refusal(plan, str(gres), message)
    if "node configuration is not available" in text:
        return f"resources.gpus_per_node: {_cannot_place(plan)} in partition {name} ({message})"
    return f"cluster: Slurm refused the job: {message}"


def _cannot_place(plan: Plan, detail: str = "") -> str:
    topo = plan.topology
    units = ("CPU worker" if plan.gpu == "cpu" else "GPU") + ("s" if topo.gpus_per_node > 1 else "")
    nodes = f"{topo.nodes} node{'s' if topo.nodes > 1 else ''}"
    return (f"Slurm cannot place {nodes} x {topo.gpus_per_node} {units} "
            f"({detail}{plan.job.cluster.chosen.cpus_per_node} CPUs per node)")


def gres_refusal(plan: Plan, gres: str, message: str) -> str:
    """A refusal of the --gres ftc sent: the GPU type when the partition's nodes have none of that
    type (sinfo says what they have), else the count; never the count for a type they lack."""
    cluster, name, gres_type = plan.job.cluster, plan.job.cluster.partition, plan.job.cluster.gres_type
    field = gres_type_field(cluster) if gres_type else "cluster.gpu_request"
    if "node configuration is not available" not in message.lower():
        return f"{field}: Slurm refused --gres={gres} in partition {name}: {message}"
    offered = slurm.partition_gres(name)
    if offered is None:  # sinfo did not answer: both causes stay possible
        other = f", or its nodes have no GPU of type {gres_type!r} ({field})" if gres_type else ""
        return f"resources.gpus_per_node: {_cannot_place(plan, f'--gres={gres}; ')} in partition {name}{other} ({message})"
    have = ", ".join(offered) or "no GRES"
    types = {g.split(":")[1] for g in offered if g.startswith("gpu:") and g.count(":") >= 2}
    if gres_type and gres_type not in types:
        return (f"{field}: Slurm refused --gres={gres} in partition {name}: its nodes have no GPU of type "
                f"{gres_type!r}, they have {have} ({message})")
    return (f"resources.gpus_per_node: {_cannot_place(plan, f'--gres={gres}; nodes have {have}; ')} "
            f"in partition {name} ({message})")


def _outputs(run_dir: Path) -> str:
    paths = (records.read_json(run_dir / "outputs.json") or {}).get("paths") or {}
    return ", ".join(f"{k} {v}" for k, v in paths.items()) or str(run_dir)


def run_to_do(plan: Plan) -> tuple[bool, str | None]:
    """(still to run, a line on the job the folder held before): False for a completed run (nothing
    to do); raises for one that is pending or running."""
    run_dir = Path(plan.run_dir)
    view = runstate.resolve_states([runstate.load(run_dir)])[0]
    if view.damaged:
        problem = next(p for p in view.problems if p.startswith(str(run_dir / records.JOB_FILE)))
        raise UserError(f"{problem} (ftc will not guess whether its job still runs: check with squeue, "
                        "then remove or fix the file to submit again)")
    if view.state in runstate.ACTIVE:
        raise UserError(
            f"run {plan.run_id} is already {view.state} as job {view.job}; "
            f"follow it with ftc status {plan.run_id}, or stop it with ftc cancel {plan.run_id}"
        )
    if view.state == "completed":
        return False, f"run {plan.run_id} already completed (job {view.job}); outputs: {_outputs(run_dir)}"
    if view.record:
        ended = "is unknown to Slurm" if view.state == "unknown" else f"ended {view.label}"
        return True, f"run {plan.run_id}: job {view.job} {ended}; resubmitting: {reasons.resume_note(run_dir)}"
    return True, None


def still_to_run(plan: Plan) -> bool:
    """run_to_do for the CLI: its line printed."""
    todo, note = run_to_do(plan)
    if note:
        print(note)
    return todo


def _preflight(plan: Plan, script: Path, job: JobConfig | None) -> None:
    """Ask Slurm first, unless the request says preflight=false (a request field, not in the plan)."""
    if job is not None and not job.preflight:
        return
    try:
        slurm.test_only(script)
    except slurm.SlurmUnavailable as exc:
        raise UserError(str(exc)) from None
    except slurm.SlurmError as exc:
        raise UserError(refusal(plan, str(exc))) from None


def _sbatch(plan: Plan, script: str, folder: Path) -> tuple[str, Path]:
    try:
        with umask_for(folder.parent):  # the job's umask is sbatch's: on a shared root the team reads its files
            return slurm.submit(script, folder)
    except slurm.SlurmUnavailable as exc:
        raise UserError(str(exc)) from None
    except slurm.SlurmError as exc:
        raise UserError(refusal(plan, str(exc))) from None


def _follow_lines(ref: str) -> list[str]:
    return [f"  ftc status {ref}", f"  ftc logs {ref} -f", f"  ftc cancel {ref}"]


def submit_run(run: CompiledRun, job: JobConfig | None = None) -> int:
    """The CLI's submission of one run: `submission`, its lines printed; a local run without
    detach=true runs here in the foreground instead, its output streamed to the terminal."""
    if run.plan.job.cluster.executor == "local" and not (job is not None and job.detach):
        from ftc.compiler.submit import local

        with contextlib.ExitStack() as held:  # let go once the process and its job.json exist
            held.enter_context(run_lock(Path(run.plan.run_dir)))
            run, note = folder_run(run)
            if note:
                print(note)
            if not still_to_run(run.plan):
                return 0
            return local.foreground(run.plan, started=held.close)
    for line in submission(run, job):
        print(line)
    return 0


def submission(run: CompiledRun, job: JobConfig | None = None) -> Iterator[str]:
    """Submit one run to Slurm, or start it detached here; yields what happened, line by line as it
    happens, for the caller to show (the CLI prints them, the API server keeps its log its own).
    `job` is the validated request, for preflight (default: on).

    The check and the submission happen under the run folder's lock (see runs/lock.py)."""
    with run_lock(Path(run.plan.run_dir)):
        run, kept = folder_run(run)
        if kept:
            yield kept
        todo, note = run_to_do(run.plan)
        if note:
            yield note
        if not todo:
            return
        if run.plan.job.cluster.executor == "local":
            from ftc.compiler.submit import local

            yield from local.background(run.plan)
        else:
            yield from _submit_slurm(run, job)


def _submit_slurm(run: CompiledRun, job: JobConfig | None) -> Iterator[str]:
    plan = run.plan
    if not slurm.have("sbatch"):
        raise UserError(slurm.NO_SBATCH)
    run_dir = Path(plan.run_dir)
    script = run_dir / "job.sbatch"
    _preflight(plan, script, job)
    job_id, submitted = _sbatch(plan, run.script, run_dir / ".submitit")
    records.write_record(run_dir, records.new_record(
        run_dir, "slurm", job=job_id, job_id=job_id, array_index=None, script=str(script),
        script_sha256=sha256(run.script), submitted_file=str(submitted),
        log=str(run_dir / "logs" / f"slurm-{job_id}.out"),
    ))
    t = plan.topology
    yield (f"submitted run {plan.run_id} as Slurm job {job_id} (partition {plan.job.cluster.partition}, "
           f"{t.nodes} node{'s' * (t.nodes > 1)} x {t.gpus_per_node} {'CPU worker' if plan.gpu == 'cpu' else 'GPU'}"
           f"{'s' * (t.gpus_per_node > 1)}, --time={plan.time_limit})")
    yield f"run folder {run_dir}"
    yield from _follow_lines(plan.run_id)


def common_directives(runs: list[CompiledRun]) -> list[tuple[str, object | None]]:
    """The #SBATCH directives all points share; one array has one set of resources.

    The time limit is the longest point's, so a sweep over epochs or data sizes stays one array.
    """
    def shared(run: CompiledRun) -> dict[str, object | None]:
        return {f: v for f, v in sbatch_directives(run.plan) if f not in PER_RUN_DIRECTIVES}

    first = shared(runs[0])
    for index, run in enumerate(runs[1:], start=1):
        other = shared(run)
        flag = next((f for f in {**first, **other} if first.get(f, "absent") != other.get(f, "absent")), None)
        if flag is not None:
            raise UserError(
                f"sweep: point {index} (run {run.plan.run_id}) asks for --{flag}={other.get(flag, 'absent')} but "
                f"point 0 (run {runs[0].plan.run_id}) for --{flag}={first.get(flag, 'absent')}; one job array has "
                "one set of Slurm resources: make that field equal across the sweep, or submit the points separately"
            )
    first["time"] = max((r.plan.time_limit for r in runs), key=slurm_minutes)
    return list(first.items())


def render_sweep(runs: list[CompiledRun], sweep_id: str, sweep_dir: Path) -> str:
    """The job array script; a site's template_dir may override sweep.sbatch.j2 like job.sbatch.j2."""
    plan = runs[0].plan
    parallelism = min(plan.job.cluster.array_parallelism, len(runs))
    directives = [
        ("job-name", f"ftc-{plan.job.name}-sweep-{sweep_id}"),
        *common_directives(runs),
        ("output", f"{slurm_path('output_root', sweep_dir)}/logs/slurm-%A_%a.out"),
        ("array", f"0-{len(runs) - 1}%{parallelism}"),
    ]
    # The first point's variables too: a site's job.sbatch.j2 that this template extends may use them.
    return render_template(plan.job.cluster.template_dir, SWEEP_TEMPLATE, {
        **job_context(plan),
        "run_id": f"sweep-{sweep_id}",
        "sweep_id": sweep_id,
        "ftc_version": ftc.__version__,
        "directives": [(ShellRaw(flag), value) for flag, value in directives],
        "run_dirs": [r.plan.run_dir for r in runs],
    })


def sweep_folder(runs: list[CompiledRun]) -> tuple[str, Path]:
    """A sweep's id (a hash of its points' run ids) and its folder, <output_root>/<namespace>/sweeps/<id>."""
    sweep_id = sha256(",".join(sorted(r.plan.run_id for r in runs)))[:10]
    return sweep_id, Path(runs[0].plan.run_dir).parents[1] / "sweeps" / sweep_id


def submit_sweep(runs: list[CompiledRun], job: JobConfig | None = None) -> int:
    """One job array for all points still to run; returns as soon as Slurm has queued it."""
    if not runs:
        return 0
    executors = {r.plan.job.cluster.executor for r in runs}
    if len(executors) > 1:
        raise UserError("sweep: cluster.executor differs between points; a sweep runs on one executor")
    if executors == {"local"}:
        return _local_sweep(runs, job)
    common_directives(runs)
    if not slurm.have("sbatch"):
        raise UserError(slurm.NO_SBATCH)
    with run_locks([Path(r.plan.run_dir) for r in runs]):
        return _submit_array(runs, job)


def _submit_array(runs: list[CompiledRun], job: JobConfig | None) -> int:
    problems = []
    todo = []
    for run in runs:
        try:
            run, kept = folder_run(run)
            if kept:
                print(kept)
            if still_to_run(run.plan):
                todo.append(run)
        except UserError as exc:
            problems += exc.problems
    if problems:
        raise UserError(*problems)
    if not todo:
        return 0
    sweep_id, sweep_dir = sweep_folder(todo)
    make_folders(sweep_dir / "logs")
    script = render_sweep(todo, sweep_id, sweep_dir)
    script_path = sweep_dir / "sweep.sbatch"
    write_atomic(script_path, script)
    _preflight(todo[0].plan, script_path, job)
    job_id, submitted = _sbatch(todo[0].plan, script, sweep_dir / ".submitit")
    for index, run in enumerate(todo):
        run_dir = Path(run.plan.run_dir)
        records.write_record(run_dir, records.new_record(
            run_dir, "slurm", job=runstate.slurm_ref(job_id, index), job_id=job_id, array_index=index,
            sweep=str(sweep_dir), script=str(script_path), script_sha256=sha256(script),
            run_script_sha256=sha256(run.script), submitted_file=str(submitted),
            log=str(run_dir / "logs" / f"slurm-{job_id}_{index}.out"),
        ))
    write_atomic(sweep_dir / "sweep.json", json.dumps(
        {"sweep_id": sweep_id, "job_id": job_id, "submitted_at": records.now(),
         "runs": [{"index": i, "run_id": r.plan.run_id, "run_dir": r.plan.run_dir} for i, r in enumerate(todo)]},
        indent=2) + "\n")
    parallelism = min(todo[0].plan.job.cluster.array_parallelism, len(todo))
    print(f"submitted sweep {sweep_id} as Slurm job array {job_id}: {len(todo)} task(s), at most {parallelism} at a time")
    for index, run in enumerate(todo):
        print(f"  [{index}] job {job_id}_{index}  run {run.plan.run_id}  {run.plan.run_dir}")
    print(f"sweep folder {sweep_dir}")
    print(f"  ftc status\n  ftc logs {job_id}_0 -f\n  ftc cancel {job_id}    (the whole sweep)")
    return 0


def _local_sweep(runs: list[CompiledRun], job: JobConfig | None) -> int:
    """Locally the points run one after another, in the foreground; Ctrl-C stops the sweep."""
    if job is not None and job.detach:
        raise UserError("detach: a local sweep runs its points one after another in the foreground; "
                        "drop detach=true, or submit the sweep to a Slurm cluster")
    worst = 0
    for index, run in enumerate(runs):
        print(f"sweep point {index + 1}/{len(runs)}: run {run.plan.run_id}", flush=True)
        code = submit_run(run, job)
        if code == 130:
            return code
        worst = max(worst, code)
    return worst
