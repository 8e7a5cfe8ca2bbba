"""The README.md beside a run's adapter or model: which base it fine-tunes, how, on what, and how to serve it.

TRL's card names the base by hub id and says "[None]" for a local path; ftc knows the base's URN and
the folder its weights came from, so the card names both. The same facts give the `vllm serve` line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ftc.compiler.planning.plan import Plan
from ftc.compiler.runfolder import write_atomic
from ftc.runtime.report import hyperparameters

LIBRARY = {"adapter": "peft", "merged": "transformers", "model": "transformers"}


def base_name(plan: Plan) -> str:
    """meta/llama-3.1-8b-instruct@v1.0.0: the base model as ftc's configs name it."""
    model = plan.job.model
    return f"{model.namespace}/{model.name}@{model.version}"


def lora_name(plan: Plan) -> str:
    """A LoRA module name vLLM accepts in `name=path`: the output name without namespace, '@' or '='."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{plan.job.model.name}-{plan.job.data.name}-{plan.run_id}")


def serve_command(plan: Plan, kind: str, path: str | Path) -> str:
    """The line that serves this output with vLLM: the base plus this adapter as one of many LoRAs, or the model."""
    if kind == "adapter":
        rank = plan.job.method.lora.adapter_dim
        return (f"vllm serve {shlex.quote(plan.job.model.path)} --enable-lora --max-lora-rank {rank} "
                f"--lora-modules {shlex.quote(f'{lora_name(plan)}={path}')}")
    return f"vllm serve {shlex.quote(str(path))}"


def _eval_lines(report: dict | None) -> list[str]:
    before, after = (report or {}).get("before") or {}, (report or {}).get("after") or {}
    lines = []
    for key, value in after.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            old = before.get(key)
            change = f"{old:.4g} → {value:.4g}" if isinstance(old, (int, float)) else f"{value:.4g}"
            lines.append(f"- {key}: {change}")
    return lines


def model_card(plan: Plan, kind: str, path: str | Path, report: dict | None = None) -> str:
    model, data = plan.job.model, plan.dataset
    rows = ", ".join(f"{n} {split}" for split, n in data.rows.items())
    tags = ["ftc", plan.job.method.training_type, plan.job.method.finetuning_type]
    what = {"adapter": "a LoRA adapter for", "merged": "a LoRA fine-tune, merged into",
            "model": "a full fine-tune of"}[kind]
    lines = [
        "---",
        f"base_model: {model.path}",
        f"library_name: {LIBRARY[kind]}",
        "tags:",
        *[f"- {tag}" for tag in tags],
        "---",
        "",
        f"# {plan.output_name}",
        "",
        f"This is {what} **{base_name(plan)}** (base weights: `{model.path}`), trained by ftc run `{plan.run_id}`.",
        "",
        f"- method: {hyperparameters(plan)}",
        f"- data: {plan.job.data.name} ({data.format}): {rows} rows, sequences up to {plan.max_seq_length} tokens",
        f"- trained on: {plan.model_urn}",
    ]
    evaluation = _eval_lines(report)
    if evaluation:
        lines += ["", "## Evaluation (validation rows, before → after)", "", *evaluation]
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        f"ftc generate {plan.run_id} \"your prompt\"",
        f"ftc chat {plan.run_id}",
        serve_command(plan, kind, path),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(plan: Plan, kind: str, folder: str | Path, report: dict | None = None,
               served_from: str | Path | None = None) -> Path:
    """README.md in `folder`; its serve line names `served_from` (where the folder will be) or the folder."""
    path = Path(folder) / "README.md"
    write_atomic(path, model_card(plan, kind, served_from or folder, report))
    return path
