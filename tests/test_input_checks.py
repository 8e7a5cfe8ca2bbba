"""What a request names is checked where the login node can see it, without importing anything."""

from __future__ import annotations

import sys

import pytest

from ftc.compiler.checks.inputs import check_reward_function, model_path_warnings
from ftc.compiler.cli import main
from ftc.compiler.config.compose import load_job
from ftc.compiler.errors import UserError


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A reward package whose import would fail loudly (as one importing torch would on a login node)."""
    root = tmp_path / "lib"
    (root / "myrewards").mkdir(parents=True)
    (root / "myrewards" / "__init__.py").write_text("raise RuntimeError('imported at compile time')\n")
    (root / "myrewards" / "score.py").write_text(
        "import torch\n\ndef length_reward(completions, **kwargs):\n    return [len(c) for c in completions]\n"
        "alias = length_reward\n")
    monkeypatch.syspath_prepend(str(root))
    return root


def test_a_reward_function_is_found_without_importing_its_module(package):
    check_reward_function("method.reward.function", "myrewards.score:length_reward")
    check_reward_function("method.reward.function", "myrewards.score:alias")
    assert "myrewards" not in sys.modules and "myrewards.score" not in sys.modules


@pytest.mark.parametrize("spec,why", [
    ("myrewards.score:missing", "defines no 'missing'"),
    ("myrewards.nothere:f", "no module 'myrewards.nothere'"),
    ("not_a_module_anywhere:f", "no module 'not_a_module_anywhere'"),
])
def test_an_unresolvable_reward_function_is_one_line(package, spec, why):
    with pytest.raises(UserError) as exc:
        check_reward_function("method.reward.function", spec)
    (line,) = exc.value.problems
    assert line.startswith("method.reward.function: ") and why in line
    assert "myrewards" not in sys.modules


def test_a_grpo_run_with_a_function_reward_compiles_without_importing_it(package, output_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["method=grpo", "method.reward.kind=function", "method.reward.function=myrewards.score:length_reward",
              "dry_run=true"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert "myrewards" not in sys.modules


def _hub(path: str, output_root) -> list[str]:
    job, _ = load_job(["model=llama8b", "cluster=example", f"model.path={path}", f"output_root={output_root}"])
    return model_path_warnings(job)


def test_a_hub_path_the_login_node_can_see_must_exist(tmp_path, output_root):
    (tmp_path / "weights").mkdir()
    assert _hub(str(tmp_path / "weights"), output_root) == []
    with pytest.raises(UserError) as exc:
        _hub(str(tmp_path / "missing"), output_root)
    assert exc.value.problems[0].startswith(f"model.path: no such folder: {tmp_path / 'missing'}")


def test_a_hub_path_that_cannot_be_checked_is_a_warning(output_root):
    (warning,) = _hub("/ftc-not-mounted-here/meta/llama", output_root)
    assert warning.startswith("model.path: cannot check /ftc-not-mounted-here/meta/llama from this node")
    assert "/ftc-not-mounted-here is not here" in warning
    (warning,) = _hub("meta-llama/Llama-3.1-8B-Instruct", output_root)
    assert "not an absolute path" in warning


def test_strict_turns_the_unchecked_hub_path_into_an_error(output_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["model=llama8b", "cluster=example", "model.path=/ftc-not-mounted-here/x", "strict=true", "dry_run=true"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "model.path: cannot check" in err and "strict=true" in err
    assert not output_root.exists()
