"""Dry-run latency against a bare Hydra app composing the same config tree, side by side.

    python benchmarks/dry_run.py [--runs 15] [--points 1000]

Two cases, each against the bare app with the same overrides: a shipped model, and model=custom on a
Qwen2.5-0.5B-shaped folder (its config.json and a sparse safetensors file whose header ftc reads).
Targets (2-core machine): dry run <= 0.5 s and <= 1.3x the bare Hydra app in both cases (the exit status
is 1 above 1.3x); a 1000-point sweep compiles at <= 10 ms a point. Both apps run with their bytecode cached,
as an installed package has it.
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
RATIO_TARGET = 1.3  # ftc / bare Hydra compose, side by side: the exit status fails above it
OVERRIDES = ["method=lora", "model=llama8b", "cluster=example"]
BARE_APP = f'''
import hydra
from omegaconf import OmegaConf

@hydra.main(config_path={str(REPO / "conf")!r}, config_name="ftc", version_base="1.3")
def main(cfg):
    print(OmegaConf.to_yaml(cfg))

main()
'''


CUSTOM_CONFIG = {  # Qwen/Qwen2.5-0.5B-Instruct's config.json numbers (tied embeddings)
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}


def custom_folder(root: Path) -> Path:
    """A model folder as save_pretrained writes it: config.json and model.safetensors (bf16, sparse: only
    the header is written, which is all the compiler reads)."""
    import json
    import math
    import struct

    from ftc.compiler.modelfolder.families import BY_MODEL_TYPE
    from ftc.compiler.modelfolder.layout import Dims, expected_tensors

    c = CUSTOM_CONFIG
    dims = Dims(c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
                c["hidden_size"] // c["num_attention_heads"], c["intermediate_size"], c["vocab_size"], True)
    header, offset = {}, 0
    for name, shape in expected_tensors(BY_MODEL_TYPE["qwen2"], dims).items():
        size = math.prod(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    folder = root / "qwen2.5-0.5b-instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(c))
    (folder / "tokenizer_config.json").write_text("{}")  # the compile checks that a tokenizer is there
    raw = json.dumps(header).encode()
    with open(folder / "model.safetensors", "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return folder


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
        # Bytecode cached for both, as `pip install` leaves it (PYTHONDONTWRITEBYTECODE would have every ftc run
        # recompile its sources while Hydra's come compiled from site-packages): the warm-up runs write it.
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
               "FTC_OUTPUT_ROOT": os.path.join(work, "runs"), "PYTHONPYCACHEPREFIX": os.path.join(work, "pycache")}
        app = Path(work) / "bare_hydra_app.py"
        app.write_text(BARE_APP)
        cases = {"shipped model": OVERRIDES,
                 "model=custom": ["method=lora", "model=custom", f"model.path={custom_folder(Path(work))}"]}
        results = {}
        for case, overrides in cases.items():
            ftc_cmd = [sys.executable, "-m", "ftc", *overrides, "dry_run=true"]
            bare_cmd = [sys.executable, str(app), *overrides]
            wall(ftc_cmd, work, env)  # warm the file cache for both
            wall(bare_cmd, work, env)
            ftc_times, bare_times = [], []
            for _ in range(args.runs):  # interleaved, so both see the same machine
                ftc_times.append(wall(ftc_cmd, work, env))
                bare_times.append(wall(bare_cmd, work, env))
            results[case] = (overrides, statistics.median(ftc_times), statistics.median(bare_times))
        os.environ["FTC_OUTPUT_ROOT"] = env["FTC_OUTPUT_ROOT"]
        per_point, count = sweep_ms_per_point(args.points)
    missed = []
    for case, (overrides, ftc_median, bare_median) in results.items():
        print(f"{case}: python -m ftc {' '.join(overrides)} dry_run=true")
        print(f"  ftc median {ftc_median:.3f} s, bare Hydra app on the same tree {bare_median:.3f} s over {args.runs} runs: "
              f"ratio {ftc_median / bare_median:.2f}x   (target <= {RATIO_TARGET}x, and <= 0.5 s)")
        if ftc_median / bare_median > RATIO_TARGET:
            missed.append(f"{case}: {ftc_median / bare_median:.2f}x the bare Hydra app, above {RATIO_TARGET}x")
    print(f"sweep of {count} points: {per_point:.2f} ms per point   (target <= 10 ms)")
    if missed:
        sys.exit("missed: " + "; ".join(missed))


if __name__ == "__main__":
    main()
