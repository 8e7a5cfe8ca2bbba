"""The compile command: overrides -> plans -> run folders -> (dry-run listing | submission)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ftc.compiler.checks.inputs import check_inputs, check_output_root
from ftc.compiler.config.compose import expand_sweep, load_job
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import CompiledRun, compile_job
from ftc.compiler.report import summary, sweep_line
from ftc.compiler.runs.compare import write_sweep
from ftc.compiler.submit.folder import write_run, write_runs


def compile_point(overrides: Sequence[str]) -> tuple[JobConfig, CompiledRun]:
    job, resolved = load_job(overrides)
    check_inputs(job)
    run = compile_job(job, resolved)
    check_output_root(job.output_root, run.plan.run_dir)
    return job, run


def compile_sweep(overrides: Sequence[str]) -> tuple[JobConfig, list[tuple[list[str], CompiledRun]]]:
    """Every point of the sweep, compiled before anything is written; identical points once.

    Returns the first point's request (dry_run, preflight and detach stay out of run ids, so
    they are the same for every point) and the points.
    """
    points: list[tuple[list[str], CompiledRun]] = []
    seen: set[str] = set()
    request = None
    every = expand_sweep(overrides)
    for index, point in enumerate(every):
        try:
            job, run = compile_point(point)
            request = request or job
        except UserError as exc:
            where = f"sweep point {index} ({' '.join(point)})"
            raise UserError(*(f"{where}: {p}" for p in exc.problems)) from None
        if len(every) > job.cluster.max_sweep_points:
            raise UserError(f"sweep: {len(every):,} points, more than the {job.cluster.max_sweep_points:,} "
                            "this site allows (cluster.max_sweep_points)")
        if run.plan.run_id not in seen:
            seen.add(run.plan.run_id)
            points.append((point, run))
    return request, points


def compile_and_run(overrides: Sequence[str], multirun: bool) -> int:
    if not multirun:
        job, run = compile_point(overrides)
        write_run(run)
        if job.dry_run:
            print(summary(run.plan))
            print(f"--- {run.plan.run_dir}/job.sbatch")
            sys.stdout.write(run.script)
            return 0
        from ftc.compiler.submit.submitter import submit_run

        return submit_run(run, job)
    request, points = compile_sweep(overrides)
    write_runs([run for _, run in points])
    sweep_id = write_sweep([run for _, run in points], [point for point, _ in points])
    print(f"sweep {sweep_id}: {len(points)} point(s), one run folder each; ftc compare {sweep_id} shows them side by side")
    if request.dry_run:
        for index, (point, run) in enumerate(points):
            print(sweep_line(index, run.plan, point))
        show_sweep_script([run for _, run in points])
        return 0
    from ftc.compiler.submit.submitter import submit_sweep

    code = submit_sweep([run for _, run in points], request)
    if points[0][1].plan.job.cluster.executor == "local" and code != 130:
        print(f"sweep {sweep_id}:")
        print(compare_table(Path(points[0][1].plan.run_dir).parents[2], [sweep_id]))
    return code


def compare_table(root, selectors: list[str]) -> str:
    from ftc.compiler.runs.compare import compare, table

    return table(compare(root, selectors))


def show_sweep_script(runs: list[CompiledRun]) -> None:
    """A Slurm sweep's dry run: write and print the job array script a submission would send.

    Locally there is no array: the points run one after another, each by its own launch line. Points
    that one array cannot hold (different resources) are still listed, with the reason.
    """
    from pathlib import Path

    from ftc.compiler.runfolder import write_atomic
    from ftc.compiler.submit.submitter import render_sweep, sweep_folder

    executors = {run.plan.job.cluster.executor for run in runs}
    if len(executors) > 1:
        raise UserError("sweep: cluster.executor differs between points; a sweep runs on one executor")
    if executors == {"local"}:
        print("local executor: the points run one after another here, each by its own run folder's launch line")
        return
    sweep_id, sweep_dir = sweep_folder(runs)
    try:
        script = render_sweep(runs, sweep_id, sweep_dir)
    except UserError as exc:  # the points still compare side by side; only submitting them together fails
        print(f"no job array: {exc.problems[0]}")
        return
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(sweep_dir) / "sweep.sbatch", script)
    print(f"--- {sweep_dir}/sweep.sbatch")
    sys.stdout.write(script)
