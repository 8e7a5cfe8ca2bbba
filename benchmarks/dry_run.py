"""Dry-run latency against a bare Hydra app composing the same config tree, side by side.

    python benchmarks/dry_run.py [--runs 15] [--points 1000]

Targets (2-core machine): dry run <= 0.5 s and <= 1.3x the bare Hydra app; a 1000-point
sweep compiles at <= 10 ms a point.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["method=lora", "model=llama8b", "cluster=example"]
BARE_APP = f'''
import hydra
from omegaconf import OmegaConf

@hydra.main(config_path={str(REPO / "conf")!r}, config_name="ftc", version_base="1.3")
def main(cfg):
    print(OmegaConf.to_yaml(cfg))

main()
'''


def wall(cmd: list[str], cwd: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def sweep_ms_per_point(points: int) -> tuple[float, int]:
    from ftc.compiler.driver import compile_sweep

    side = round(points ** (1 / 3))
    lrs = ",".join(f"{(i + 1) * 1e-5:g}" for i in range(side))
    epochs = ",".join(str(i + 1) for i in range(side))
    alphas = ",".join(str(8 * (i + 1)) for i in range(side))
    start = time.perf_counter()
    _, compiled = compile_sweep([*OVERRIDES, f"method.learning_rate={lrs}", f"method.epochs={epochs}",
                                 f"method.lora.alpha={alphas}"])
    return (time.perf_counter() - start) * 1000 / len(compiled), len(compiled)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "FTC_OUTPUT_ROOT": os.path.join(work, "runs")}
        app = Path(work) / "bare_hydra_app.py"
        app.write_text(BARE_APP)
        ftc_cmd = [sys.executable, "-m", "ftc", *OVERRIDES, "dry_run=true"]
        bare_cmd = [sys.executable, str(app), *OVERRIDES]
        wall(ftc_cmd, work, env)  # warm the file cache for both
        wall(bare_cmd, work, env)
        ftc_times, bare_times = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine
            ftc_times.append(wall(ftc_cmd, work, env))
            bare_times.append(wall(bare_cmd, work, env))
        os.environ["FTC_OUTPUT_ROOT"] = env["FTC_OUTPUT_ROOT"]
        per_point, count = sweep_ms_per_point(args.points)
    ftc_median, bare_median = statistics.median(ftc_times), statistics.median(bare_times)
    print(f"dry run (python -m ftc {' '.join(OVERRIDES)} dry_run=true): median {ftc_median:.3f} s over {args.runs} runs")
    print(f"bare Hydra app composing the same tree:                median {bare_median:.3f} s")
    print(f"ratio ftc / bare Hydra: {ftc_median / bare_median:.2f}x   (target <= 1.3x, and <= 0.5 s)")
    print(f"sweep of {count} points: {per_point:.2f} ms per point   (target <= 10 ms)")


if __name__ == "__main__":
    main()
