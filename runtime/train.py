"""The run on the nodes: plan.json in; checkpoints, status, metrics, evaluation and outputs out.

Every rank runs this same flow (`torchrun ... -m ftc.runtime RUN_DIR`). It reads only the plan,
resumes from the last complete checkpoint, and on a stop request checkpoints and exits 0 with a
`requeue` note so Slurm can run it again from there.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.planning.plan import Plan
from ftc.compiler.runfolder import use_team_umask, write_json
from ftc.compiler.runs.lock import Busy, hold_runtime_lock
from ftc.runtime import checkpoints, distributed, trackers
from ftc.runtime.callbacks import (
    CheckpointMarker,
    EarlyStopping,
    MetricsCallback,
    OnTrainBegin,
    RunStatus,
    StopRequests,
    TimedCheckpoints,
)
from ftc.runtime.console import CONSOLE
from ftc.runtime.guard import FiniteGuard
from ftc.runtime.planfile import load_plan, printable
from ftc.runtime.progress import ProgressLine

EVAL_BEFORE = "eval_before.json"


def log(message: str) -> None:
    """A line for the terminal (rank 0), and the log file."""
    if distributed.is_main():
        CONSOLE.say(f"[ftc] {message}")


def clear_stale_requests(run_dir: str, started: float) -> None:
    """Stop/requeue files older than this start belong to the previous attempt."""
    for name in (checkpoints.STOP_FILE, checkpoints.REQUEUE_FILE):
        path = Path(run_dir) / name
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < started:
                path.unlink()


def model_path(plan: Plan) -> str:
    """The weights folder; rank 0 builds a cached model (tiny, smollm2) first while the others wait."""
    from ftc.runtime.models import ensure_model

    if distributed.is_main():
        ensure_model(plan.job.model)
    distributed.barrier()
    return ensure_model(plan.job.model)


def load_model(plan: Plan, path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftc.runtime.methods import attention, load_dtype

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    extra = {"attn_implementation": attention(plan)} if attention(plan) else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=load_dtype(plan), local_files_only=True, **extra)
    return model, tokenizer


def load_data(plan: Plan):
    import datasets

    from ftc.compiler.checks.datasets import inspect_dataset
    from ftc.runtime.data import load_splits

    datasets.disable_progress_bars()
    method = plan.job.method.name
    summary = inspect_dataset(plan.job.data, method, plan.max_seq_length)
    if summary.rows != plan.dataset.rows or summary.format != plan.dataset.format:
        log(f"warning: the dataset changed since compile: rows {plan.dataset.rows} -> {summary.rows}")
    return load_splits(plan.job.data, summary, method, plan.job.training.seed)


class Evaluation:
    """Before/after evaluation on the validation rows (and the general set), as eval.json records it.

    "Before" runs at train begin, where a fresh LoRA adapter is still zero and the weights are the
    base's: it then uses the prepared model, so ZeRO-3 shards are gathered like in training. A resumed
    run reads it back from eval_before.json.
    """

    def __init__(self, plan: Plan):
        from ftc.runtime.data import read_splits
        from ftc.runtime.evaluate import load_eval_rows

        self.plan = plan
        cfg = plan.job.eval
        self.rows = read_splits(plan.job.data, plan.job.method.name)["validation"][: cfg.max_rows]
        self.general = load_eval_rows(cfg.general.path, cfg.max_rows) if cfg.general.path else None
        self.path = Path(plan.run_dir) / EVAL_BEFORE
        method = plan.job.method
        self.new_tokens = method.max_completion_length if method.name == "grpo" else 32

    def _all_ranks(self) -> bool:
        return self.plan.topology.zero_stage == 3

    def run(self, model, tokenizer) -> dict | None:
        import torch

        from ftc.runtime.evaluate import eval_options, evaluate_model

        if not (self._all_ranks() or distributed.is_main()):
            distributed.barrier()
            return None
        kwargs = {"max_new_tokens": self.new_tokens, "max_length": self.plan.max_seq_length}
        kwargs.update(eval_options(self.plan, tokenizer))
        devices = [torch.cuda.current_device()] if distributed.has_gpu() else []
        with torch.random.fork_rng(devices=devices):
            result = {"task": evaluate_model(model, tokenizer, self.rows, self.plan.dataset.format, len(self.rows), **kwargs)}
            if self.general is not None:
                result["general"] = evaluate_model(model, tokenizer, self.general, "auto", len(self.general), **kwargs)
        if not self._all_ranks():
            distributed.barrier()
        return result

    def before(self, model, tokenizer) -> None:
        if not self.plan.job.eval.before or self.path.exists():
            return
        log(f"evaluating the base model on {len(self.rows)} validation rows")
        result = self.run(model, tokenizer)
        if distributed.is_main() and result is not None:
            write_json(self.path, result)

    def report(self, after: dict | None) -> dict:
        from ftc.runtime.evaluate import compare

        try:
            before = records.read_json_file(self.path, inside=self.path.parent) or {}
        except records.RecordError:
            before = {}
        after = after or {}
        return compare(
            before.get("task"),
            after.get("task"),
            before.get("general"),
            after.get("general"),
            self.plan.job.eval.general.max_drop_points,
        )


def quiet_trainer(trainer) -> None:
    """transformers' progress bar and per-step dicts give way to ftc's progress line (runtime/progress.py), and
    TRL's model card to ftc's (runtime/modelcard.py, written with the outputs)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.create_model_card = lambda *args, **kwargs: None  # its card says "fine-tuned version of [None]"


def quiet_libraries() -> None:
    """Library progress bars would fill the log file with carriage returns; their warnings stay in it."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def choose_resume(run_dir: str, status: RunStatus) -> Path | None:
    """Rank 0 verifies the checkpoints and says which it passed over; every rank resumes from its choice."""
    found, notes = checkpoints.choose_resume(run_dir) if distributed.is_main() else (None, [])
    for note in notes:
        log(f"warning: {note}")
    if notes:
        status.update(skipped_checkpoints=notes)
    found = distributed.from_main(str(found) if found else None)
    return Path(found) if found else None


@dataclass
class Run:
    """A trainer ready to start, and the pieces the flow consults after it returns."""

    trainer: object
    tokenizer: object
    evaluation: Evaluation
    stop: StopRequests
    marker: CheckpointMarker
    guard: FiniteGuard
    resume: Path | None


def setup(plan: Plan, status: RunStatus) -> Run:
    """Data, model and trainer as the plan says, with ftc's callbacks and the resume point restored."""
    from transformers import set_seed

    from ftc.runtime import methods
    from ftc.runtime.model_check import check_loaded, check_trainable

    run_dir = plan.run_dir
    set_seed(plan.job.training.seed)
    train_ds, val_ds = load_data(plan)
    trackers.prepare(plan)
    args = methods.build_args(plan)
    args.logging_nan_inf_filter = False  # a NaN step must be logged as NaN, for the FiniteGuard to see it
    args.run_name = args.run_name or plan.run_id  # MLflow's run name (transformers reads it from here)
    path = model_path(plan)
    model, tokenizer = load_model(plan, path)
    check_loaded(plan, model, path)

    resume = choose_resume(run_dir, status)
    saved = checkpoints.saved_state(resume) if resume else {}
    status.elapsed_before = saved.get("elapsed_s", 0.0)

    metric = "eval_reward" if plan.job.method.name == "grpo" else "eval_loss"
    early = EarlyStopping(status, **plan.job.training.early_stopping.model_dump(), metric=metric)
    metrics = MetricsCallback(run_dir, status)
    stop = StopRequests(run_dir)
    guard = FiniteGuard()
    marker = CheckpointMarker(run_dir, status, early, guard)
    evaluation = Evaluation(plan)
    if resume:
        early.restore(saved.get("early_stopping", {}))
        status.update(**{k: v for k, v in saved.get("status", {}).items() if v is not None})
        metrics.truncate_after(saved["step"])
        log(f"resuming from {resume}")
    before = OnTrainBegin(lambda model: None if resume else evaluation.before(model, tokenizer))
    progress = ProgressLine(CONSOLE, status)
    timed = TimedCheckpoints(checkpoints.checkpoint_interval_s(plan.job.training.checkpoint_minutes, plan.time_limit))
    callbacks = [metrics, progress, guard, early, stop, timed, marker, before]
    trainer = methods.build_trainer(plan, args, model, tokenizer, train_ds, val_ds, callbacks)
    check_trainable(plan, trainer.model)
    quiet_trainer(trainer)
    trackers.start(plan, list(args.report_to))
    print(f"[ftc] trainer {methods.describe(plan, args)}", flush=True)  # the log file
    log(f"training on {len(train_ds)} rows, validating on {len(val_ds)}")
    return Run(trainer, tokenizer, evaluation, stop, marker, guard, resume)


def train(plan: Plan, status: RunStatus) -> int:
    run = setup(plan, status)
    status.write()
    trainer = run.trainer
    trainer.train(resume_from_checkpoint=str(run.resume) if run.resume else None)
    trackers.finish(list(trainer.args.report_to))
    if run.guard.reason:
        return failed(status, run.guard.reason)
    if not run.stop.stopped:
        return finish(plan, status, trainer, run.tokenizer, run.evaluation)

    step, checkpoint = trainer.state.global_step, run.marker.last
    cancelled = run.stop.cancelled()
    state = "cancelled" if cancelled else "preempted"
    status.update(state=state, stop_reason=run.stop.reason, checkpoint=checkpoint)
    status.write()
    if distributed.is_main() and not cancelled:
        checkpoints.write_requeue(plan.run_dir, step, checkpoint)
    log(f"{state} at step {step} ({run.stop.reason}); checkpoint {checkpoint}" + ("" if cancelled else "; requeue asked"))
    return 0


def failed(status: RunStatus, reason: str) -> int:
    """A run that trained into NaN: status says so, and nothing is saved from its weights."""
    reason = f"{reason}; no outputs written from these weights"
    status.update(state="failed", phase=None, error=reason)
    status.write()
    log(f"error: {reason}")
    return 1


def finish(plan: Plan, status: RunStatus, trainer, tokenizer, evaluation: Evaluation) -> int:
    """After training: evaluate, save the deliverables, plot, summarise."""
    from ftc.runtime.guard import weights_problem
    from ftc.runtime.outputs import save_outputs
    from ftc.runtime.report import format_summary, plot_losses, plot_title

    problem = weights_problem(trainer.model)
    if problem:
        return failed(status, f"{problem} at the end of training")
    run_dir = Path(plan.run_dir)
    status.update(phase="evaluating and saving")
    status.write()
    log(f"evaluating on {len(evaluation.rows)} validation rows and saving the {plan.job.method.finetuning_type} output")
    after = evaluation.run(trainer.model, tokenizer)
    report = evaluation.report(after) if distributed.is_main() else None
    outputs = save_outputs(trainer.model, tokenizer, plan, trainer, report)
    if distributed.is_main():
        write_json(run_dir / "eval.json", report)
        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png", plot_title(plan))
        status.update(state="completed", phase=None, percent=100.0, eta_s=0.0, output=outputs.get("paths"))
        status.write()
        CONSOLE.say(format_summary(status.data, report, outputs))
    return 0


def start_console(plan: Plan) -> None:
    """Everything but ftc's own lines goes to logs/train.log from here; the terminal gets the plan summary first."""
    from ftc.compiler.report import summary

    CONSOLE.capture(plan.run_dir, distributed.rank())
    quiet_libraries()
    if distributed.is_main():
        CONSOLE.say(summary(plan))


def report_failure(exc: BaseException) -> None:
    """The traceback to the log file, one line to the terminal."""
    traceback.print_exc()
    CONSOLE.end_progress()
    where = f" (traceback in {CONSOLE.log_path})" if CONSOLE.log_path else ""
    message = printable(f"{type(exc).__name__}: {exc}", 400)
    if distributed.is_main() or CONSOLE.log_path is None:
        CONSOLE.say(f"[ftc] error: {message}{where}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m ftc.runtime RUN_DIR", file=sys.stderr)
        return 2
    started = time.time()
    run_dir = os.path.abspath(argv[0])
    distributed.die_with_parent()
    distributed.prepare_environment()
    checkpoints.install_signal_handlers()
    use_team_umask(run_dir)  # a group-shared root: the team reads what the libraries write here too
    try:
        plan = load_plan(run_dir)
        mismatch = distributed.world_problem(plan.topology)
        if mismatch:
            raise UserError(mismatch)
        if distributed.is_main():
            _lease = hold_runtime_lock(Path(run_dir))  # noqa: F841 - held (open) until this process ends
    except UserError as exc:
        print(f"ftc.runtime: error: {exc}", file=sys.stderr)
        return 2
    except Busy as holder:
        print(f"ftc.runtime: error: {run_dir}: another runtime (pid {holder}) is training this run folder; "
              "this one does not start", file=sys.stderr)
        return 2
    status = RunStatus(run_dir)
    if distributed.is_main() and not os.environ.get("FTC_RUN_DIR"):  # ftc's launchers clear them before
        clear_stale_requests(run_dir, started)  # the launch: a stop asked during start-up must stay
    try:
        start_console(plan)
        distributed.init(use_deepspeed=bool(plan.deepspeed))
        code = train(plan, status)
    except UserError as exc:
        status.update(state="failed", error="\n".join(exc.problems))
        status.write()
        CONSOLE.end_progress()
        for line in exc.problems:
            CONSOLE.say(f"[ftc] error: {line}")
        return 2
    except BaseException as exc:  # noqa: BLE001 - any failure must reach status.json before the exit
        status.update(state="failed", error=f"{type(exc).__name__}: {exc}")
        status.write()
        report_failure(exc)
        return 1
    distributed.finish()
    return code
