"""The model-folder reader: tiny random-init folders of every supported architecture, read without torch,
give transformers' own parameter count; unsupported ones and broken folders are one line each."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from model_folders import SUPPORTED, UNSUPPORTED

from ftc.compiler.errors import UserError
from ftc.compiler.modelfolder import read_model_folder

pytestmark = pytest.mark.train  # the folders are built with transformers


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_architecture_and_parameter_count_equal_transformers(model_folders, name):
    built = model_folders[name]
    info = read_model_folder(built["path"])
    assert info.num_parameters == built["num_parameters"]
    assert info.model_type == built["model_type"]
    assert info.name == name
    assert sorted(k.rsplit(".", 1)[-1] for k in info.linear) == built["linear"]  # PEFT's all-linear kinds
    config = json.loads(Path(built["path"], "config.json").read_text())
    assert (info.layers, info.hidden_size, info.vocab_size) == (2, 32, 384)
    assert info.head_dim == (config.get("head_dim") or 8)
    assert info.tie_embeddings == config["tie_word_embeddings"]
    assert info.sources["parameters"].startswith("safetensors")
    if name == "llama-tiny":  # saved in shards: the index names them
        assert len(list(Path(built["path"]).glob("model-*.safetensors"))) > 1


def test_moe_and_window_numbers(model_folders):
    mixtral = read_model_folder(model_folders["mixtral-tiny"]["path"])
    assert (mixtral.experts, mixtral.experts_per_token, mixtral.shared_experts) == (4, 2, 0)
    qwen = read_model_folder(model_folders["qwen2-moe-tiny"]["path"])
    assert (qwen.experts, qwen.shared_experts, qwen.moe_intermediate_size) == (4, 1, 24)
    assert read_model_folder(model_folders["gemma2-tiny"]["path"]).sliding_window == 64
    assert "qkv_proj" in read_model_folder(model_folders["phi3-tiny"]["path"]).linear


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_is_one_line_naming_the_kind(model_folders, name):
    with pytest.raises(UserError) as err:
        read_model_folder(model_folders[name]["path"])
    line = str(err.value)
    assert "\n" not in line and name in line and UNSUPPORTED[name][1] in line and "llama" in line


def _copy(model_folders, tmp_path, name="qwen2-untied"):
    folder = tmp_path / name
    shutil.copytree(model_folders[name]["path"], folder)
    return folder


def test_weights_that_disagree_with_config_are_refused(model_folders, tmp_path):
    folder = _copy(model_folders, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    with pytest.raises(UserError, match="weights and config.json disagree"):
        read_model_folder(str(folder))
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(UserError, match="lack model.layers.2"):
        read_model_folder(str(folder))


def _header(folder, length: int, body: bytes = b"") -> None:
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", length) + body)


@pytest.mark.parametrize("case, expected", [
    ("empty", "model.path: empty"),
    ("control", "not one line"),
    ("huge", "not one line"),
    ("missing config", "has no config.json"),
    ("config not an object", "not a JSON object"),
    ("config wrong types", "num_hidden_layers must be a whole number"),
    ("config bool as int", "hidden_size must be a whole number"),
    ("config non-finite", "not JSON"),
    ("config huge", "larger than"),
    ("truncated header", "truncated"),
    ("header claims huge length", "header claims"),
    ("header not json", "header is not JSON"),
    ("offsets outside", "outside the file"),
    ("index escapes", "outside the folder"),
])
def test_hostile_folders_are_one_line(model_folders, tmp_path, case, expected):
    folder = _copy(model_folders, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    path = str(folder)
    if case == "empty":
        path = ""
    elif case == "control":
        path += "\n/x"
    elif case == "huge":
        path = "/" + "a" * 5000
    elif case == "missing config":
        (folder / "config.json").unlink()
    elif case == "config not an object":
        (folder / "config.json").write_text("[1, 2]")
    elif case == "config wrong types":
        (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "2"}))
    elif case == "config bool as int":
        (folder / "config.json").write_text(json.dumps({**config, "hidden_size": True}))
    elif case == "config non-finite":
        (folder / "config.json").write_text(json.dumps(config)[:-1] + ', "rope_theta": NaN}')
    elif case == "config huge":
        (folder / "config.json").write_text(json.dumps({**config, "pad": "x" * 2_000_000}))
    elif case == "truncated header":
        _header(folder, 400, b"{")
    elif case == "header claims huge length":
        _header(folder, 2**63, b"{}")
    elif case == "header not json":
        _header(folder, 3, b"{x}")
    elif case == "offsets outside":
        body = json.dumps({"model.norm.weight": {"dtype": "F32", "shape": [32], "data_offsets": [0, 128]}}).encode()
        _header(folder, len(body), body)
    elif case == "index escapes":
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../model.safetensors"}}))
    with pytest.raises(UserError) as err:
        read_model_folder(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_quotes_backslashes_and_a_symlink(model_folders, tmp_path):
    odd = tmp_path / "my \"model\" \\ 'x'"
    shutil.copytree(model_folders["qwen2-tiny"]["path"], odd)
    info = read_model_folder(str(odd))
    assert info.num_parameters == model_folders["qwen2-tiny"]["num_parameters"]
    assert info.name == "my-model-x"
    link = tmp_path / "link"
    link.symlink_to(odd)
    assert read_model_folder(str(link)).path == str(odd)  # read where it really is (the site's path policy too)
