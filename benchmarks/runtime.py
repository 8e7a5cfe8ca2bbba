"""Does ftc's runtime cost training speed, and does packing pay? Two side-by-side measurements on the tiny model.

Each kind runs once unmeasured first: CPU kernels warm up per new tensor shape, which would
otherwise bill the first run for it.

1. steps/s of the trainer ftc builds (its arguments and callbacks: status.json, metrics.jsonl, stop
   checks, early stopping, checkpoint markers) against TRL's SFTTrainer called bare with the same
   model, data, batch, learning rate and logging interval. Runs alternate, the median counts.
   Target: ratio >= 0.97.
2. effective (non-padding) tokens/s of ftc's SFT with data.packing on (TRL's BFD packing,
   padding-free) against off, on a dataset of skewed lengths (micro-batch 4, 256 tokens). Target: >= 1.5x.

    python benchmarks/runtime.py [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}.items():
    os.environ.setdefault(key, value)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from transformers import TrainerCallback

from plan_factory import make_run

WARMUP = 10
# Without varlen flash attention (CPU, sdpa) a packed micro-batch is one flattened sequence whose
# block-diagonal mask costs (micro_batch * max_len)^2, so the CPU figure is taken at a moderate micro-batch.
PACKING_MICRO_BATCH = 4


class StepClock(TrainerCallback):
    """Step-end times and TRL's token count: the loop's speed without setup, evaluation or saving."""

    def __init__(self):
        self.marks: list[tuple[int, float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        tokens = getattr(self.trainer, "_total_train_tokens", 0)
        self.marks.append((state.global_step, time.perf_counter(), tokens))

    def rates(self) -> tuple[float, float]:
        (s0, t0, n0), (s1, t1, n1) = self.marks[WARMUP - 1], self.marks[-1]
        return (s1 - s0) / (t1 - t0), (n1 - n0) / (t1 - t0)


def ftc_trainer(run_dir: Path, plan):
    from ftc.runtime.callbacks import RunStatus
    from ftc.runtime.train import setup

    return setup(plan, RunStatus(str(run_dir))).trainer


def bare_trainer(run_dir: Path, plan):
    """TRL as a user would call it, with the plan's numbers and nothing of ftc's."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ftc.compiler.checks.datasets import inspect_dataset
    from ftc.runtime.data import load_splits
    from ftc.runtime.tiny import ensure_tiny_model

    job, topo = plan.job, plan.topology
    ensure_tiny_model(job.model.path, job.model.architecture)
    tokenizer = AutoTokenizer.from_pretrained(job.model.path)
    model = AutoModelForCausalLM.from_pretrained(job.model.path)
    summary = inspect_dataset(job.data, job.method.name, plan.max_seq_length)
    train_ds, _ = load_splits(job.data, summary, job.method.name, job.training.seed)
    args = SFTConfig(
        output_dir=str(run_dir / "bare"),
        per_device_train_batch_size=topo.micro_batch_size,
        max_steps=job.method.max_steps,
        learning_rate=job.method.learning_rate,
        lr_scheduler_type=job.method.lr_scheduler,
        logging_steps=job.training.logging_steps,
        max_length=plan.max_seq_length,
        seed=job.training.seed,
        bf16=False,
        use_cpu=True,
        activation_checkpointing=False,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
    )
    lora = job.method.lora
    peft = LoraConfig(r=lora.adapter_dim, lora_alpha=lora.alpha, lora_dropout=lora.adapter_dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer, peft_config=peft)


def timed(trainer) -> tuple[float, float]:
    gc.collect()
    clock = StepClock()
    clock.trainer = trainer
    trainer.add_callback(clock)
    trainer.train()
    return clock.rates()


def overhead(root: Path, model_path: str, steps: int, repeats: int) -> dict:
    """Median steps/s of ftc's trainer and the bare one, alternating runs."""
    over = {"method": {"max_steps": steps, "learning_rate": 1e-3},
            "training": {"eval_steps": 10 * steps, "save_steps": 10 * steps}, "eval": {"before": False}}
    speeds: dict[str, list[float]] = {"ftc": [], "bare": []}
    kinds = [("ftc", ftc_trainer), ("bare", bare_trainer)]
    for i in range(repeats + 1):
        for name, build in kinds if i % 2 else kinds[::-1]:
            run_dir = root / f"overhead-{name}-{i}"
            plan = make_run(run_dir, "lora", over, micro_batch_size=8, max_seq_length=128, model_path=model_path)
            speed = timed(build(run_dir, plan))[0]
            if i:
                speeds[name].append(speed)
    ftc, bare = statistics.median(speeds["ftc"]), statistics.median(speeds["bare"])
    return {"ftc_steps_per_s": ftc, "bare_steps_per_s": bare, "ratio": ftc / bare, "runs": speeds}


def skewed_dataset(folder: Path, rows: int = 800, seed: int = 0) -> str:
    """Mostly short completions and a long tail: what padding wastes and packing recovers."""
    rng = random.Random(seed)
    letters = "abcdefghij"
    for split, n in (("training", rows), ("validation", 16)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for _ in range(n):
            words = rng.randint(60, 110) if rng.random() < 0.12 else rng.randint(2, 10)
            seq = " ".join(rng.choice(letters) for _ in range(words))
            lines.append(json.dumps({"prompt": f"reverse: {seq} ->", "completion": " " + " ".join(reversed(seq.split()))}))
        (folder / split / "skewed.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder)


def packing(root: Path, model_path: str, steps: int, repeats: int) -> dict:
    data = skewed_dataset(root / "skewed")
    rates: dict[str, list[float]] = {"packed": [], "padded": []}
    kinds = [("packed", True), ("padded", False)]
    for i in range(repeats + 1):
        for name, packed in kinds if i % 2 else kinds[::-1]:
            run_dir = root / f"packing-{name}-{i}"
            over = {"method": {"max_steps": steps, "learning_rate": 1e-3}, "data": {"path": data, "packing": packed},
                    "training": {"eval_steps": 10 * steps, "save_steps": 10 * steps}, "eval": {"before": False}}
            plan = make_run(run_dir, "lora", over, micro_batch_size=PACKING_MICRO_BATCH, max_seq_length=256,
                            model_path=model_path)
            rate = timed(ftc_trainer(run_dir, plan))[1]
            if i:
                rates[name].append(rate)
    packed, padded = statistics.median(rates["packed"]), statistics.median(rates["padded"])
    return {"packed_tokens_per_s": packed, "padded_tokens_per_s": padded, "ratio": packed / padded, "runs": rates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the figures here")
    opts = parser.parse_args()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="ftc-bench-") as tmp:
        root = Path(tmp)
        model_path = str(root / "tiny-llama-v1")
        cost = overhead(root, model_path, opts.steps, opts.repeats)
        pack = packing(root, model_path, max(30, opts.steps // 4), opts.repeats)
    print(f"runtime overhead: ftc {cost['ftc_steps_per_s']:.2f} steps/s vs bare TRL {cost['bare_steps_per_s']:.2f} "
          f"steps/s -> ratio {cost['ratio']:.3f} (target >= 0.97)")
    print(f"packing (micro-batch {PACKING_MICRO_BATCH}): {pack['packed_tokens_per_s']:.0f} vs {pack['padded_tokens_per_s']:.0f} effective tokens/s "
          f"-> {pack['ratio']:.2f}x (target >= 1.5x)")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"overhead": cost, "packing": pack}, indent=2))
    return 0 if cost["ratio"] >= 0.97 and pack["ratio"] >= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
