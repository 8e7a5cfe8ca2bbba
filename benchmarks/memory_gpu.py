"""The planner's memory estimate against torch.cuda.max_memory_allocated on a real GPU.

Builds a random-weight Llama with llama-3.2-1b's numbers (no download), runs a few real LoRA and
full fine-tuning steps in bf16, and prints the measured peak beside the planner's figure.

    python benchmarks/memory_gpu.py             # needs a CUDA GPU; about a minute on an H100
    python benchmarks/memory_gpu.py --smoke     # the same code on CPU with the tiny model (no measurement)

The planner's "runtime overhead" item (CUDA context, NCCL, fragmentation) is left out of the
comparison: max_memory_allocated does not see it. Full fine-tuning mirrors what the planner models
(DeepSpeed's bf16 layout): bf16 weights and gradients, fp32 master weights and AdamW states, and the
fp32 gradients formed at the step. LoRA runs PEFT's fp32 adapters on a bf16 base under bf16 autocast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from ftc.compiler.config.methods import LoraMethod, SftMethod
from ftc.compiler.config.schema import ModelConfig
from ftc.compiler.planning.memory import GIB, MemoryModel

CONF = Path(__file__).resolve().parents[1] / "conf"
# (method, micro batch, sequence length, gradient checkpointing)
CASES = [("lora", 1, 4096, False), ("lora", 4, 4096, True), ("sft", 1, 4096, False), ("sft", 2, 2048, True)]
SMOKE_CASES = [("lora", 2, 128, False), ("sft", 2, 128, True)]


def architecture(name: str):
    data = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    data["path"] = "/unused"
    return ModelConfig.model_validate(data).architecture


def gpu_key(torch) -> str:
    name = torch.cuda.get_device_name().upper()
    total = torch.cuda.get_device_properties(0).total_memory / GIB
    for marker, key in (("H200", "h200-141gb"), ("H100", "h100-80gb"), ("L40S", "l40s")):
        if marker in name:
            return key
    return "a100-40gb" if "A100" in name and total < 60 else "a100-80gb"


def build(torch, transformers, arch, device):
    config = transformers.LlamaConfig(
        vocab_size=arch.vocab_size, hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.layers, num_attention_heads=arch.attention_heads,
        num_key_value_heads=arch.kv_heads, max_position_embeddings=arch.max_seq_length,
        tie_word_embeddings=arch.tie_embeddings, attn_implementation="sdpa", use_cache=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        return transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def run_case(torch, transformers, peft, arch, method, micro, seq, ckpt, device, steps):
    """Peak allocated bytes over `steps` optimizer steps of one layout."""
    model = build(torch, transformers, arch, device)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    autocast = torch.autocast(device, dtype=torch.bfloat16)
    if method.uses_lora:
        lora = method.lora
        model = peft.get_peft_model(model, peft.LoraConfig(
            r=lora.adapter_dim, lora_alpha=lora.alpha, lora_dropout=lora.adapter_dropout, target_modules=lora.target_modules))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, master = torch.optim.AdamW(params, lr=1e-4, fused=device == "cuda"), None
    else:
        params = list(model.parameters())
        master = [p.detach().float() for p in params]
        optimizer = torch.optim.AdamW(master, lr=1e-5, fused=device == "cuda")
    model.train()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        ids = torch.randint(0, arch.vocab_size, (micro, seq), device=device)
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if master is not None:
            for m, p in zip(master, params):
                m.grad, p.grad = p.grad.float(), None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if master is not None:
            with torch.no_grad():
                for m, p in zip(master, params):
                    p.copy_(m)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    del model, optimizer, master, params
    if device == "cuda":
        torch.cuda.empty_cache()
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.2-1b", help="a conf/model name (its numbers, random weights)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="run the code path on CPU with the tiny model")
    args = parser.parse_args()
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        sys.exit(f"memory_gpu: needs the train extra (torch, transformers, peft): {exc}")
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("memory_gpu: no CUDA GPU here; run it on a GPU node, e.g. srun --gpus=1 python benchmarks/memory_gpu.py")
    device, cases = ("cpu", SMOKE_CASES) if args.smoke else ("cuda", CASES)
    arch = architecture("tiny" if args.smoke else args.model)
    key = "cpu" if args.smoke else gpu_key(torch)
    methods = {"lora": LoraMethod(name="lora"), "sft": SftMethod(name="sft")}
    print(f"{'case':32} {'measured GiB':>13} {'planned GiB':>12} {'ratio':>7} {'seconds':>8}")
    for name, micro, seq, ckpt in cases:
        method = methods[name]
        items = MemoryModel(arch, method, seq, key).items(0, 1, 1, micro, ckpt)
        planned = sum(b for n, b in items if n != "runtime overhead")
        start = time.perf_counter()
        measured = run_case(torch, transformers, peft, arch, method, micro, seq, ckpt, device, args.steps)
        label = f"{name} mb{micro} seq{seq}{' ckpt' if ckpt else ''}"
        ratio = f"{measured / planned:7.3f}" if measured else "      -"
        print(f"{label:32} {measured / GIB:13.2f} {planned / GIB:12.2f} {ratio} {time.perf_counter() - start:8.1f}")
        if not args.smoke:
            print("    planned: " + ", ".join(f"{n} {b / GIB:.2f}" for n, b in items if n != "runtime overhead"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
