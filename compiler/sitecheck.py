"""`ftc site check`: an admin's check of a site before users meet it, with an exit status for CI.

It validates the site's cluster and model files (file:line, close names), compiles every partition
x model x method a model config offers for that GPU and says which refuse and why, asks Slurm with
`sbatch --test-only` about each partition's single-job and job-array scripts when Slurm answers,
runs shellcheck on them when it is installed, and reports site files other users could rewrite.
Exit 0: nothing to fix; 1: problems (each one line); 2: a usage mistake.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from dataclasses import dataclass, field

from ftc.compiler.config.sitefiles import check_file, site_files, writable_by_others
from ftc.compiler.config.sites import SITE_ENV, group_files, site_folders
from ftc.compiler.errors import UserError
from ftc.compiler.runs.terminal import printable

METHODS = ("lora", "sft", "dpo", "grpo")
USAGE = "usage: ftc site check [SITE_FOLDER ...]   (default: the folders in $FTC_SITE_CONFIG)"


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)

    def problem(self, line: str) -> None:
        self.problems.append(line)
        print(f"PROBLEM  {line}", flush=True)


def _clusters() -> list[str]:
    """The site's own cluster files; a site without one is checked with ftc's shipped clusters."""
    own = [p.stem for p in site_files("cluster")]
    return own or sorted(group_files("cluster"))


def _partitions_in_slurm() -> set[str] | None:
    """The partitions this Slurm has; None when there is no Slurm here or it does not answer."""
    from ftc.compiler.submit import slurm

    if not (slurm.have("sbatch") and slurm.have("sinfo")):
        return None
    proc = slurm.call("sinfo", "--noheader", "--format=%R", timeout=10)
    return {line.strip() for line in proc.stdout.splitlines() if line.strip()} if proc.returncode == 0 else None


def _compile(cluster: str, partition: str, model: str, method: str, root: str):
    """(the compiled run, None) or (None, why it refuses); raises for a config that does not compose."""
    from ftc.compiler.checks import guards
    from ftc.compiler.config.compose import load_job
    from ftc.compiler.planning.build import compile_job

    job, resolved = load_job([f"cluster={cluster}", f"cluster.partition={partition}", f"model={model}",
                              f"method={method}", f"output_root={root}", "dry_run=true"])
    try:
        guards.training_option(job)
    except UserError:
        return None, None  # the model config offers nothing for this GPU and method: not expected to fit
    try:
        return compile_job(job, resolved), None
    except UserError as exc:
        return None, exc.problems[0]


def _asks_for_a_folder(path: Path) -> bool:
    """A model config that is a route for users' folders (model=custom: `path: ???`), not a model to compile."""
    import yaml

    try:
        return (yaml.safe_load(path.read_text()) or {}).get("path") == "???"
    except (OSError, yaml.YAMLError, AttributeError):
        return False  # its own check names what is wrong with it


def check_compiles(cluster: str, findings: Findings, root: str) -> dict[str, object]:
    """Every partition x model x method; returns one compiled run per partition for the script checks."""
    from ftc.compiler.config.compose import load_job

    try:
        job, _ = load_job([f"cluster={cluster}", f"output_root={root}"])
    except UserError as exc:
        findings.problem(f"cluster={cluster}: {exc.problems[0]}")
        return {}
    samples: dict[str, object] = {}
    for partition in job.cluster.partitions:
        fits, refusals = [], []
        for model in sorted(name for name, (path, _) in group_files("model").items() if not _asks_for_a_folder(path)):
            for method in METHODS:
                try:
                    run, refusal = _compile(cluster, partition, model, method, root)
                except UserError as exc:
                    findings.problem(f"cluster={cluster} partition={partition} model={model} method={method}: "
                                     f"{printable(exc.problems[0], 300)}")
                    continue
                if run is not None:
                    fits.append(f"{model}/{method}")
                    samples.setdefault(partition, run)
                elif refusal is not None:
                    refusals.append(f"{model}/{method}: {printable(refusal, 600)}")
        print(f"compile  cluster={cluster} partition={partition}: {len(fits)} compile, {len(refusals)} refuse"
              + (" (of the combinations its model configs offer for this GPU)" if fits or refusals else
                 ": no shipped model config offers this GPU"))
        for line in refusals:
            print(f"  refuses  {line}")
    return samples


def check_scripts(cluster: str, samples: dict, findings: Findings, slurm_partitions: set[str] | None) -> None:
    """Each partition's job.sbatch and its job array script: sbatch --test-only and shellcheck."""
    from ftc.compiler.runfolder import write_atomic
    from ftc.compiler.submit import slurm
    from ftc.compiler.submit.folder import write_run
    from ftc.compiler.submit.submitter import render_sweep, sweep_folder

    for partition, run in samples.items():
        run_dir = write_run(run)
        sweep_id, sweep_dir = sweep_folder([run])
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(sweep_dir / "sweep.sbatch", render_sweep([run], sweep_id, sweep_dir))
        except UserError as exc:
            findings.problem(f"cluster={cluster} partition={partition}: sweep.sbatch: {exc.problems[0]}")
            continue
        scripts = {"job.sbatch": run_dir / "job.sbatch", "sweep.sbatch (array)": sweep_dir / "sweep.sbatch"}
        where = f"cluster={cluster} partition={partition}"
        if run.plan.job.cluster.executor != "slurm":
            print(f"sbatch   {where}: a local cluster: no Slurm to ask")
        elif slurm_partitions is None:
            print(f"sbatch   {where}: Slurm does not answer here: --test-only skipped")
        elif partition not in slurm_partitions:
            print(f"sbatch   {where}: this Slurm has no partition {partition}: --test-only skipped")
        else:
            for name, path in scripts.items():
                try:
                    slurm.test_only(path)
                    print(f"sbatch   {where}: {name} accepted by sbatch --test-only")
                except slurm.SlurmError as exc:
                    findings.problem(f"{where}: {name}: sbatch --test-only refused it: {printable(exc, 300)}")
        if shutil.which("shellcheck"):
            for name, path in scripts.items():
                proc = subprocess.run(["shellcheck", "--severity=style", "--format=gcc", str(path)],
                                      capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    first = (proc.stdout or proc.stderr).strip().splitlines()[:1]
                    findings.problem(f"{where}: {name}: shellcheck: {printable(first[0] if first else proc.returncode)}")
                else:
                    print(f"shellchk {where}: {name} clean")


def site_check(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    if any(a.startswith("-") for a in args):
        raise UserError(f"site check: unknown option {next(a for a in args if a.startswith('-'))}; {USAGE}")
    if args:
        os.environ[SITE_ENV] = os.pathsep.join(args)
    findings = Findings()
    folders = site_folders(trusted_only=False)
    print(f"site     {', '.join(folders) or f'none (${SITE_ENV} is empty): ftc shipped configs'}")
    for group in ("cluster", "model"):
        for path in site_files(group):
            problems = check_file(group, path)
            for line in problems:
                findings.problem(line)
            if not problems:
                print(f"valid    {path}")
    for line in writable_by_others(folders):
        findings.problem(line)
    if findings.problems:  # compiling with a broken file would only repeat its problem
        return _verdict(findings)
    slurm_partitions = _partitions_in_slurm()
    root = tempfile.mkdtemp(prefix="ftc-site-check-")
    try:
        for cluster in _clusters():
            samples = check_compiles(cluster, findings, root)
            check_scripts(cluster, samples, findings, slurm_partitions)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not shutil.which("shellcheck"):
        print("shellchk not installed: scripts not linted")
    return _verdict(findings)


def _verdict(findings: Findings) -> int:
    count = len(findings.problems)
    print(f"site check: {count} problem{'s' * (count != 1)}" if count else "site check: clean")
    return 1 if count else 0


def site_command(args: list[str]) -> int:
    if not args or args[0] != "check":
        raise UserError(f"site: unknown subcommand {printable(args[0]) if args else '(none)'}; {USAGE}")
    return site_check(args[1:])

