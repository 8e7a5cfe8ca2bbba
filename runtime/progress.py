"""One line of progress for a person (step/total, loss, val loss, tokens/s, ETA); per-step detail for the log file.

transformers' own progress bar (and its dict per step) is removed; this callback reads the figures
MetricsCallback keeps in status.json, so the terminal, status.json and `ftc status` agree.
"""

from __future__ import annotations

import json
import math
import time

from transformers import TrainerCallback

from ftc.runtime.callbacks import RunStatus, finite
from ftc.runtime.console import Console

REDRAW_S = 0.25  # live: at most this often
PLAIN_EVERY_S = 60.0  # plain lines: at least this often on a slow run...
PLAIN_LINES = 10  # ...and about this many over the whole run


def clock(seconds) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _rate(value) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "- tok/s"
    return f"{value / 1000:.1f}k tok/s" if value >= 10_000 else f"{value:,.0f} tok/s"


def progress_text(status: dict, tokens_per_s: float | None) -> str:
    """`step 120/300  40% | loss 4.912 | val 4.88 | 2,310 tok/s | ETA 2:05` from status.json's figures."""
    step, total = status.get("step") or 0, status.get("max_steps") or 0
    percent = 100.0 * step / total if total else 0.0
    parts = [
        f"step {step}/{total or '?'} {percent:3.0f}%",
        f"loss {_num(status.get('train_loss'))}",
        f"val {_num(status.get('val_loss'))}",
        _rate(tokens_per_s),
        f"ETA {clock(status.get('eta_s'))}",
    ]
    return " | ".join(parts)


class ProgressLine(TrainerCallback):
    """Redraws the line (live) or prints it every tenth of the run or minute (plain); logs each log event in full."""

    def __init__(self, console: Console, status: RunStatus):
        self.console, self.status = console, status
        self.last_draw = 0.0
        self.last_step = 0
        self.every = 1
        self.first_tokens: tuple[float, float] | None = None  # (tokens, time) at this attempt's first log
        self.tokens_per_s: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.every = max(1, math.ceil((state.max_steps or 1) / PLAIN_LINES))
        self.last_step = state.global_step
        self.last_draw = time.monotonic()

    def _due(self, step: int, total: int) -> bool:
        elapsed = time.monotonic() - self.last_draw
        if step >= total:
            return True
        if self.console.live:
            return elapsed >= REDRAW_S
        return step - self.last_step >= self.every or elapsed >= PLAIN_EVERY_S

    def on_step_end(self, args, state, control, **kwargs):
        """Steps that log are drawn at on_log, once their loss is known."""
        self.status.progress(state.global_step, state.max_steps, state.epoch)
        if not control.should_log and self._due(state.global_step, state.max_steps):
            self.draw(state.global_step)

    def draw(self, step: int) -> None:
        self.last_draw, self.last_step = time.monotonic(), step
        rate = self.tokens_per_s if self.first_tokens is not None else self.status.data.get("tokens_per_s")
        self.console.show_progress(progress_text(self.status.data, rate))

    def _count_tokens(self, logs: dict) -> None:
        """tokens/s averaged over this attempt: one step's rate jumps with every evaluation and save."""
        tokens = logs.get("num_tokens")
        if not isinstance(tokens, (int, float)):
            return
        now = time.monotonic()
        if self.first_tokens is None:
            self.first_tokens = (tokens, now)
        elif now > self.first_tokens[1]:
            self.tokens_per_s = (tokens - self.first_tokens[0]) / (now - self.first_tokens[1])

    def on_log(self, args, state, control, logs=None, **kwargs):
        record = {"step": state.global_step, **{k: finite(v) for k, v in (logs or {}).items()}}
        print(json.dumps(record, default=str), flush=True)  # the log file
        self._count_tokens(logs or {})
        if "eval_loss" in (logs or {}) and self.console.live:
            self.draw(state.global_step)
        elif "loss" in (logs or {}) and self._due(state.global_step, state.max_steps):
            self.draw(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.last_step != state.global_step:
            self.draw(state.global_step)
        self.console.end_progress()
