"""The compile command: overrides -> plans -> run folders -> (dry-run listing | submission)."""

from __future__ import annotations

import contextlib
import gc
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ftc.compiler.checks.inputs import check_inputs, check_output_root
from ftc.compiler.config.compose import expand_sweep, load_job
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import CompiledRun, compile_job
from ftc.compiler.report import summary, sweep_line
from ftc.compiler.submit.folder import write_run, write_runs
from ftc.compiler.submit.kept import folder_run, has_history


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


@contextlib.contextmanager
def nothing_left_if_refused(runs: list[CompiledRun]) -> Iterator[None]:
    """A submission refused (preflight, Slurm, a lock) leaves no "created" run folder behind: the run
    folders, their parents and the sweep folder this command made are removed again; folders that
    existed before, or that a job was submitted from meanwhile, stay."""
    fresh = [Path(r.plan.run_dir) for r in runs if not Path(r.plan.run_dir).exists()]
    made = {p for r in runs for p in (*Path(r.plan.run_dir).parents[:2], Path(r.plan.run_dir).parents[1] / "sweeps")
            if not p.exists()}
    sweeps = {Path(r.plan.run_dir).parents[1] / "sweeps" for r in runs}
    before = {p for folder in sweeps if folder.is_dir() for p in folder.iterdir()}
    try:
        yield
    except UserError:
        for run_dir in fresh:
            if run_dir.is_dir() and not has_history(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
        for folder in sweeps:
            for sweep in (set(folder.iterdir()) - before if folder.is_dir() else set()):
                if sweep.is_file() and not sweep.is_symlink():
                    sweep.unlink(missing_ok=True)  # the sweep's record, sweeps/<id>.json
                elif not (sweep / "sweep.json").exists():
                    shutil.rmtree(sweep, ignore_errors=True)
        for path in sorted(made, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        raise


def compile_and_run(overrides: Sequence[str], multirun: bool) -> int:
    if not multirun:
        job, run = compile_point(overrides)
        gc.enable()  # off for start-up (cli.run): on for writing, submitting and watching a local run
        if not job.dry_run:
            with nothing_left_if_refused([run]):
                write_run(run)
                from ftc.compiler.submit.submitter import submit_run

                return submit_run(run, job)
        write_run(run)
        run, kept = folder_run(run)
        if kept:
            print(kept)
        print(summary(run.plan))
        print(f"--- {run.plan.run_dir}/job.sbatch")
        sys.stdout.write(run.script)
        return 0
    gc.enable()  # a sweep's points each compose a config: their garbage is collected as they go
    request, points = compile_sweep(overrides)
    runs = [run for _, run in points]
    if not request.dry_run:
        from ftc.compiler.submit.submitter import submit_sweep

        with nothing_left_if_refused(runs):
            write_runs(runs)
            sweep_id = announce_sweep(points)
            code = submit_sweep(runs, request)
        if runs[0].plan.job.cluster.executor == "local" and code != 130:
            print(f"sweep {sweep_id}:")
            print(compare_table(Path(runs[0].plan.run_dir).parents[2], [sweep_id]))
        return code
    write_runs(runs)
    announce_sweep(points)
    for index, (point, run) in enumerate(points):
        print(sweep_line(index, run.plan, point))
    show_sweep_script(runs)
    return 0


def announce_sweep(points: list[tuple[list[str], CompiledRun]]) -> str:
    """Record the sweep (its id, its points) and say how to compare them; returns the id."""
    from ftc.compiler.runs.compare import write_sweep  # sweeps only: a single dry run stays light

    sweep_id = write_sweep([run for _, run in points], [point for point, _ in points])
    print(f"sweep {sweep_id}: {len(points)} point(s), one run folder each; ftc compare {sweep_id} shows them side by side")
    return sweep_id


def compare_table(root, selectors: list[str]) -> str:
    from ftc.compiler.runs.compare import compare, table

    return table(compare(root, selectors))


def show_sweep_script(runs: list[CompiledRun]) -> None:
    """A Slurm sweep's dry run: write and print the job array script a submission would send.

    Locally there is no array: the points run one after another, each by its own launch line. Points
    that one array cannot hold (different resources) are still listed, with the reason.
    """
    from pathlib import Path

    from ftc.compiler.runfolder import make_folders, write_atomic
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
    make_folders(Path(sweep_dir))
    write_atomic(Path(sweep_dir) / "sweep.sbatch", script)
    print(f"--- {sweep_dir}/sweep.sbatch")
    sys.stdout.write(script)
