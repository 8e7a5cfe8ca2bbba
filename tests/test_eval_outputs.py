"""evaluate / outputs / report on a tiny random Llama with a byte-level BPE built here (no download)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.train
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from ftc.compiler.planning.plan import Plan  # noqa: E402
from ftc.runtime import evaluate, outputs, report  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXTS = [
    "What is the capital of France? Paris.",
    "Add two and three. The answer is five.",
    "system user assistant: translate hello into French: bonjour",
    "".join(chr(c) for c in range(32, 127)),
]


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(
        TEXTS * 4,
        trainers.BpeTrainer(vocab_size=320, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|bos|>", eos_token="<|im_end|>", pad_token="<|pad|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_base(path: Path, tokenizer) -> str:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def base_path(tmp_path_factory, tokenizer) -> str:
    return make_base(tmp_path_factory.mktemp("base") / "tiny-llama", tokenizer)


def _base(path: str):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _lora(path: str):
    model = peft.get_peft_model(
        _base(path),
        peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    return model.eval()


def _plan(run_dir: Path, model_path: str, finetuning_type: str) -> Plan:
    """A real Plan from tests/plan_factory.py, on a two-row dataset of its own (no bundled data needed)."""
    from plan_factory import make_plan

    data = run_dir.parent / "data"
    for split in ("training", "validation"):
        (data / split).mkdir(parents=True, exist_ok=True)
        (data / split / "rows.jsonl").write_text('{"prompt": "Q: 1+1?", "completion": " 2"}\n' * 2)
    method = "sft" if finetuning_type == "all_weights" else "lora"
    overrides = {"data": {"path": str(data)}}
    if method == "lora":
        overrides["method"] = {"finetuning_type": finetuning_type}
    return make_plan(run_dir, method, overrides, model_path=model_path)


def _ids(tokenizer):
    return tokenizer(["What is the capital of France?", "Add two and three."], return_tensors="pt", padding=True)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


FINETUNING = {"adapter": "lora", "merged": "lora_merged", "model": "all_weights"}


def _check_manifest(run_dir: Path, kind: str) -> dict:
    manifest = json.loads((run_dir / "outputs.json").read_text())
    assert manifest["kind"] == kind and manifest["run_id"] == run_dir.name
    assert manifest["name"] == f"default/tiny-llama-demo-{FINETUNING[kind]}@run"
    assert manifest["base_model_urn"] == "ftc/tiny-llama@v1.0.0+CPU"
    assert manifest["files"] and manifest["total_bytes"] == sum(f["bytes"] for f in manifest["files"])
    for entry in manifest["files"]:
        data = (run_dir / entry["path"]).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert not list(run_dir.rglob("training_args.bin")) and not list(run_dir.rglob("*.tmp"))
    return manifest


def test_lora_adapter_reloads_with_peft(tmp_path, tokenizer, base_path):
    from safetensors import safe_open

    model, batch = _lora(base_path), _ids(tokenizer)
    expected = _logits(model, batch)
    assert not torch.allclose(expected, _logits(_base(base_path), batch), atol=1e-4)
    plan = _plan(tmp_path / "run", base_path, "lora")
    result = outputs.save_outputs(model, tokenizer, plan)
    adapter = tmp_path / "run" / "output" / "adapter"
    assert result["paths"] == {"adapter": str(adapter)}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == base_path and config["r"] == 4
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all("lora_" in k for k in keys)
    reloaded = peft.PeftModel.from_pretrained(_base(base_path), str(adapter)).eval()
    torch.testing.assert_close(_logits(reloaded, batch), expected, atol=1e-6, rtol=0)
    _check_manifest(tmp_path / "run", "adapter")


def test_lora_merged_matches_adapter(tmp_path, tokenizer, base_path):
    model, batch = _lora(base_path), _ids(tokenizer)
    expected = _logits(model, batch)
    result = outputs.save_outputs(model, tokenizer, _plan(tmp_path / "run", base_path, "lora_merged"))
    merged = Path(result["paths"]["merged"])
    assert (merged / "model.safetensors").exists() and (merged / "tokenizer.json").exists()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    assert not any("lora" in name for name, _ in reloaded.named_parameters())
    torch.testing.assert_close(_logits(reloaded, batch), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(_logits(model, batch), expected, atol=0, rtol=0)  # trained model untouched
    manifest = _check_manifest(tmp_path / "run", "merged")
    assert {"adapter", "merged"} == set(manifest["paths"])


def test_all_weights_reloads(tmp_path, tokenizer, base_path):
    model, batch = _base(base_path), _ids(tokenizer)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(0.1)
    expected = _logits(model, batch)
    result = outputs.save_outputs(model, tokenizer, _plan(tmp_path / "run", base_path, "all_weights"))
    folder = Path(result["paths"]["model"])
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin"))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    torch.testing.assert_close(_logits(reloaded, batch), expected, atol=1e-6, rtol=0)
    assert transformers.AutoTokenizer.from_pretrained(folder).encode("Paris") == tokenizer.encode("Paris")
    _check_manifest(tmp_path / "run", "model")


def test_lora_through_trainer_save_model(tmp_path, tokenizer, base_path):
    model, batch = _lora(base_path), _ids(tokenizer)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "trainer"), report_to=[], use_cpu=True)
    trainer = transformers.Trainer(model=model, args=args, processing_class=tokenizer)
    result = outputs.save_outputs(model, tokenizer, _plan(tmp_path / "run", base_path, "lora"), trainer=trainer)
    reloaded = peft.PeftModel.from_pretrained(_base(base_path), result["paths"]["adapter"]).eval()
    torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch), atol=1e-6, rtol=0)
    _check_manifest(tmp_path / "run", "adapter")


ZERO3_SCRIPT = """
import json, os, sys
from pathlib import Path
import deepspeed, torch, transformers, peft
deepspeed.init_distributed(dist_backend="gloo")
sys.path.insert(0, sys.argv[1])
from test_eval_outputs import _base, _ids, _lora, _plan, make_base, make_tokenizer
from ftc.runtime import outputs
kind, tmp = sys.argv[2], Path(sys.argv[3])
tok = make_tokenizer()
base = make_base(tmp / "base", tok)
ds = {"train_batch_size": 2, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
      "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}, "steps_per_print": 10**6}
args = transformers.TrainingArguments(output_dir=str(tmp / "trainer"), report_to=[], deepspeed=ds, max_steps=1,
    per_device_train_batch_size=2, learning_rate=1e-2, save_strategy="no", logging_strategy="no", disable_tqdm=True)
model = _base(base) if kind == "all_weights" else _lora(base)
ids = tok(["What is the capital of France? Paris.", "Add two and three. five"])["input_ids"]
trainer = transformers.Trainer(model=model, args=args, train_dataset=[{"input_ids": i, "labels": i} for i in ids],
    processing_class=tok, data_collator=transformers.DataCollatorForSeq2Seq(tok, padding=True))
trainer.train()
assert outputs._partitioned(trainer.model)
result = outputs.save_outputs(trainer.model, tok, _plan(tmp / "run", base, kind), trainer=trainer)
batch = _ids(tok)
with deepspeed.zero.GatheredParameters(list(trainer.model.parameters())), torch.no_grad():
    expected = trainer.model(**batch).logits
diffs = {}
with outputs._zero3_off(), torch.no_grad():
    for name, folder in result["paths"].items():
        if name == "adapter":
            loaded = peft.PeftModel.from_pretrained(_base(base), folder)
        else:
            loaded = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        diffs[name] = (loaded.eval()(**batch).logits - expected).abs().max().item()
    untrained = (_base(base)(**batch).logits - expected).abs().max().item()
print("UNTRAINED=%r" % untrained)
print("DIFFS=" + json.dumps(diffs))
"""


@pytest.mark.parametrize("kind", ["lora_merged", "all_weights"])
def test_zero3_outputs_through_trainer(tmp_path, kind):
    """ZeRO-3 on one CPU process: the saved files hold the gathered trained weights, not empty shards."""
    pytest.importorskip("deepspeed")
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"DS_ACCELERATOR": "cpu", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                        "WORLD_SIZE": "1", "LOCAL_RANK": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([sys.executable, "-c", ZERO3_SCRIPT, str(Path(__file__).parent), kind, str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    diffs = json.loads(run.stdout.split("DIFFS=")[-1])
    assert float(run.stdout.split("UNTRAINED=")[-1].split()[0]) > 1e-3
    assert set(diffs) == ({"model"} if kind == "all_weights" else {"adapter", "merged"})
    assert all(d < 1e-5 for d in diffs.values()), diffs
    _check_manifest(tmp_path / "run", {"all_weights": "model", "lora_merged": "merged"}[kind])


def test_save_outputs_refuses_a_plain_model_for_lora(tmp_path, tokenizer, base_path):
    with pytest.raises(TypeError, match="PeftModel"):
        outputs.save_outputs(_base(base_path), tokenizer, _plan(tmp_path / "run", base_path, "lora"))


PROMPTS = ["What is the capital of France?", "Add two and three.", "Translate hello:", "Say bonjour", "Q: 2+2?"]


def test_exact_match_on_own_generations(tokenizer, base_path):
    model = _lora(base_path).train()
    rows = [{"prompt": p, "answer": "x"} for p in PROMPTS]
    encoded = [evaluate.encode(tokenizer, r, "prompt_answer") for r in rows]
    generations = evaluate.generate(model, tokenizer, encoded, max_new_tokens=6, batch_size=2)
    assert len(generations) == len(rows) and any(g.strip() for g in generations)
    own = [{"prompt": p, "answer": g} for p, g in zip(PROMPTS, generations)]
    result = evaluate.evaluate_model(model, tokenizer, own, "prompt_answer", max_rows=10, max_new_tokens=6, batch_size=2)
    assert result["exact_match"] == 1.0 and result["f1"] == 1.0 and result["rows"] == len(PROMPTS)
    wrong = [{"prompt": p, "answer": "zebra quartz"} for p in PROMPTS]
    result = evaluate.evaluate_model(model, tokenizer, wrong, "auto", max_rows=3, max_new_tokens=6, batch_size=2)
    assert result["exact_match"] < 1.0 and result["rows"] == 3 and result["format"] == "prompt_answer"
    assert model.training  # the caller's mode is restored


def _manual_loss(model, pairs) -> float:
    nll, count = 0.0, 0
    for prompt_ids, full_ids in pairs:
        assert full_ids[: len(prompt_ids)] == prompt_ids
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([full_ids])).logits[0]
        for pos in range(len(prompt_ids), len(full_ids)):
            nll -= torch.log_softmax(logits[pos - 1].double(), -1)[full_ids[pos]].item()
            count += 1
    return nll / count


def test_loss_is_on_completion_tokens_only(tokenizer, base_path):
    model = _lora(base_path)
    rows = [{"prompt": p, "completion": " " + "yes" * (i + 1)} for i, p in enumerate(PROMPTS)]
    pairs = [(tokenizer(r["prompt"])["input_ids"], tokenizer(r["prompt"] + r["completion"] + "<|im_end|>")["input_ids"])
             for r in rows]
    result = evaluate.evaluate_model(model, tokenizer, rows, "prompt_completion", max_rows=10, batch_size=3)
    assert result["loss"] == pytest.approx(_manual_loss(model, pairs), rel=1e-5)
    assert result["tokens"] == sum(len(f) - len(p) for p, f in pairs)
    assert result["perplexity"] == pytest.approx(float(torch.tensor(result["loss"]).exp()), rel=1e-6)
    whole = _manual_loss(model, [([f[0]], f) for _, f in pairs])
    assert result["loss"] != pytest.approx(whole, rel=1e-3)

    chats = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "ok " * (i + 1)}]}
             for i, p in enumerate(PROMPTS)]
    # The answer ends with its end-of-turn token; the newline the template writes after it is not scored.
    pairs = [(tokenizer.apply_chat_template(c["messages"][:1], add_generation_prompt=True)["input_ids"],
              tokenizer.apply_chat_template(c["messages"])["input_ids"][:-1]) for c in chats]
    assert all(tokenizer.decode(f[-1]) == "<|im_end|>" for _, f in pairs)
    result = evaluate.evaluate_model(model, tokenizer, chats, "chat", max_rows=10, batch_size=2)
    assert result["loss"] == pytest.approx(_manual_loss(model, pairs), rel=1e-5)
    assert "exact_match" in result and len(result["samples"]) == 3

    prefs = [{"prompt": p, "chosen": " good", "rejected": " bad"} for p in PROMPTS]
    result = evaluate.evaluate_model(model, tokenizer, prefs, "preference", max_rows=10)
    assert result["tokens"] > 0 and "exact_match" not in result
    margins = _margins(tokenizer, model, prefs)
    assert result["margin"] == pytest.approx(sum(margins) / len(margins), rel=1e-4)
    assert result["preference_accuracy"] == sum(m > 0 for m in margins) / len(margins)


def _margins(tokenizer, model, prefs) -> list[float]:
    """Per row, log p(chosen) - log p(rejected), each summed over the answer and its end token."""
    out = []
    for r in prefs:
        prompt = tokenizer(r["prompt"])["input_ids"]
        sums = []
        for answer in (r["chosen"], r["rejected"]):
            full = tokenizer(r["prompt"] + answer + "<|im_end|>")["input_ids"]
            sums.append(-_manual_loss(model, [(prompt, full)]) * (len(full) - len(prompt)))
        out.append(sums[0] - sums[1])
    return out


def test_metrics_are_case_and_whitespace_exact_unless_normalised():
    assert evaluate.exact_match("  Paris ", "Paris") == 1.0  # outer whitespace only
    assert evaluate.exact_match(" h b d", " H B D") == 0.0 and evaluate.exact_match("H  B D", "H B D") == 0.0
    assert evaluate.exact_match(" h b d", " H B D", normalize=True) == 1.0
    assert evaluate.exact_match("H  B\tD", "h b d", normalize=True) == 1.0
    assert evaluate.exact_match("Paris.", "paris", normalize=True) == 0.0
    assert evaluate.token_f1("h b d", "H B D") == 0.0 and evaluate.token_f1("h b D", "H B D") == pytest.approx(1 / 3)
    assert evaluate.token_f1("The Paris!", "paris", normalize=True) == 1.0
    assert evaluate.token_f1("paris france", "paris") == pytest.approx(2 / 3)
    assert evaluate.token_f1("london", "paris") == 0.0


def test_compare_warns_on_forgetting():
    before, after = {"loss": 2.0, "perplexity": 7.4, "exact_match": 0.1}, {"loss": 1.0, "perplexity": 2.7, "exact_match": 0.6}
    report_ = evaluate.compare(before, after, {"exact_match": 0.50, "perplexity": 5.0}, {"exact_match": 0.47, "perplexity": 5.0})
    assert report_["delta"]["exact_match"] == pytest.approx(0.5) and report_["delta"]["loss"] == -1.0
    assert report_["general"]["metric"] == "exact_match" and report_["general"]["drop_points"] == pytest.approx(3.0)
    assert len(report_["warnings"]) == 1 and "forgetting" in report_["warnings"][0]
    calm = evaluate.compare(before, after, {"exact_match": 0.50}, {"exact_match": 0.49}, max_drop_points=2.0)
    assert calm["warnings"] == [] and calm["general"]["forgetting"] is False
    ppl = evaluate.compare(before, after, {"perplexity": 10.0}, {"perplexity": 10.5}, max_drop_points=2.0)
    assert ppl["general"]["metric"] == "perplexity" and len(ppl["warnings"]) == 1
    assert evaluate.compare(before, after, {"perplexity": 10.0}, {"perplexity": 10.1})["warnings"] == []
    alone = evaluate.compare(None, after)
    assert alone["delta"] == {} and alone["general"] == {} and alone["warnings"] == []


def test_load_eval_rows(tmp_path):
    (tmp_path / "validation").mkdir()
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "a.jsonl").write_text('{"prompt": "t", "completion": "t"}\n')
    (tmp_path / "validation" / "b.jsonl").write_text('{"prompt": "q", "answer": "a"}\n\n{"prompt": "r", "answer": "b"}\n')
    assert [r["prompt"] for r in evaluate.load_eval_rows(tmp_path)] == ["q", "r"]
    assert len(evaluate.load_eval_rows(tmp_path / "validation" / "b.jsonl", max_rows=1)) == 1
    assert evaluate.row_format(evaluate.load_eval_rows(tmp_path)[0]) == "prompt_answer"
    (tmp_path / "bad.jsonl").write_text("{nope\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        evaluate.load_eval_rows(tmp_path / "bad.jsonl")


def test_report(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "train_loss": 3.0 - 0.1 * s, "val_loss": None} for s in range(1, 6)]
    lines.append({"step": 5, "train_loss": None, "val_loss": 2.7})
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    assert report.plot_losses(metrics, tmp_path / "plots" / "loss.png")
    assert (tmp_path / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert report.plot_losses(tmp_path / "missing.jsonl", tmp_path / "x.png") is False
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "matplotlib", None)
        assert report.plot_losses(metrics, tmp_path / "y.png") is False
    text = report.format_summary(
        {"state": "completed", "step": 5, "train_loss": 2.5, "val_loss": 2.7},
        evaluate.compare({"perplexity": 20.0, "exact_match": 0.1}, {"perplexity": 12.0, "exact_match": 0.5},
                         {"exact_match": 0.5, "perplexity": 5.0}, {"exact_match": 0.4, "perplexity": 5.0}),
        {"name": "default/tiny-llama-demo-lora@r1", "run_id": "r1", "kind": "adapter",
         "paths": {"adapter": "/runs/r1/output/adapter"}, "total_bytes": 1 << 20},
    )
    assert "train loss 2.5" in text and "10.0% → 50.0%" in text and "perplexity 20 → 12" in text
    assert "default/tiny-llama-demo-lora@r1" in text and "/runs/r1/output/adapter" in text and "warning: forgetting" in text
    assert len(text.splitlines()) <= 8
    assert report.format_summary(None, None, None)


def test_loss_plot_is_titled_with_the_output_name_and_hyperparameters(tmp_path):
    from matplotlib.image import imread
    from PIL import Image

    from plan_factory import make_plan

    plan = make_plan(tmp_path / "r1", "lora", {"method": {"max_steps": 7, "learning_rate": 3e-4}})
    title = report.plot_title(plan)
    assert title == ("default/tiny-llama-demo-lora@r1\n"
                     "lora (sft/lora), max_steps 7, batch 2, lr 0.0003, LoRA rank 8, alpha 16, dropout 0.1")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "train_loss": 3.0 - 0.1 * s}) + "\n" for s in range(1, 6)))
    assert report.plot_losses(metrics, tmp_path / "titled.png", title)
    assert report.plot_losses(metrics, tmp_path / "plain.png")
    assert Image.open(tmp_path / "titled.png").text["Title"] == title
    assert "Title" not in Image.open(tmp_path / "plain.png").text

    def frame_top(image) -> int:  # the first row that is mostly dark: the axes' top edge
        dark = image[:, :, :3].min(axis=2) < 0.5
        return int(next(row for row in range(dark.shape[0]) if dark[row].mean() > 0.5))

    titled, plain = imread(tmp_path / "titled.png"), imread(tmp_path / "plain.png")
    assert frame_top(titled) > frame_top(plain) + 20  # room made for two lines of title...
    middle = titled[: frame_top(titled), titled.shape[1] // 4 : 3 * titled.shape[1] // 4, :3]
    assert (middle.min(axis=2) < 0.5).sum() > 200  # ...and text in it
