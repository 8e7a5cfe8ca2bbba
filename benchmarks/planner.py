"""Time the planner: solve() for every shipped model x method x partition of the example cluster
(and the local CPU partition for the tiny model); prints the chosen layouts and the total time.

    python benchmarks/planner.py        # target: well under 1 s for the whole matrix
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning.solver import solve

CONF = Path(__file__).resolve().parents[1] / "conf"
METHODS = [("lora", None), ("sft", None), ("dpo", "lora"), ("dpo", "all_weights"), ("grpo", "lora"), ("grpo", "all_weights")]


def conf(group: str, name: str) -> dict:
    data = yaml.safe_load((CONF / group / f"{name}.yaml").read_text())
    if "${" in str(data.get("path", "")):
        data["path"] = "/models/benchmark"
    return data


def jobs():
    for model_file in sorted((CONF / "model").glob("*.yaml")):
        model = conf("model", model_file.stem)
        cluster_name = "local" if model["source"] == "tiny" else "example"
        cluster = conf("cluster", cluster_name)
        for partition in cluster["partitions"]:
            for method_name, finetuning in METHODS:
                method = conf("method", method_name)
                if finetuning:
                    method["finetuning_type"] = finetuning
                seq = min(o["max_seq_length"] for opts in model["training_options"].values() for o in opts)
                yield (model_file.stem, method_name, finetuning or method["finetuning_type"], partition), JobConfig.model_validate({
                    "name": "bench", "output_root": "/tmp/ftc-bench", "model": model, "method": method,
                    "data": {"name": "bench", "path": "/data/bench", "max_seq_length": seq},
                    "cluster": {**cluster, "partition": partition},
                })


def main() -> None:
    built = list(jobs())
    rows, start = [], time.perf_counter()
    for key, job in built:
        t0 = time.perf_counter()
        try:
            s = solve(job, 10_000)
            t = s.topology
            layout = f"{t.nodes}x{t.gpus_per_node} zero{t.zero_stage} mb{t.micro_batch_size} ga{t.gradient_accumulation_steps}"
            layout += " ckpt" if t.gradient_checkpointing else ""
            memory = f"{s.memory.total_gib:6.1f} / {s.memory.capacity_gib:g} GiB"
        except UserError as err:
            layout, memory = "-", str(err).split(";")[0][:60]
        rows.append((*key, layout, memory, (time.perf_counter() - t0) * 1e3))
    total = time.perf_counter() - start
    print(f"{'model':14} {'method':6} {'finetuning':12} {'partition':9} {'layout':30} {'memory per GPU':20} ms")
    for model, method, ft, part, layout, memory, ms in rows:
        print(f"{model:14} {method:6} {ft:12} {part:9} {layout:30} {memory:20} {ms:.2f}")
    print(f"\n{len(rows)} plans solved in {total * 1e3:.1f} ms ({'OK' if total < 1 else 'SLOW'}: target < 1 s)")


if __name__ == "__main__":
    main()
