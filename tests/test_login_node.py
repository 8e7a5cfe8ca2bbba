"""The login-node path never imports the training stack, not even indirectly."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "peft", "trl", "deepspeed", "datasets", "accelerate", "tokenizers"]

# Behave as a login node where the training stack is not installed: importing any of it fails.
LOGIN_NODE_PRELUDE = f"""
import importlib.abc, json, sys
HEAVY = {HEAVY!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError("login node: no " + name)

sys.meta_path.insert(0, Block())
"""

PROBE = """
from ftc.compiler.cli import run
for args in {commands!r}:
    code = run(args)
    assert code == 0, (args, code)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))))
"""


def test_compile_paths_import_no_training_stack(output_root):
    commands = [
        ["method=lora", "model=llama8b", "cluster=example", "dry_run=true"],
        ["-m", "method.learning_rate=1e-4,2e-4", "model=llama8b", "cluster=example", "dry_run=true"],
        ["configs"],
        ["schema"],
        ["status"],
    ]
    code = LOGIN_NODE_PRELUDE + PROBE.format(commands=commands)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
