"""Site folders: searched before ftc's own conf/ for every group; inheritance; templates/ found unnamed."""

from __future__ import annotations

import json
import textwrap

import pytest

from ftc.compiler.cli import run as cli_run


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.setenv("FTC_SITE_CONFIG", str(root))
    return root


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _dry_run(args, capsys, output_root):
    code = cli_run([*args, "dry_run=true"])
    out = capsys.readouterr().out
    assert code == 0, out
    [plan_file] = output_root.rglob("plan.json")
    return json.loads(plan_file.read_text()), out


def _llama8b_copy(weights: str) -> str:
    from ftc.compiler.config.sites import shipped_conf

    text = (shipped_conf() / "model" / "llama8b.yaml").read_text()
    return text.replace("path: ${oc.env:FTC_MODELS,/models}/meta-llama/Llama-3.1-8B-Instruct", f"path: {weights}")


def test_a_site_model_with_a_shipped_name_replaces_it(site, output_root, capsys):
    _write(site / "model" / "llama8b.yaml", _llama8b_copy("/site/weights/llama-8b"))
    plan, _ = _dry_run(["model=llama8b", "cluster=example"], capsys, output_root)
    assert plan["job"]["model"]["path"] == "/site/weights/llama-8b"


def test_a_site_model_by_urn_uses_the_site_file(site, output_root, capsys):
    _write(site / "model" / "llama8b.yaml", _llama8b_copy("/site/weights/llama-8b"))
    plan, _ = _dry_run(["model.urn=meta/llama-3.1-8b-instruct@v1.0.0+H100", "cluster=example"], capsys, output_root)
    assert plan["job"]["model"]["path"] == "/site/weights/llama-8b"


@pytest.mark.parametrize("group,option,key,value", [
    ("method", "lora", "learning_rate", 0.0003),
    ("resources", "auto", "headroom", 0.2),
])
def test_a_site_file_replaces_a_shipped_one_in_every_group(site, output_root, capsys, group, option, key, value):
    from ftc.compiler.config.sites import shipped_conf

    text = (shipped_conf() / group / f"{option}.yaml").read_text()
    _write(site / group / f"{option}.yaml", "\n".join(
        f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines()) + "\n")
    plan, _ = _dry_run(["cluster=example", "model=llama8b"], capsys, output_root)
    assert plan["job"][group][key] == value


def test_a_renamed_site_model_inherits_through_defaults(site, output_root, capsys):
    _write(site / "model" / "ours8b.yaml", """\
        defaults: [llama8b, _self_]
        namespace: acme
        path: /site/weights/ours-8b
        """)
    plan, _ = _dry_run(["model.urn=acme/llama-3.1-8b-instruct@v1.0.0+A100", "cluster=example",
                        "cluster.partition=a100"], capsys, output_root)
    assert plan["job"]["model"]["path"] == "/site/weights/ours-8b"
    assert plan["job"]["model"]["namespace"] == "acme"
    # and every other user's URN still resolves
    assert cli_run(["configs", "--urns"]) == 0
    out = capsys.readouterr().out
    assert "acme/llama-3.1-8b-instruct@v1.0.0+H100" in out
    assert "meta/llama-3.1-8b-instruct@v1.0.0+H100" in out
    assert f"model=ours8b: {site}/model/ours8b.yaml (added by the site)" in out


def test_configs_names_what_a_site_replaced(site, capsys):
    _write(site / "model" / "llama8b.yaml", _llama8b_copy("/w"))
    assert cli_run(["configs"]) == 0
    out = capsys.readouterr().out
    assert f"model=llama8b: {site}/model/llama8b.yaml replaces ftc's " in out


def test_a_missing_site_folder_is_one_line(tmp_path, ftc):
    result = ftc("configs", env={"FTC_SITE_CONFIG": str(tmp_path / "nowhere")})
    assert (result.code, result.err) == (2, f"ftc: error: FTC_SITE_CONFIG: no such folder {tmp_path}/nowhere\n")


def test_a_site_file_that_is_not_yaml_names_its_line(site, ftc):
    _write(site / "method" / "lora.yaml", "name: lora\nname: again\n")
    result = ftc("method=lora", "dry_run=true")
    assert result.code == 2 and result.err.startswith(f"ftc: error: {site}/method/lora.yaml:2: "), result.err


def test_the_site_templates_folder_is_used_without_naming_it(site, output_root, capsys):
    _write(site / "templates" / "job.sbatch.j2", """\
        {% extends "ftc/job.sbatch.j2" %}
        {% block setup %}{{ super() }}echo site-template-was-here
        {% endblock %}
        """)
    _, out = _dry_run(["cluster=example", "model=llama8b"], capsys, output_root)
    assert "echo site-template-was-here" in out


def test_a_relative_template_dir_resolves_against_the_site_folder(site, output_root, capsys):
    _write(site / "tmpl" / "job.sbatch.j2", """\
        {% extends "ftc/job.sbatch.j2" %}
        {% block setup %}echo relative-template
        {% endblock %}
        """)
    _write(site / "cluster" / "rel.yaml", "defaults: [example, _self_]\nname: rel\ntemplate_dir: tmpl\n")
    _, out = _dry_run(["cluster=rel", "model=llama8b"], capsys, output_root)
    assert "echo relative-template" in out


def test_a_relative_template_dir_that_is_nowhere_is_one_line(site, ftc, output_root):
    _write(site / "cluster" / "rel.yaml", "defaults: [example, _self_]\nname: rel\ntemplate_dir: tmpl\n")
    result = ftc("cluster=rel", "model=llama8b", "dry_run=true")
    assert result.err == f"ftc: error: cluster.template_dir: no such folder tmpl (looked in {site}/tmpl)\n"
    assert result.code == 2 and not output_root.exists()


def test_super_keeps_the_quoting_of_the_block_it_renders(site, tmp_path, monkeypatch, capsys):
    import subprocess

    hostile = tmp_path / "runs $(touch PWNED) `id` 'q' \"x"  # no backslash: Slurm's parser refuses it (render/directives.py)
    monkeypatch.setenv("FTC_OUTPUT_ROOT", str(hostile))
    _write(site / "templates" / "job.sbatch.j2", """\
        {% extends "ftc/job.sbatch.j2" %}
        {% block environment %}{{ super() }}export SITE_NAME={{ output_name }}
        {% endblock %}
        {% block launch %}{% include "extra.sh.j2" %}{{ super() }}{% endblock %}
        """)
    _write(site / "templates" / "extra.sh.j2", "echo {{ run_dir }}\n")
    assert cli_run(["cluster=example", "model=llama8b", "dry_run=true"]) == 0
    [script] = hostile.rglob("job.sbatch")
    text = script.read_text()
    env_part = text[text.index("export FTC_RUN_DIR="):text.index("export SITE_NAME=")]
    probe = tmp_path / "probe.sh"
    probe.write_text(f"set -eu\ncd {tmp_path}\n{env_part}\nprintf '%s' \"$FTC_RUN_DIR\"\n")
    out = subprocess.run(["bash", str(probe)], capture_output=True, text=True, check=True).stdout
    assert out.startswith(str(hostile)) and not (tmp_path / "PWNED").exists()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
