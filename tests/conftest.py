"""Shared fixtures: an isolated output root and a way to run the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CI_SITE = REPO / ".ci" / "site"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def output_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("FTC_OUTPUT_ROOT", str(root))
    return root


@pytest.fixture
def ftc(output_root):
    """Run `python -m ftc ARGS` in a subprocess; returns code, stdout and stderr."""

    def run(*args: str, env: dict | None = None, timeout: float = 120) -> CliResult:
        full_env = {**os.environ, "FTC_OUTPUT_ROOT": str(output_root), **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "ftc", *args], capture_output=True, text=True, env=full_env, timeout=timeout
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory) -> dict[str, dict]:
    """Tiny random-init model folders of every supported architecture plus BERT, T5 and LLaVA (tests/model_folders.py)."""
    from model_folders import build

    return build(tmp_path_factory.mktemp("model-folders"))
