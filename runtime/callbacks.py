"""Trainer callbacks: what a watcher of the run folder sees, and when training stops early.

status.json and metrics.jsonl are written by rank 0 only; every decision that changes the course of
training (stop request, early stop) is taken identically on all ranks at the same step.
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from transformers import TrainerCallback

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.runfolder import open_append, write_json
from ftc.runtime import checkpoints, distributed
from ftc.runtime.guard import FiniteGuard

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
EXTRA_METRICS = {
    "rewards/accuracies": "reward_accuracy",
    "rewards/margins": "reward_margin",
    "reward": "reward",
    "eval_rewards/accuracies": "val_reward_accuracy",
    "eval_reward": "val_reward",
}

def _step(line: str) -> int | None:
    """The step of a metrics.jsonl line; None for a line that is not one of ours (a torn write)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError, RecursionError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def finite(value):
    """A number as JSON can hold it: NaN and infinities become null (the run's error says what they were)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunStatus:
    """The contents of status.json, rewritten atomically so a reader never sees half a file."""

    def __init__(self, run_dir: str, elapsed_before: float = 0.0):
        self.path = Path(run_dir) / STATUS_FILE
        self.started = time.time()
        self.elapsed_before = elapsed_before
        self.first_step: int | None = None
        self.first_step_at = time.time()
        self.last_write = 0.0
        self.data: dict = {
            "state": "running",
            "step": 0,
            "max_steps": None,
            "epoch": 0.0,
            "percent": 0.0,
            "elapsed_s": 0.0,
            "eta_s": None,
            "best_epoch": None,
            "best_step": None,
            "best_val_loss": None,
            "train_loss": None,
            "val_loss": None,
            "early_stopped": False,
        }

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def update(self, **fields) -> None:
        self.data.update(fields)

    def progress(self, step: int, max_steps: int, epoch: float | None) -> None:
        if self.first_step is None:
            self.first_step, self.first_step_at = step, time.time()
        done = step - self.first_step
        rate = (time.time() - self.first_step_at) / done if done > 0 else None
        self.data.update(
            step=step,
            max_steps=max_steps,
            epoch=round(epoch or 0.0, 4),
            percent=round(100.0 * step / max_steps, 2) if max_steps else 0.0,
            eta_s=round(rate * (max_steps - step), 1) if rate is not None else None,
        )

    def write(self) -> None:
        if not distributed.is_main():
            return
        self.last_write = time.time()
        self.data.update(elapsed_s=round(self.elapsed(), 1), updated_at=datetime.now(timezone.utc).isoformat())
        write_json(self.path, self.data)


class MetricsCallback(TrainerCallback):
    """One metrics.jsonl line per log event, and the progress figures in status.json.

    The file stays open (flushed per line): training steps of a small model take milliseconds.
    """

    def __init__(self, run_dir: str, status: RunStatus):
        self.path = Path(run_dir) / METRICS_FILE
        self.status = status
        self.main = distributed.is_main()
        self.handle = None
        self.last_tokens = 0
        self.last_time = time.time()

    def truncate_after(self, step: int) -> None:
        """A resumed run logs the steps after its checkpoint again; drop the earlier attempt's lines."""
        if not self.main or not self.path.exists():
            return
        try:
            text = records.read_text(self.path, records.METRICS_LIMIT, inside=self.path.parent) or ""
        except records.RecordError as exc:
            raise UserError(f"{exc}; move it away to resume") from None
        kept = [line for line in text.splitlines() if _step(line) is not None and _step(line) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.path)

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_time = time.time()
        if self.main:
            self.handle = os.fdopen(open_append(self.path), "a")  # open for the whole run, closed at train end
        self.status.progress(state.global_step, state.max_steps, state.epoch)
        self.status.write()

    def on_train_end(self, args, state, control, **kwargs):
        self.status.progress(state.global_step, state.max_steps, state.epoch)
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.main and time.time() - self.status.last_write >= 1.0:
            self.status.progress(state.global_step, state.max_steps, state.epoch)
            self.status.write()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not ("loss" in logs or "eval_loss" in logs or "reward" in logs):
            return
        now = time.time()
        tokens = logs.get("num_tokens")
        tokens_per_s = None
        if "eval_loss" in logs:
            self.last_time = now
        elif tokens is not None:
            delta = tokens - self.last_tokens if tokens >= self.last_tokens else tokens
            tokens_per_s = round(delta / max(now - self.last_time, 1e-9), 1)
            self.last_tokens, self.last_time = tokens, now
        line = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "train_loss": finite(logs.get("loss")),
            "val_loss": finite(logs.get("eval_loss")),
            "learning_rate": finite(logs.get("learning_rate")),
            "tokens_per_s": tokens_per_s,
            "tokens": int(tokens) if finite(tokens) is not None and "eval_loss" not in logs else None,
        }
        extra = {short: finite(logs[key]) for key, short in EXTRA_METRICS.items() if key in logs}
        line.update(extra)
        self.status.data.update(extra)
        if tokens_per_s is not None:
            self.status.data["tokens_per_s"] = tokens_per_s
        if "loss" in logs:
            self.status.data["train_loss"] = line["train_loss"]
        if "eval_loss" in logs:
            self.status.data["val_loss"] = line["val_loss"]
            self.status.progress(state.global_step, state.max_steps, state.epoch)
            self.status.write()
        if self.handle is not None:
            self.handle.write(json.dumps(line) + "\n")
            self.handle.flush()


class EarlyStopping(TrainerCallback):
    """Stops after `patience` validation checks in a row without an improvement of at least `min_delta`.

    GRPO's validation loss says little, so it watches the validation reward instead (higher is better).
    It reads the evaluation's log line, where TRL has merged its own metrics (the reward) in.
    """

    def __init__(self, status: RunStatus, enabled: bool, patience: int, min_delta: float, metric: str = "eval_loss"):
        self.status = status
        self.enabled, self.patience, self.min_delta = enabled, patience, min_delta
        self.metric = metric
        self.sign = -1.0 if metric == "eval_reward" else 1.0
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_epoch: float | None = None
        self.bad_checks = 0
        self.stopped = False

    def state(self) -> dict:
        keys = ("best", "best_step", "best_epoch", "bad_checks", "stopped")
        return {k: getattr(self, k) for k in keys}

    def restore(self, saved: dict) -> None:
        for key, value in saved.items():
            setattr(self, key, value)
        self._publish()

    def _publish(self) -> None:
        name = "best_val_reward" if self.metric == "eval_reward" else "best_val_loss"
        self.status.update(
            **{name: self.best},
            best_step=self.best_step,
            best_epoch=None if self.best_epoch is None else round(self.best_epoch, 4),
            early_stopped=self.stopped,
            checks_without_improvement=self.bad_checks,
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        value = (logs or {}).get(self.metric)
        if value is None:
            return
        if self.best is None or self.sign * value < self.sign * self.best - self.min_delta:
            self.best, self.best_step, self.best_epoch, self.bad_checks = value, state.global_step, state.epoch, 0
        else:
            self.bad_checks += 1
            if self.enabled and self.bad_checks >= self.patience and not self.stopped:
                self.stopped = True
                control.should_training_stop = True
        self._publish()
        self.status.write()


class StopRequests(TrainerCallback):
    """Turns a signal or RUN_DIR/stop_requested into a checkpoint and a stop, at the same step on all ranks.

    Every step all ranks agree (an all-reduce); the file, possibly on a shared file system, is looked
    at no more than every `poll_s` seconds, and once seen the request sticks.
    """

    def __init__(self, run_dir: str, poll_s: float = 0.25):
        self.file = str(Path(run_dir) / checkpoints.STOP_FILE)
        self.poll_s = poll_s
        self.next_poll = 0.0
        self.seen: str | None = None
        self.stopped = False
        self.reason: str | None = None

    def _requested(self) -> str | None:
        if self.seen is None:
            if checkpoints.signal_received():
                self.seen = checkpoints.signal_received()
            elif time.monotonic() >= self.next_poll:
                self.next_poll = time.monotonic() + self.poll_s
                if os.path.exists(self.file):
                    self.seen = checkpoints.STOP_FILE
        return self.seen

    def on_step_end(self, args, state, control, **kwargs):
        reason = self._requested()
        if not self.stopped and distributed.any_rank(reason is not None):
            self.stopped, self.reason = True, reason or "another rank"
            control.should_save = True
            control.should_training_stop = True
        return control

    def cancelled(self) -> bool:
        """A stop file that says `cancel` ends the run for good instead of asking for a requeue."""
        try:
            return (records.read_text(Path(self.file), 64) or "").strip() == "cancel"
        except records.RecordError:
            return False


class TimedCheckpoints(TrainerCallback):
    """A checkpoint whenever `interval_s` of wall time passed since the last save (of any kind), all
    ranks at the same step: what a hard kill can lose is bounded by time, not only by save_steps."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.last_save = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()  # loading the model is not training time to protect

    def on_step_end(self, args, state, control, **kwargs):
        due = time.monotonic() - self.last_save >= self.interval_s
        if distributed.any_rank(due) and not control.should_save:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()
        return control


class CheckpointMarker(TrainerCallback):
    """After each save: wait for every rank, check the weights, then mark the checkpoint complete and prune old ones.

    A checkpoint with non-finite weights is left unmarked (the next start discards it) and training stops.
    """

    def __init__(self, run_dir: str, status: RunStatus, early: EarlyStopping, guard: FiniteGuard, keep: int = 2):
        self.run_dir, self.status, self.early, self.guard, self.keep = run_dir, status, early, guard, keep
        self.last: str | None = None

    def on_save(self, args, state, control, model=None, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        distributed.barrier()
        if not self.guard.check_weights(model, state.global_step):
            control.should_training_stop = True
            return control
        if distributed.is_main():
            checkpoints.mark_complete(
                folder,
                {
                    "step": state.global_step,
                    "epoch": state.epoch,
                    "elapsed_s": self.status.elapsed(),
                    "early_stopping": self.early.state(),
                    "status": {k: self.status.data.get(k) for k in ("train_loss", "val_loss")},
                },
            )
            checkpoints.prune(self.run_dir, self.keep)
        self.last = str(folder)
        distributed.barrier()
        return control


class OnTrainBegin(TrainerCallback):
    """Runs `action(model)` once the trainer has prepared the model (wrapped, sharded), before step one."""

    def __init__(self, action):
        self.action = action

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.action(model)
