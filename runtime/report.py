"""What a person reads at the end of a run: a loss plot and a few summary lines.

Both read the run's own files (metrics.jsonl, status.json, eval.json, outputs.json) and accept
missing pieces, so a failed or partial run still gets a summary.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ftc.compiler import records

TRAIN_KEYS = ("train_loss", "loss")
VAL_KEYS = ("val_loss", "eval_loss")


def _first(row: dict, keys: tuple[str, ...]):
    for key in keys:
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def read_losses(metrics_jsonl_path: str | Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) and (step, val loss) points; unreadable lines are skipped."""
    train, val = [], []
    path = Path(metrics_jsonl_path)
    try:
        text = (records.read_tail(path, records.METRICS_LIMIT, inside=path.parent) or ("", False))[0]
    except records.RecordError:
        return train, val
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            continue
        for points, keys in ((train, TRAIN_KEYS), (val, VAL_KEYS)):
            value = _first(row, keys)
            if value is not None:
                points.append((int(row["step"]), value))
    return train, val


def hyperparameters(plan) -> str:
    """The settings that tell two runs' curves apart: method, length, batch, learning rate, LoRA shape."""
    method = plan.job.method
    length = f"max_steps {method.max_steps}" if method.max_steps else f"epochs {method.epochs}"
    text = (f"{method.name} ({method.training_type}/{method.finetuning_type}), {length}, "
            f"batch {method.batch_size}, lr {method.learning_rate:g}")
    if method.uses_lora:
        lora = method.lora
        text += f", LoRA rank {lora.adapter_dim}, alpha {lora.alpha}, dropout {lora.adapter_dropout:g}"
    return text


def plot_title(plan) -> str:
    return f"{plan.output_name}\n{hyperparameters(plan)}"


def plot_losses(metrics_jsonl_path: str | Path, png_path: str | Path, title: str | None = None) -> bool:
    """Train and validation loss against step, as a titled PNG. False (no error) without matplotlib or data."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    train, val = read_losses(metrics_jsonl_path)
    if not train and not val:
        return False
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        if train:
            axes.plot(*zip(*train), label="train loss", linewidth=1.2)
        if val:
            axes.plot(*zip(*val), label="validation loss", marker="o", linewidth=1.5)
        if title:
            axes.set_title(title, fontsize=9)
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        png_path = Path(png_path)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = png_path.with_name(f".{png_path.name}.tmp.png")
        figure.savefig(tmp, metadata={"Title": title} if title else None)
        tmp.replace(png_path)
    finally:
        plt.close(figure)
    return True


def _num(value, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "n/a"


def _eval_line(label: str, before: dict | None, after: dict | None) -> str | None:
    if not after:
        return None
    before = before or {}
    parts = []
    if "exact_match" in after:
        em = f"exact match {_pct(after['exact_match'])}"
        if "exact_match" in before:
            em = f"exact match {_pct(before['exact_match'])} → {_pct(after['exact_match'])}"
        parts.append(em)
    ppl = f"perplexity {_num(after.get('perplexity'))}"
    if "perplexity" in before:
        ppl = f"perplexity {_num(before['perplexity'])} → {_num(after.get('perplexity'))}"
    parts.append(ppl)
    return f"{label}: " + ", ".join(parts)


def format_summary(status: dict | None, eval_json: dict | None, outputs_json: dict | None) -> str:
    """A few lines: state, losses, eval before → after, warnings, and where the output is."""
    status, eval_json, outputs_json = status or {}, eval_json or {}, outputs_json or {}
    lines = []
    state = status.get("state", "finished")
    step = status.get("step")
    head = f"run {outputs_json.get('run_id') or status.get('run_id') or ''}".strip()
    lines.append(f"{head}: {state}" + (f" at step {step}" if step is not None else "")
                 + (" (early stopped)" if status.get("early_stopped") else ""))
    losses = [f"{name} {_num(status.get(key))}" for name, key in
              (("train loss", "train_loss"), ("val loss", "val_loss"), ("best val loss", "best_val_loss"))
              if status.get(key) is not None]
    if losses:
        lines.append(", ".join(losses))
    for label, before, after in (
        ("eval", eval_json.get("before"), eval_json.get("after")),
        ("general", (eval_json.get("general") or {}).get("before"), (eval_json.get("general") or {}).get("after")),
    ):
        line = _eval_line(label, before, after)
        if line:
            lines.append(line)
    lines += [f"warning: {w}" for w in eval_json.get("warnings", [])]
    if outputs_json.get("paths"):
        size = outputs_json.get("total_bytes")
        where = ", ".join(f"{k} {v}" for k, v in outputs_json["paths"].items())
        lines.append(f"output: {outputs_json.get('name')} ({outputs_json.get('kind')}"
                     + (f", {size / 2**20:.1f} MiB" if isinstance(size, int) else "") + f") → {where}")
    return "\n".join(lines)
