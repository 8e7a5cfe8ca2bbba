"""The job operations behind the endpoints, over the compiler, the submitter and the run records.

One lock serialises everything that composes configs (Hydra's global state) or submits, so the
same body sent twice at once is still one job. Reads (status, lists) take no lock: the run
folder's files are written atomically, and each read re-resolves the state from Slurm or the
local process, as `ftc status` does.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import get_args

from ftc.compiler import records
from ftc.compiler.api import metrics, targets_file
from ftc.compiler.api.datasets import DatasetRoots
from ftc.compiler.api.models import (CreateJob, Job, JobStatus, JobWarning, Metrics, MetricValue, StatusDetails,
                                     StatusLog)
from ftc.compiler.api.translate import command_line, config_error, to_overrides
from ftc.compiler.errors import UserError
from ftc.compiler.records import read_record
from ftc.compiler.runs import runstate
from ftc.compiler.runs.runstate import ACTIVE, RunView

RUN_ID = re.compile(records.RUN_ID)
SLURM_ID = re.compile(r"^\d+(_\d+)?$")
RESCAN_S = 0.5
MAX_REGISTERED = 1000  # folders POST targets may add, beyond those listed under the site's model paths
SLURM_ANSWER_S = 2.0  # how long one answer from Slurm serves the polls of the same job


STATES = get_args(JobStatus)
WARNING_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(=[^ ]*)?: ")


class NotFound(LookupError):
    pass


class Conflict(Exception):
    def __init__(self, detail: str, job_id: str):
        super().__init__(detail)
        self.detail, self.job_id = detail, job_id


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class JobService:
    def __init__(self, operator: Sequence[str], roots: DatasetRoots, output_root: Path):
        self.operator = list(operator)
        self.roots = roots
        self.output_root = output_root
        self.lock = threading.Lock()
        self._index: dict[str, list[Path]] = {}
        self._scanned = 0.0
        self._configs: list[dict] | None = None
        self._targets: list[dict] = []
        self._registered, self.notes = targets_file.load(output_root, MAX_REGISTERED)  # POST targets, kept
        self._cluster = None
        self._answers: dict[str, tuple[float, RunView]] = {}

    # ------------------------------------------------------------ lookups

    def rescan(self) -> None:
        self._index = _index(runstate.find_runs(self.output_root))
        self._scanned = time.monotonic()

    def folder(self, job_id: str) -> Path:
        """The one plain-named run folder of this id; a look-alike is never answered from, and an id
        that two folders claim is refused as `ftc status` refuses it."""
        if not RUN_ID.match(job_id):
            raise NotFound(f"no job {job_id!r}")
        found = self._index.get(job_id)
        if (not found or not (found[0] / "plan.json").is_file()) and time.monotonic() - self._scanned > RESCAN_S:
            self.rescan()
            found = self._index.get(job_id)
        if not found:
            raise NotFound(f"no job {job_id!r}")
        refusal = runstate.ambiguous(job_id, found, self.output_root)
        if refusal:
            raise Conflict(refusal, job_id)
        return found[0]

    def view(self, job_id: str) -> RunView:
        """The run's state; a Slurm job's answer is reused for a moment, so many clients polling
        one job cost slurmctld one query per SLURM_ANSWER_S, not one per poll."""
        kept = self._answers.get(job_id)
        if kept is not None and time.monotonic() - kept[0] < SLURM_ANSWER_S:
            return kept[1]
        view = runstate.resolve_states([runstate.load(self.folder(job_id))])[0]
        if (view.record or {}).get("executor") == "slurm":
            if len(self._answers) > 4096:
                self._answers.clear()
            self._answers[job_id] = (time.monotonic(), view)
        return view

    # ------------------------------------------------------------ create

    def create(self, request: CreateJob) -> tuple[bool, RunView]:
        """(created, view): a new job, or the completed one the same body already made."""
        from ftc.compiler.driver import compile_point
        from ftc.compiler.submit.folder import write_run
        from ftc.compiler.submit.submitter import run_to_do, submission

        users = self.user_models() if request.config.startswith("local/") else {}
        argv = command_line(self.operator, to_overrides(request, self.roots, {k: f for k, (f, _) in users.items()}))
        with self.lock:
            try:
                job, run = compile_point(argv)
            except UserError as exc:
                raise config_error(exc) from None
            run_dir = Path(run.plan.run_dir)
            try:
                todo, _ = run_to_do(run.plan)
            except UserError as exc:
                raise Conflict(exc.problems[0], run.plan.run_id) from None
            if todo:
                write_run(run)
                if not job.dry_run:
                    list(submission(run, job))  # the CLI's lines: the response and the run folder say it all
            self._index.setdefault(run.plan.run_id, [run_dir])
            self._answers.pop(run.plan.run_id, None)
        return todo, runstate.resolve_states([runstate.load(run_dir)])[0]

    # ------------------------------------------------------------ cancel

    def cancel(self, job_id: str) -> list[RunView]:
        """Cancel a job by run id, or every run of a Slurm job (a whole array) by its Slurm id."""
        from ftc.compiler.runs.jobs import cancel_run

        if SLURM_ID.match(job_id) and job_id not in self._index:
            folders = [f for f in runstate.answerable(runstate.find_runs(self.output_root))
                       if job_id in ((read_record(f) or {}).get("job"), (read_record(f) or {}).get("job_id"))]
            if not folders:
                raise NotFound(f"no job {job_id!r}")
        else:
            folders = [self.folder(job_id)]
        views = runstate.resolve_states([runstate.load(f) for f in folders])
        with self.lock:
            for view in views:
                print(cancel_run(view), flush=True)
                self._answers.pop(view.run_id, None)
        return runstate.resolve_states([runstate.load(f) for f in folders])

    def describe(self, view: RunView) -> Job:
        return describe(view, self.roots)

    # ------------------------------------------------------------ lists

    def views(self, page: int, page_size: int, newest_first: bool, filters: dict[str, str]) -> tuple[list[RunView], int]:
        folders = runstate.find_runs(self.output_root)
        self._index = _index(folders)
        if newest_first:
            folders.reverse()
        if not filters:
            total = len(folders)
            chosen = folders[(page - 1) * page_size: page * page_size]
            return runstate.resolve_states([runstate.load(f) for f in chosen]), total
        every = runstate.resolve_states([runstate.load(f) for f in folders])
        kept = [v for v in every if all(_matches(self.describe(v), key, value) for key, value in filters.items())]
        return kept[(page - 1) * page_size: page * page_size], len(kept)

    def configs(self) -> list[dict]:
        from ftc.compiler.api.catalog import config_of

        self._models()
        users = [config_of(m, v, o) for _, m in self.user_models().values() for v, o in m.training_options.items()]
        return [*self._configs, *users]

    def targets(self) -> list[dict]:
        from ftc.compiler.api.catalog import target_of

        self._models()
        return [*self._targets, *(target_of(m) for _, m in self.user_models().values())]

    # ------------------------------------------------------------ users' models (targets)

    def user_models(self) -> dict[str, tuple[str, object]]:
        """The site's user models: folders under cluster.model_paths and those registered by POST
        targets, each composed as `model=custom model.path=DIR` is on the command line.
        Returns {"namespace/name@version": (folder, ModelConfig)}; folders that do not read are left out."""
        from ftc.compiler.modelfolder.route import user_models

        cluster = self.cluster()
        folders = [folder for folder, info in user_models(cluster) if not isinstance(info, str)]
        found = {}
        for folder in dict.fromkeys([*folders, *self._registered]):
            try:
                model = self.user_model(folder)
            except UserError:
                continue
            found[f"{model.namespace}/{model.name}@{model.version}"] = (folder, model)
        return found

    def user_model(self, folder: str):
        """One folder as the validated model config a job would train (its checks are the CLI's)."""
        from ftc.compiler.api.translate import quoted
        from ftc.compiler.config.compose import load_job

        with self.lock:
            job, _ = load_job([*self.operator, "model=custom", f"model.path={quoted(folder)}"])
        return job.model

    def cluster(self):
        if self._cluster is None:
            from ftc.compiler.config.compose import load_job

            with self.lock:
                self._cluster = load_job(list(self.operator))[0].cluster
        return self._cluster

    def register_target(self, model_path: str) -> dict:
        """POST targets: a folder under the site's model paths, read and kept (in the output root's
        registered-targets.json, so a restarted server lists it again)."""
        from ftc.compiler.api.catalog import target_of
        from ftc.compiler.modelfolder.route import check_policy

        if not os.path.isabs(model_path):
            raise UserError(f"model_path: must be an absolute path on the login node (got {model_path[:200]!r})")
        check_policy(self.cluster(), model_path)
        try:
            model = self.user_model(model_path)
        except UserError as exc:
            raise UserError(*(p.replace("model.path:", "model_path:", 1) for p in exc.problems)) from None
        with self.lock:
            if len(self._registered) < MAX_REGISTERED and model_path not in self._registered:
                self._registered.append(model_path)
                targets_file.save(self.output_root, self._registered)
        return target_of(model)

    def _models(self) -> None:
        """Configs and targets from the model configs, composed once (under the lock: Hydra's state)."""
        if self._configs is not None:
            return
        from ftc.compiler.api.catalog import config_of, target_of
        from ftc.compiler.config.compose import load_model_config
        from ftc.compiler.config.urn import model_entries

        with self.lock:
            configs, targets = [], []
            for entry in model_entries():
                model = load_model_config(entry.option)
                targets.append(target_of(model))
                configs += [config_of(model, variant, options) for variant, options in model.training_options.items()]
            self._configs, self._targets = configs, targets

    def output_models(self) -> list[dict]:
        """Every completed run's output, newest first."""
        from ftc.compiler.api.catalog import output_model

        folders = runstate.find_runs(self.output_root)
        folders.reverse()
        found = [output_model(v) for v in runstate.resolve_states([runstate.load(f) for f in folders])]
        return [m for m in found if m is not None]


def _index(folders: list[Path]) -> dict[str, list[Path]]:
    """Run id -> the plain-named folders that have it (two: ambiguous, refused)."""
    index: dict[str, list[Path]] = {}
    for folder in runstate.answerable(folders):
        index.setdefault(folder.name, []).append(folder)
    return index


def _matches(job: Job, key: str, value: str) -> bool:
    if key == "status":
        return job.status == value
    if key == "config":
        return job.config == value or job.config.startswith(value + "+")
    if key == "dataset":
        return job.dataset.get("name") == value
    if key in ("training_type", "finetuning_type"):
        return job.hyperparameters.get(key) == value
    return True


def describe(view: RunView, roots: DatasetRoots | None = None) -> Job:
    """A run as Customizer's job object; everything comes from the run folder's own records."""
    plan, record, status = view.plan, view.record or {}, view.status
    job = plan.get("job") or {}
    method, data = job.get("method") or {}, job.get("data") or {}
    hyper = {"training_type": {"lora": "sft", "sft": "sft"}.get(method.get("name"), method.get("name")),
             "finetuning_type": method.get("finetuning_type")}
    hyper.update({k: method.get(k) for k in ("epochs", "batch_size", "learning_rate", "max_steps")})
    if isinstance(method.get("lora"), dict) and method.get("finetuning_type") in ("lora", "lora_merged"):
        hyper["lora"] = {k: method["lora"].get(k) for k in ("adapter_dim", "adapter_dropout", "alpha")}
    created = _timestamp(record.get("submitted_at")) or _iso(_mtime(view.run_dir / "plan.json") or 0)
    updated = _timestamp(status.get("updated_at")) or created
    return Job(
        id=view.run_id, namespace=job.get("namespace", "default"), name=job.get("name", view.name),
        created_at=created, updated_at=updated, config=plan.get("model_urn", ""),
        dataset={"name": data.get("name"), "namespace": (roots or DatasetRoots(())).namespace_of(data.get("path"))},
        hyperparameters=hyper,
        output_model=plan.get("output_name", ""), status=view.state if view.state != "unknown" else "unknown",
        status_details=status_details(view, created, updated).model_dump(mode="json"),
        warnings=[job_warning(w) for w in plan.get("warnings") or [] if isinstance(w, str)],
        ownership={"created_by": view.owner},  # the folder's owner (a stat no one but root can forge)
    )


def job_warning(line: str) -> JobWarning:
    """A plan warning, `field[=value]: what`, as Customizer's JobWarning with the field apart."""
    named = WARNING_FIELD.match(line)
    return JobWarning(message=line, field=named.group(1) if named else None)


def _timestamp(value) -> str | None:
    """An ISO 8601 time from a record, or None: the SDK parses these as datetimes."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return None


def _int(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def status_details(view: RunView, created: str, updated: str) -> StatusDetails:
    """Customizer's status fields, typed as its SDK types them, from status.json, metrics.jsonl and
    the resolved state; ftc's own (eta_s, epochs, eval, job...) come after."""
    status = view.status
    percent = 100.0 if view.state == "completed" else _float(status.get("percent"))
    history = metrics.read(view.run_dir)
    eval_report = records.load(view.run_dir, records.EVAL_FILE, records.EvalRecord)[0]
    state = view.state if view.state in STATES else "unknown"
    log = [StatusLog(updated_at=created, message="created")]
    if state != "created":
        log.append(StatusLog(updated_at=updated, message=state, detail=view.reason or None))
    return StatusDetails(
        created_at=created, updated_at=updated, status=state,
        steps_completed=_int(status.get("step")), max_steps=_int(status.get("max_steps")),
        epochs_completed=_int(status.get("epoch")), best_epoch=_int(status.get("best_epoch")),
        percentage_done=percent, elapsed_time=_float(view.elapsed_s),
        train_loss=_float(status.get("train_loss")), val_loss=_float(status.get("val_loss")),
        metrics=Metrics(keys=["train_loss", "val_loss"], metrics={
            "train_loss": [MetricValue(step=p.step, epoch=p.epoch, value=p.value) for p in history.train],
            "val_loss": [MetricValue(step=p.step, epoch=p.epoch, value=p.value) for p in history.val],
        }),
        status_logs=log,
        reason=view.reason or None,
        eta_s=_float(status.get("eta_s")) if view.state in ACTIVE else None,
        best_val_loss=_float(status.get("best_val_loss")),
        early_stopped=status.get("early_stopped"),
        error=status.get("error"),
        epochs=history.per_epoch(),
        eval={"before": eval_report.get("before"), "after": eval_report.get("after")} if eval_report else None,
        job=(view.record or {}).get("job"),
    )


def output_root_of(operator: Sequence[str]) -> Path:
    """Where the operator's jobs land: composed once at start, which also checks the overrides."""
    from ftc.compiler.config.compose import load_job

    job, _ = load_job(list(operator))
    return Path(os.path.abspath(job.output_root))
