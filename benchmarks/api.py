"""The job API on loopback: create+status round trips per second, status p99 with 1,000 run folders,
and what creating a job over HTTP adds to the CLI's own compile, measured side by side in one run.

    python benchmarks/api.py [--folders 1000] [--creates 40] [--polls 1000]

Targets: status p99 < 50 ms; a create round trip <= 1.2x the CLI's compile (compose, validate,
plan, render, write the run folder) of the same job. The server runs `cluster=local dry_run=true`,
so a create compiles and writes the run folder but starts no training.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from api_server import lora_body, start


def body(i: int) -> dict:
    return lora_body(learning_rate=round(1e-4 + i * 1e-6, 8))


def cli_args(i: int) -> list[str]:
    """The command line the API builds for body(i), as the CLI takes it."""
    return ["cluster=local", "dry_run=true", "model.urn=ftc/tiny-llama@v1.0.0+CPU", "method=lora", "data=demo",
            "method.epochs=10", "method.batch_size=16", f"method.learning_rate={body(i)['hyperparameters']['learning_rate']!r}",
            "method.lora.adapter_dim=8", "method.lora.adapter_dropout=0.1"]


def fill(root: Path, count: int) -> None:
    """`count` run folders, compiled and written as a sweep on the CLI writes them."""
    from ftc.compiler.driver import compile_sweep
    from ftc.compiler.submit.folder import write_run

    side = round(count ** (1 / 3))
    lrs = ",".join(f"{(i + 1) * 1e-5:g}" for i in range(side))
    epochs = ",".join(str(i + 1) for i in range(side))
    alphas = ",".join(str(8 * (i + 1)) for i in range(side))
    os.environ["FTC_OUTPUT_ROOT"] = str(root)
    _, points = compile_sweep(["model=tiny", "method=lora", f"method.learning_rate={lrs}", f"method.epochs={epochs}",
                               f"method.lora.alpha={alphas}", "name=bench"])
    for _, run in points:
        write_run(run)


def cli_compile_ms(root: Path, start_index: int, count: int) -> list[float]:
    """The CLI's compile of each job in this process (warm, like the server): compile_point + write_run."""
    from ftc.compiler.driver import compile_point
    from ftc.compiler.submit.folder import write_run

    os.environ["FTC_OUTPUT_ROOT"] = str(root)
    times = []
    for i in range(start_index, start_index + count):
        t0 = time.perf_counter()
        _, run = compile_point(cli_args(i))
        write_run(run)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folders", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=40)
    parser.add_argument("--polls", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        root = work / "runs"
        t0 = time.perf_counter()
        fill(root, args.folders)
        folders = [p.parent for p in root.glob("*/*/*/plan.json")]
        print(f"run folders    {len(folders)} written in {time.perf_counter() - t0:.1f} s")
        srv = start(work, "--rate", "0", "--creates-per-min", "1000000", "--log-level", "warning",
                    "cluster=local", "dry_run=true")
        try:
            cli_compile_ms(root, 10_000, 3)  # warm this process as the server is warm
            srv.post("/v1/customization/jobs", json=body(20_000)).raise_for_status()
            create_ms, status_after_create_ms, cli_ms = [], [], []
            t_loop = time.perf_counter()
            for i in range(args.creates):
                t1 = time.perf_counter()
                job = srv.post("/v1/customization/jobs", json=body(i)).raise_for_status().json()
                t2 = time.perf_counter()
                srv.get(f"/v1/customization/jobs/{job['id']}/status").raise_for_status()
                t3 = time.perf_counter()
                create_ms.append((t2 - t1) * 1000)
                status_after_create_ms.append((t3 - t2) * 1000)
            loop_s = time.perf_counter() - t_loop
            for i in range(args.creates):  # interleaving would share the CPU with the server; run after
                cli_ms += cli_compile_ms(work / "cli-runs", 1_000 + i, 1)
            ids = [f.name for f in folders]
            rng = random.Random(0)
            poll_ms = []
            for _ in range(args.polls):
                t1 = time.perf_counter()
                srv.get(f"/v1/customization/jobs/{rng.choice(ids)}/status").raise_for_status()
                poll_ms.append((time.perf_counter() - t1) * 1000)
        finally:
            srv.stop()
    create_med, cli_med = statistics.median(create_ms), statistics.median(cli_ms)
    print(f"create+status  {args.creates / loop_s:.1f} round trips/s on loopback "
          f"(create median {create_med:.0f} ms, status after create median {statistics.median(status_after_create_ms):.1f} ms)")
    print(f"CLI compile    median {cli_med:.0f} ms (compile_point + write_run, same process, same jobs)")
    print(f"create / CLI   {create_med / cli_med:.2f}x  (target <= 1.20x)")
    print(f"status         {args.polls} polls over {len(ids)} run folders: p50 {statistics.median(poll_ms):.1f} ms, "
          f"p99 {percentile(poll_ms, 99):.1f} ms, max {max(poll_ms):.1f} ms  (target p99 < 50 ms)")


if __name__ == "__main__":
    main()
