"""The schemas of the records in a run folder: what job.json, status.json, eval.json, outputs.json,
plan.json's listed fields and the job script's end and last-known files may hold.

records.py reads every file through these and re-exports them: readers import records alone.
Strict where a value reaches a command (a job id for scancel, a pid to signal), lenient field by
field where it is only shown (status.json: a bad field shows as unknown).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SLURM_JOB_ID = r"^[0-9]{1,12}$"
SLURM_REF = r"^[0-9]{1,12}(_([0-9]{1,9}|\[[0-9,%-]{1,64}\]))?$"  # 12, 12_3, 12_[0-3%2]
LOCAL_REF = r"^local:[0-9]{1,10}$"
OWNER = r"^[A-Za-z0-9_.][A-Za-z0-9._@-]{0,63}$"  # a login name as useradd allows it, nothing a terminal obeys
RUN_ID = r"^[0-9a-f]{6,64}$"  # a run folder's name: plain ASCII, so no look-alike can pass for it

Text = Annotated[str, Field(max_length=4096)]
Number = Annotated[float, Field(allow_inf_nan=False)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
JobRef = Annotated[str, Field(pattern=f"{SLURM_REF}|{LOCAL_REF}")]
Pid = Annotated[int, Field(gt=1, lt=1 << 22)]



class _Record(BaseModel):
    # defer_build: a validator is built when a record is first read, not on import (a dry run reads none)
    model_config = ConfigDict(extra="ignore", strict=True, defer_build=True)


class JobRecord(_Record):
    """job.json: the last job that ran this run folder, and the earlier ones."""

    executor: Literal["slurm", "local"]
    job: JobRef | None = None
    job_id: Annotated[str, Field(pattern=SLURM_JOB_ID)] | None = None
    array_index: Annotated[int, Field(ge=0, lt=1 << 24)] | None = None
    sweep: Text | None = None
    submitted_at: Text | None = None
    previous: Annotated[list[JobRef], Field(max_length=10_000)] = []
    script: Text | None = None
    script_sha256: Sha256 | None = None
    run_script_sha256: Sha256 | None = None
    submitted_file: Text | None = None
    log: Text | None = None
    pid: Pid | None = None
    pgid: Pid | None = None
    start_ticks: Annotated[int, Field(ge=0)] | None = None
    detach: bool = False
    cancelled: bool = False
    cancelled_at: Text | None = None
    owner: Annotated[str, Field(pattern=OWNER)] | None = None  # who submitted it (the folder's owner decides)

    @model_validator(mode="after")
    def _job_fits_executor(self):
        if self.executor == "slurm" and self.job is not None and not re.match(SLURM_REF, self.job):
            raise ValueError(f"job: {self.job!r} is not a Slurm job id")
        if self.executor == "local" and self.pid is None:
            raise ValueError("pid: a local record needs the pid it started")
        return self


class _PlanPart(_Record):
    model_config = ConfigDict(extra="allow", strict=True, protected_namespaces=())  # model_urn: see plan.Frozen


class PlanMethod(_PlanPart):
    name: Text | None = None
    finetuning_type: Text | None = None
    epochs: Annotated[int, Field(ge=0)] | None = None
    batch_size: Annotated[int, Field(ge=0)] | None = None
    learning_rate: Number | None = None
    max_steps: int | None = None
    lora: dict[Annotated[str, Field(max_length=200)], Any] | None = None


class PlanData(_PlanPart):
    name: Text | None = None


class PlanJob(_PlanPart):
    namespace: Text | None = None
    name: Text | None = None
    method: PlanMethod | None = None
    data: PlanData | None = None


class PlanRecord(_PlanPart):
    """plan.json's fields that the run listings read (the Plan model checks the rest where it is shown)."""

    run_id: Annotated[str, Field(pattern=RUN_ID)] | None = None
    run_dir: Text | None = None
    output_name: Text | None = None
    model_urn: Text | None = None
    job: PlanJob | None = None
    warnings: Annotated[list[Text], Field(max_length=1000)] = []
    decisions: Annotated[list[Text], Field(max_length=1000)] = []


class RunStatusRecord(_Record):
    """status.json, written by the runtime; read field by field (a bad field shows as unknown)."""

    model_config = ConfigDict(extra="ignore", strict=False)
    state: Literal["running", "completed", "failed", "cancelled", "preempted"] | None = None
    phase: Text | None = None
    step: Annotated[int, Field(ge=0)] | None = None
    max_steps: Annotated[int, Field(ge=0)] | None = None
    epoch: Number | None = None
    percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    elapsed_s: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] | None = None
    eta_s: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] | None = None
    train_loss: Number | None = None
    val_loss: Number | None = None
    best_val_loss: Number | None = None
    best_val_reward: Number | None = None
    best_epoch: Number | None = None
    best_step: Annotated[int, Field(ge=0)] | None = None
    tokens_per_s: Number | None = None
    updated_at: Text | None = None
    early_stopped: bool | None = None
    error: Text | None = None
    stop_reason: Text | None = None
    checkpoint: Text | None = None


class EvalRecord(_Record):
    """eval.json: metrics before and after training (numbers are shown; samples and names are not)."""

    model_config = ConfigDict(extra="ignore", strict=False)
    before: dict[Annotated[str, Field(max_length=200)], Any] | None = None
    after: dict[Annotated[str, Field(max_length=200)], Any] | None = None
    warnings: Annotated[list[Text], Field(max_length=100)] = []


class OutputsRecord(_Record):
    model_config = ConfigDict(extra="ignore", strict=False)
    paths: dict[Annotated[str, Field(max_length=200)], Text] = {}


class LocalExitRecord(_Record):
    """logs/local-exit.json, written by the local executor when the launch ends."""

    pid: Pid
    returncode: Annotated[int, Field(ge=-255, le=255)]
    interrupted: bool = False
    finished_at: Text | None = None


class JobEndRecord(_Record):
    """logs/job-end.json, written by the job script after the launch: history without accounting."""

    job: JobRef
    exit_code: Annotated[int, Field(ge=0, le=255)]
    state: Literal["completed", "failed", "requeued", "terminated"]
    finished_at: Text | None = None


class LastKnownRecord(_Record):
    """logs/slurm-last-known.json: Slurm's last answer about the current job, for when it does not answer."""

    job: JobRef
    state: Annotated[str, Field(pattern=r"^[A-Z_]{1,32}$")]
    reason: Text = ""
    elapsed: Annotated[str, Field(pattern=r"^[0-9:-]{0,20}$")] = ""
    exit_code: Annotated[str, Field(pattern=r"^[0-9:]{0,12}$")] = ""
    seen_at: Text | None = None
