"""The `train` marker is what .ci/run splits on: tests without it run two at a time, so a test file
that needs the training stack (it skips without torch, trl, peft, transformers or deepspeed) must
carry it, or two torch processes would share the two cores and the timing tests would measure each other."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TRAIN_STACK = {"torch", "trl", "peft", "transformers", "deepspeed"}


def _skips_without_training_stack(tree: ast.Module) -> list[str]:
    """The training-stack modules a test file importorskips at module level."""
    found = []
    for node in tree.body:
        call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "importorskip"
                and call.args and isinstance(call.args[0], ast.Constant)
                and str(call.args[0].value).split(".")[0] in TRAIN_STACK):
            found.append(call.args[0].value)
    return found


def _module_marks(tree: ast.Module) -> set[str]:
    """The marker names in a module-level `pytestmark = ...` (one mark or a list)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute) and n.attr in ("train", "slurm")}
    return set()


def test_every_file_that_needs_the_training_stack_is_marked_train():
    unmarked = []
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        needs = _skips_without_training_stack(tree)
        if needs and "train" not in _module_marks(tree):
            unmarked.append(f"{path.name} (importorskip {', '.join(needs)})")
    assert not unmarked, f"add `pytestmark = pytest.mark.train` to: {'; '.join(unmarked)}"


def test_the_check_sees_a_file_that_needs_torch_and_is_not_marked():
    tree = ast.parse('import pytest\ntorch = pytest.importorskip("torch")\n')
    assert _skips_without_training_stack(tree) == ["torch"] and _module_marks(tree) == set()
    marked = ast.parse('import pytest\npytest.importorskip("trl")\npytestmark = [pytest.mark.slurm, pytest.mark.train]\n')
    assert _skips_without_training_stack(marked) == ["trl"] and _module_marks(marked) == {"slurm", "train"}
