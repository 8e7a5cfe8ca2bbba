"""From a validated job to a plan and its files: schema, checks, plan, render. No side effects."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

import ftc
from ftc.compiler.checks import guards
from ftc.compiler.checks.advice import advise
from ftc.compiler.checks.datasets import inspect_dataset
from ftc.compiler.checks.inputs import model_path_warnings
from ftc.compiler.checks.lora_targets import resolve_targets
from ftc.compiler.config.schema import RUN_ID_EXCLUDED, JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning import qos
from ftc.compiler.planning.deepspeed import deepspeed_config
from ftc.compiler.planning.estimate import estimate_time, sbatch_time
from ftc.compiler.planning.plan import DatasetSummary, Plan
from ftc.compiler.planning.solver import solve
from ftc.compiler.render.sbatch import render_sbatch

RUN_ID_LENGTH = 10
CHAT_TEMPLATE_TOKENS = 64  # headers and special tokens a chat template adds (Llama 3's is about 30)


def run_id(job: JobConfig, data_digest: str) -> str:
    """A short hash of what the user asked for: the validated request and the data's bytes.

    The same request always gets the same id, across ftc releases too (an upgrade of a shared
    environment must find the runs it queued and completed: ftc's version is not hashed), and a
    field a later release adds with a default leaves ids as they were (values equal to the schema's
    default are left out). The data enter by content, not by path: the same files in another folder
    (a copy, another checkout of the bundled demo) are the same run.
    """
    request = job.model_dump(mode="json", exclude=set(RUN_ID_EXCLUDED), exclude_defaults=True)
    for data in (request.get("data", {}), request.get("data", {}).get("replay", {})):
        data.pop("path", None)
    canonical = json.dumps({"job": request, "method": job.method.name, "data": data_digest},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:RUN_ID_LENGTH]


@lru_cache(maxsize=32)
def _data_digest(signature: tuple) -> str:
    """sha256 over each data file's place in its folder and its bytes."""
    digest = hashlib.sha256()
    for root, files in signature:
        for path, _, _ in files:
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class CompiledRun:
    """A plan and the exact bytes of every file its run folder gets."""

    plan: Plan
    files: dict[str, str]  # file name in the run folder -> content

    @property
    def script(self) -> str:
        return self.files["job.sbatch"]


@lru_cache(maxsize=32)
def _inspect(data, method: str, seq_len: int, signature: tuple, model_dir: str | None = None) -> DatasetSummary:
    """Each dataset is read once per process, however many sweep points use it."""
    return inspect_dataset(data, method, seq_len, model_dir)


def _files_signature(*folders: str | None) -> tuple:
    """Per data path (a folder or one file), name, size and mtime of every file: a changed file misses the caches."""
    found = []
    for folder in folders:
        root = Path(folder or "")
        paths = ([root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())) if folder else []
        files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
        found.append((folder, tuple(files)))
    return tuple(found)


def padded_length(job: JobConfig, dataset: DatasetSummary, seq_len: int) -> int:
    """The longest sequence a batch can hold, which is what activations are sized for.

    Packed batches fill seq_len. Otherwise a batch pads to its longest row: a byte-level
    tokenizer never makes more tokens than UTF-8 bytes, plus the chat template's own tokens.
    """
    if job.data.packing or not dataset.longest_row_bytes:
        return seq_len
    generated = getattr(job.method, "max_completion_length", 0)
    return min(seq_len, dataset.longest_row_bytes + CHAT_TEMPLATE_TOKENS + generated)


def run_dir(job: JobConfig, rid: str) -> str:
    """<output_root>/<namespace>/<model>-<name>/<run id>: the model is in the folder name, so the same
    task on two models lands in two folders (name defaults to <data>-<method>)."""
    return os.path.join(os.path.abspath(job.output_root), job.namespace, f"{job.model.name}-{job.name}", rid)


def output_name(job: JobConfig, rid: str) -> str:
    """The caller's output_model (@<run id> appended when it has no version), or Customizer's default."""
    if job.output_model:
        return job.output_model if "@" in job.output_model else f"{job.output_model}@{rid}"
    return f"{job.namespace}/{job.model.name}-{job.data.name}-{job.method.finetuning_type}@{rid}"


def build_plan(job: JobConfig) -> Plan:
    option = guards.training_option(job)
    seq_len = guards.max_seq_length(job, option)
    data_files = _files_signature(job.data.path, job.data.replay.path)
    dataset = _inspect(job.data, job.method.name, seq_len, data_files, job.model.path)
    rows = dataset.rows.get("training", 0) + dataset.rows.get("replay", 0)
    limits = qos.qos_limits(job)
    if job.resources.time != "auto":
        qos.check_time(job.resources.time, limits)
    planned = qos.within(job, limits)  # the partition as far as the QOS lets one job use it
    try:
        solution = solve(planned, rows, padded_length(job, dataset, seq_len))
    except UserError as exc:
        raise qos.explain(exc, limits) from None
    topology = solution.topology
    gpu, precision = job.cluster.chosen.gpu, solution.precision
    estimate = estimate_time(planned, topology, rows, mean_tokens=dataset.mean_tokens(), seq_len=seq_len,
                             validation_rows=dataset.rows.get("validation", 0))
    if job.resources.time == "auto":
        time_limit = sbatch_time(estimate.hours, planned.cluster.chosen.max_time)[0]
    else:
        time_limit = job.resources.time
        guards.check_time(job, time_limit)
    warnings, errors = advise(job, dataset.rows.get("training", 0))
    targets = resolve_targets(job)
    warnings = [*job.notes, *solution.warnings, *targets.warnings, *warnings, *model_path_warnings(job)]
    if errors:
        raise UserError(*errors)
    if job.strict and warnings:
        raise UserError(*(f"{w} (strict=true turns warnings into errors)" for w in warnings))
    rid = run_id(job, _data_digest(data_files))
    job = job.model_copy(update={k: JobConfig.model_fields[k].default for k in RUN_ID_EXCLUDED})
    return Plan(
        ftc_version=ftc.__version__,
        run_id=rid,
        run_dir=run_dir(job, rid),
        output_name=output_name(job, rid),
        model_urn=job.model.urn(guards.variant_of(job)),
        gpu=gpu,
        precision=precision,
        max_seq_length=seq_len,
        job=job,
        topology=topology,
        dataset=dataset,
        deepspeed=deepspeed_config(topology, job.method.batch_size, precision),
        memory=solution.memory,
        estimate=estimate,
        time_limit=time_limit,
        lora_targets=targets.kinds,
        trainable_parameters=targets.trainable,
        decisions=solution.decisions,
        warnings=warnings,
    )


def compile_job(job: JobConfig, resolved: dict) -> CompiledRun:
    """Every file of the run folder, as text; writing them is the caller's (separate) step."""
    plan = build_plan(job)
    files = {
        "plan.json": plan.model_dump_json(indent=2) + "\n",
        "config.yaml": yaml.dump(_without(resolved, RUN_ID_EXCLUDED), Dumper=_YAML_DUMPER, sort_keys=True),
        "job.sbatch": render_sbatch(plan),
    }
    if plan.deepspeed is not None:
        files["ds_config.json"] = json.dumps(plan.deepspeed, indent=2) + "\n"
    return CompiledRun(plan, files)


_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _without(resolved: dict, keys) -> dict:
    return {k: v for k, v in resolved.items() if k not in keys}
