"""A finished run's deliverable, found and checked, and loaded for use: what generate, chat and export start from.

RUN resolves as `ftc status RUN` does (a run id, a unique prefix, a Slurm job id or a run folder).
outputs.json is a record like any other: its paths must be folders inside the run folder and of a
kind ftc writes, or the command stops with one line.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.planning.plan import Plan

KINDS = ("merged", "model", "adapter")  # the one to load when a run has several: a merged model loads whole


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run id, unique prefix, Slurm job id or run folder")
    parser.add_argument("--root", help="output root (default $FTC_OUTPUT_ROOT or ./runs)")


@dataclass
class Trained:
    plan: Plan
    run_dir: Path
    paths: dict[str, Path]  # kind -> folder
    report: dict | None  # eval.json

    def pick(self, *kinds: str) -> tuple[str, Path]:
        for kind in kinds or KINDS:
            if kind in self.paths:
                return kind, self.paths[kind]
        raise UserError(f"run {self.plan.run_id}: no {' or '.join(kinds)} among its outputs ({', '.join(self.paths)})")


def _output_paths(run_dir: Path, outputs: dict) -> dict[str, Path]:
    paths = outputs.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise UserError(f"{run_dir / 'outputs.json'}: paths: missing or empty")
    found = {}
    for kind, folder in paths.items():
        if kind not in KINDS or not isinstance(folder, str):
            raise UserError(f"{run_dir / 'outputs.json'}: paths: {str(kind)[:40]!r} is not an output kind ftc writes")
        path = Path(folder).resolve()
        if not path.is_relative_to(run_dir) or not path.is_dir():
            where = f"{run_dir / 'outputs.json'}: paths.{kind}"
            raise UserError(f"{where}: {folder[:200]!r} is not a folder inside the run")
        found[kind] = path
    return found


def find(query: str, root: str | None) -> Trained:
    """The run named by `query`, with its plan, its output folders and its evaluation."""
    from ftc.compiler.runs import runstate
    from ftc.compiler.runs.jobs import _one
    from ftc.runtime.planfile import load_plan

    if not query.strip():
        raise UserError("RUN: empty; give a run id, a unique prefix of one, a Slurm job id or a run folder")
    view = _one(query, runstate.output_root(root))
    run_dir = view.run_dir.resolve()
    plan = load_plan(str(run_dir))
    outputs = records.read_json(run_dir / "outputs.json")
    if outputs is None:
        state = view.state or view.status.get("state") or "unknown"
        raise UserError(f"run {plan.run_id} has no outputs yet (state {state}); "
                        "they are written when training completes")
    return Trained(plan, run_dir, _output_paths(run_dir, outputs), records.read_json(run_dir / "eval.json"))


def base_path(plan: Plan) -> str:
    """The base weights the run trained from (the tiny model is rebuilt if its cache was cleared)."""
    model = plan.job.model
    if model.source == "tiny":
        from ftc.runtime.tiny import ensure_tiny_model

        return ensure_tiny_model(model.path, model.architecture)
    if not (Path(model.path) / "config.json").is_file():
        raise UserError(f"model.path: {model.path} holds no model here (no config.json); run this where the base is")
    return model.path


def device_and_dtype():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def quiet_loading() -> None:
    """A person typed this command: loading bars and library notices would bury the answer."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def load(trained: Trained):
    """(model, tokenizer, kind): the merged or full model as saved, or the base with the run's adapter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_loading()
    kind, folder = trained.pick()
    device, dtype = device_and_dtype()
    if kind == "adapter":
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_path(trained.plan), dtype=dtype, local_files_only=True)
        model = PeftModel.from_pretrained(base, str(folder))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model.to(device).eval(), tokenizer, kind
