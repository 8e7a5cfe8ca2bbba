"""model=custom model.path=DIR: a user's folder planned from its real architecture, with a stable URN;
model.path on a shipped model checked against it; the site's policy on users' models."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import REPO
from model_folders import SUPPORTED

from ftc.compiler.config.compose import load_job
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import compile_job

from site_files import admin_site

pytestmark = pytest.mark.train  # the folders are built with transformers


def plan(*args: str):
    job, resolved = load_job(list(args))
    return compile_job(job, resolved).plan


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_a_custom_folder_plans_from_its_own_architecture(model_folders, output_root, name):
    built = model_folders[name]
    p = plan("model=custom", f"model.path={built['path']}")
    arch = p.job.model.architecture
    assert arch.parameters == built["num_parameters"]
    assert arch.sources["parameters"].startswith("safetensors") and arch.sources["layers"] == "config.json num_hidden_layers"
    config_hash = p.model_urn.split("@")[1].split("+")[0]
    assert p.model_urn == f"local/{name}@{config_hash}+CPU" and len(config_hash) == 12
    assert p.run_dir.split("/")[-2].startswith(f"{name}-")


def test_the_urn_follows_the_config_not_the_weights(model_folders, tmp_path, output_root):
    folder = tmp_path / "qwen2-tiny"
    shutil.copytree(model_folders["qwen2-tiny"]["path"], folder)
    first = plan("model=custom", f"model.path={folder}").model_urn
    assert plan("model=custom", f"model.path={folder}").model_urn == first
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    assert plan("model=custom", f"model.path={folder}").model_urn != first


def test_a_shipped_model_on_another_folder_says_what_differs(model_folders, output_root):
    with pytest.raises(UserError) as err:
        plan("model=llama8b", "cluster=example", f"model.path={model_folders['qwen2-tiny']['path']}")
    line = str(err.value)
    assert "does not hold meta/llama-3.1-8b-instruct" in line and "layers 32 in the model file, 2 in config.json" in line
    assert "model=custom" in line and "\n" not in line


def test_the_site_decides(model_folders, tmp_path, monkeypatch, output_root):
    path = model_folders["llama-tiny"]["path"]
    closed = admin_site(tmp_path / "closed", monkeypatch, "local", {"user_models": False}, name="closed")
    with pytest.raises(UserError, match="does not allow users' own models"):
        plan("model=custom", f"model.path={path}", closed)
    allowed = tmp_path / "project" / "models"
    allowed.mkdir(parents=True)
    fenced = admin_site(tmp_path / "fenced", monkeypatch, "local", {"model_paths": [str(allowed)]}, name="fenced")
    with pytest.raises(UserError, match="outside the folders cluster"):
        plan("model=custom", f"model.path={path}", fenced)
    (allowed / "escape").symlink_to(path)  # a link under the allowed folder that leads outside it
    with pytest.raises(UserError, match=r"resolved to .*outside the folders"):
        plan("model=custom", f"model.path={allowed / 'escape'}", fenced)
    shutil.copytree(path, allowed / "mine")
    assert plan("model=custom", f"model.path={allowed / 'mine'}", fenced).job.model.name == "mine"


def test_unsupported_is_refused_by_the_cli_with_nothing_written(model_folders, ftc, output_root):
    result = ftc("model=custom", f"model.path={model_folders['bert-tiny']['path']}", "dry_run=true")
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "encoder-only" in result.err and "Traceback" not in result.err
    assert not output_root.exists()


def test_configs_lists_the_users_models(model_folders, tmp_path, monkeypatch, ftc):
    allowed = tmp_path / "models"
    allowed.mkdir()
    shutil.copytree(model_folders["phi3-tiny"]["path"], allowed / "phi3-tiny")
    shutil.copytree(model_folders["t5-tiny"]["path"], allowed / "t5-tiny")
    site = tmp_path / "site" / "cluster"
    site.mkdir(parents=True)
    local = yaml.safe_load((REPO / "conf" / "cluster" / "local.yaml").read_text())  # the site's default cluster
    (site / "local.yaml").write_text(yaml.safe_dump({**local, "model_paths": [str(allowed)]}))
    result = ftc("configs", env={"FTC_SITE_CONFIG": str(site.parent)})
    assert result.code == 0, result.err
    assert f"DIR under {allowed}" in result.out
    assert f"{allowed / 'phi3-tiny'}  local/phi3-tiny@" in result.out and "(phi3, " in result.out
    assert f"{allowed / 't5-tiny'}  refused: " in result.out and "encoder-decoder" in result.out


def test_a_folder_without_its_tokenizer_is_refused(model_folders, tmp_path, output_root):
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(model_folders["gemma-tiny"]["path"], folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(UserError, match="has no tokenizer"):
        plan("model=custom", f"model.path={folder}")
