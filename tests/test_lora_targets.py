"""LoRA targets from the model's own linear layers: all-linear by default, names checked at compile time,
and on every supported architecture PEFT adapts exactly what the plan counted and trains (2 steps, CPU)."""

from __future__ import annotations

import json
import struct

import pytest
from model_folders import SUPPORTED

from ftc.compiler.config.compose import load_job
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import compile_job

pytestmark = pytest.mark.train


def plan(*args: str):
    job, resolved = load_job(list(args))
    return compile_job(job, resolved).plan


def test_named_targets_are_checked_against_the_models_own(model_folders, output_root):
    phi3 = f"model.path={model_folders['phi3-tiny']['path']}"
    with pytest.raises(UserError, match=r"'q_proj' matches no linear layer of local/phi3-tiny; its linear layers are qkv_proj"):
        plan("model=custom", phi3, "method.lora.target_modules=[q_proj]")
    mixtral = f"model.path={model_folders['mixtral-tiny']['path']}"
    with pytest.raises(UserError, match="'w1' matches no linear layer.*routed experts are fused"):
        plan("model=custom", mixtral, "method.lora.target_modules=[w1]")
    with pytest.raises(UserError, match="is not a module name"):
        plan("model=custom", phi3, "method.lora.target_modules=['a b']")
    named = plan("model=custom", phi3, "method.lora.target_modules=[qkv_proj,down_proj]")
    assert named.lora_targets == ["qkv_proj", "down_proj"]


def test_a_target_in_only_some_layers_warns(model_folders, tmp_path, output_root):
    import shutil

    folder = tmp_path / "qwen2-moe-dense-first"
    shutil.copytree(model_folders["qwen2-moe-tiny"]["path"], folder)
    # layer 0 dense (mlp.gate_proj...), layer 1 routed: the dense MLP's kinds are in one layer of two.
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    config.mlp_only_layers = [0]
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    p = plan("model=custom", f"model.path={folder}", "method.lora.target_modules=[q_proj,shared_expert_gate]")
    assert any("'shared_expert_gate' is in only 1 of local/qwen2-moe-dense-first's 2 layers" in w for w in p.warnings)


def _adapter_kinds(folder) -> set[str]:
    raw = (folder / "adapter_model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    names = [n for n in json.loads(raw[8:8 + length]) if n != "__metadata__"]
    return {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names}


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_peft_adapts_what_the_plan_counted_and_trains(model_folders, output_root, tmp_path, name):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from ftc.runtime.methods import lora_config
    from ftc.runtime.model_check import check_loaded, check_trainable

    path = model_folders[name]["path"]
    p = plan("model=custom", f"model.path={path}")
    assert p.lora_targets and p.trainable_parameters > 0
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    check_loaded(p, model, path)
    peft_model = get_peft_model(model, lora_config(p))
    check_trainable(p, peft_model)  # raises when PEFT's count differs
    optimizer = torch.optim.AdamW([q for q in peft_model.parameters() if q.requires_grad], lr=1e-2)
    ids = torch.randint(4, 384, (2, 16), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.isfinite(loss)
    peft_model.save_pretrained(tmp_path / "adapter")
    kinds = _adapter_kinds(tmp_path / "adapter")
    assert kinds == {k.rsplit(".", 1)[-1] for k in p.lora_targets}
    if name == "phi3-tiny":
        assert {"qkv_proj", "gate_up_proj"} <= kinds


def test_the_runtime_refuses_a_model_or_adapter_unlike_the_plan(model_folders, output_root):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from ftc.runtime.methods import lora_config
    from ftc.runtime.model_check import check_loaded, check_trainable

    p = plan("model=custom", f"model.path={model_folders['llama-tiny']['path']}")
    other = AutoModelForCausalLM.from_pretrained(model_folders["qwen2-untied"]["path"], dtype=torch.float32)
    with pytest.raises(UserError) as err:
        check_loaded(p, other, "/somewhere")
    assert "is not the one planned (parameters" in str(err.value) and "\n" not in str(err.value)
    narrow = p.model_copy(update={"lora_targets": ["q_proj"]})
    model = AutoModelForCausalLM.from_pretrained(model_folders["llama-tiny"]["path"], dtype=torch.float32)
    with pytest.raises(UserError, match="trains .* parameters here, the plan counted"):
        check_trainable(p, get_peft_model(model, lora_config(narrow)))
