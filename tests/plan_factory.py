"""A valid Plan and run folder for runtime tests, without Hydra or the planner.

The job is the bundled conf/ yaml (tiny model, demo data, local cluster) read as plain YAML, with the
few interpolated fields filled in and test overrides merged on top; the topology is given outright.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import yaml

import ftc
from ftc.compiler.checks.datasets import inspect_dataset
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.planning.deepspeed import deepspeed_config
from ftc.compiler.planning.plan import Plan, Topology

ROOT = Path(ftc.__file__).resolve().parent
CONF = ROOT / "conf"
DEMO_FORMS = {"lora": "sft", "sft": "sft", "dpo": "dpo", "grpo": "grpo"}


def _yaml(group: str, name: str) -> dict:
    return yaml.safe_load((CONF / group / f"{name}.yaml").read_text())


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def demo_path(method: str) -> str:
    return str(CONF / "datasets" / "demo" / DEMO_FORMS[method])


def default_model_path() -> str:
    cache = os.environ.get("FTC_CACHE") or os.path.join(os.environ.get("HOME", "/tmp"), ".cache", "ftc")
    return os.path.join(cache, "tiny-llama-v1")


def job_dict(method: str, run_root: str, model_path: str | None = None) -> dict:
    """The composed config for `method`, as Hydra would resolve it with the defaults."""
    job = _top()
    job.update(
        name=f"demo-{method}",
        output_root=run_root,
        model=_yaml("model", "tiny") | {"path": model_path or default_model_path()},
        method=_yaml("method", method),
        data=_yaml("data", "demo") | {"path": demo_path(method)},
        cluster=_yaml("cluster", "local"),
        resources=_yaml("resources", "auto"),
    )
    return job


def _top() -> dict:
    return {k: v for k, v in yaml.safe_load((CONF / "ftc.yaml").read_text()).items() if k != "defaults"}


def make_plan(
    run_dir: str | Path,
    method: str = "lora",
    overrides: dict | None = None,
    *,
    world: int = 1,
    zero_stage: int = 0,
    micro_batch_size: int = 2,
    gradient_accumulation_steps: int = 1,
    gradient_checkpointing: bool = False,
    max_seq_length: int = 128,
    precision: str = "fp32",
    model_path: str | None = None,
) -> Plan:
    """A plan whose run folder is `run_dir`; `overrides` is merged into the job dict (e.g. method.max_steps)."""
    run_dir = Path(run_dir).resolve()
    raw = merge(job_dict(method, str(run_dir.parent), model_path), overrides or {})
    global_batch = micro_batch_size * gradient_accumulation_steps * world
    raw["method"]["batch_size"] = global_batch
    job = JobConfig.model_validate(raw)
    topology = Topology(
        nodes=1,
        gpus_per_node=world,
        zero_stage=zero_stage,
        micro_batch_size=micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        gradient_checkpointing=gradient_checkpointing,
    )
    dataset = inspect_dataset(job.data, job.method.name, max_seq_length)
    return Plan(
        ftc_version=ftc.__version__,
        run_id=run_dir.name,
        run_dir=str(run_dir),
        output_name=f"{job.namespace}/{job.model.name}-{job.data.name}-{job.method.finetuning_type}@{run_dir.name}",
        model_urn=job.model.urn("CPU"),
        gpu="cpu" if precision == "fp32" else "h100-80gb",
        precision=precision,
        max_seq_length=max_seq_length,
        job=job,
        topology=topology,
        dataset=dataset,
        deepspeed=deepspeed_config(topology, global_batch, precision),
        time_limit="01:00:00",
    )


def write_run_dir(plan: Plan) -> Path:
    """plan.json (and ds_config.json under ZeRO), as the compiler writes them."""
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "plan.json").write_text(plan.model_dump_json(indent=2) + "\n")
    if plan.deepspeed is not None:
        (run_dir / "ds_config.json").write_text(json.dumps(plan.deepspeed, indent=2) + "\n")
    return run_dir


def make_run(run_dir: str | Path, method: str = "lora", overrides: dict | None = None, **kwargs) -> Plan:
    plan = make_plan(run_dir, method, overrides, **kwargs)
    write_run_dir(plan)
    return plan


# ---------------------------------------------------------------- running the runtime in tests

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DS_ACCELERATOR": "cpu",
    "TOKENIZERS_PARALLELISM": "false",
}


def runtime_command(run_dir: str | Path, nproc: int = 1) -> list[str]:
    """`python -m ftc.runtime RUN_DIR`, or under torchrun with `nproc` workers."""
    import sys

    if nproc == 1:
        return [sys.executable, "-m", "ftc.runtime", str(run_dir)]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "-m", "ftc.runtime", str(run_dir),
    ]


def start_runtime(run_dir: str | Path, nproc: int = 1):
    """The runtime as a child process (its own process group), log in RUN_DIR/runtime.log."""
    import subprocess

    log = open(Path(run_dir) / "runtime.log", "ab")  # noqa: SIM115 - the child process keeps it
    env = {**os.environ, **OFFLINE_ENV}
    return subprocess.Popen(
        runtime_command(run_dir, nproc), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def run_runtime(run_dir: str | Path, nproc: int = 1, timeout: float = 300) -> int:
    """Run to the end; on a non-zero exit the log's tail is in the assertion message."""
    proc = start_runtime(run_dir, nproc)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            kill_group(proc)


def kill_group(proc, sig: int | None = None) -> None:
    import signal

    os.killpg(proc.pid, sig or signal.SIGKILL)
    proc.wait(timeout=60)


def log_tail(run_dir: str | Path, lines: int = 40) -> str:
    path = Path(run_dir) / "runtime.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def read_status(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "status.json").read_text())


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def final_weights(run_dir: str | Path) -> dict:
    """The saved output's tensors (adapter or full model), for bit-for-bit comparisons."""
    from safetensors.torch import load_file

    out = Path(run_dir) / "output"
    files = sorted(out.glob("*/*.safetensors"))
    assert files, f"no safetensors under {out}"
    tensors: dict = {}
    for file in files:
        tensors.update({f"{file.parent.name}/{k}": v for k, v in load_file(str(file)).items()})
    return tensors
