"""Stops a run whose loss or weights stop being finite numbers, before anything is saved from them.

A NaN does not raise: training goes on, checkpoints and outputs fill with NaN, and the run says
"completed". This callback reads every logged loss (transformers' `logging_nan_inf_filter` must be
off, or a NaN step is logged as the window's average) and the trainable weights at every save; the
first non-finite value stops training without that step's checkpoint, and `reason` says why.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

from ftc.runtime import distributed

WATCHED = ("loss", "eval_loss")


def _local(param):
    """The values this rank holds: a ZeRO-3 parameter keeps only its shard, in `ds_tensor`."""
    return getattr(param, "ds_tensor", None) if hasattr(param, "ds_id") else param


def nonfinite_weights(model, trainable_only: bool = True) -> list[str]:
    """Names of the parameters (this rank's part of them) holding a NaN or an infinity."""
    import torch

    bad = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if trainable_only and not param.requires_grad:
                continue
            values = _local(param)
            if values is not None and values.numel() and not bool(torch.isfinite(values).all()):
                bad.append(name)
    return bad


def weights_problem(model) -> str | None:
    """The same answer on every rank: None, or which weights are not finite (on any rank)."""
    bad = nonfinite_weights(model) if model is not None else []
    if not distributed.any_rank(bool(bad)):
        return None
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"non-finite weights ({shown or 'on another rank'})"


class FiniteGuard(TrainerCallback):
    """Fails the run at the first non-finite loss, or non-finite weights at a save."""

    def __init__(self):
        self.reason: str | None = None

    def _fail(self, reason: str, control) -> None:
        if self.reason is None:
            self.reason = reason
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in WATCHED:
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                label = "validation loss" if key == "eval_loss" else "training loss"
                self._fail(f"{label} is {value} at step {state.global_step}", control)
        return control

    def check_weights(self, model, step: int) -> bool:
        """At a save, before it is marked complete: False (and the run stops) when a weight is not finite."""
        problem = weights_problem(model)
        if problem is not None:
            self.reason = self.reason or f"{problem} at step {step}"
        return problem is None
