"""Bad input: one line per problem naming the field, exit 2, no traceback, nothing written."""

from __future__ import annotations

import textwrap

import pytest

from ftc.compiler.cli import main

EXAMPLE = ["cluster=example"]

CASES = [
    # (overrides, the fragment the one error line must hold)
    (["model.urn=meta/llama-3.1-8b-instruct"], "model.urn: Version is not specified in the config URN"),
    (["model.urn=meta/llama-3.1-9b-instruct@v1.0.0+H100"], "nearest: meta/llama-3.1-8b-instruct@v1.0.0+H100"),
    (["model.urn=llama"], "model.urn: 'llama' is not a config URN"),
    (["model.urn=meta/llama-3.1-8b-instruct@v1.0.0+A100", *EXAMPLE], "set cluster.partition=a100"),
    (["model=llama9b"], "model: unknown option 'llama9b'"),
    (["method=ppo"], "method: unknown option 'ppo'"),
    (["method.lora.adpter_dim=8"], "method.lora.adpter_dim: unknown field; did you mean method.lora.adapter_dim?"),
    (["foo=1"], "foo: unknown field"),
    (["+method.lora.rank=8"], "method.lora.rank: unknown field"),
    (["method.epochs=three"], "method.epochs: input should be a valid integer"),
    (["method.epochs=0"], "method.epochs: input should be greater than or equal to 1"),
    (["method.batch_size=-4"], "method.batch_size: input should be greater than or equal to 1"),
    (["method.learning_rate=0"], "method.learning_rate: input should be greater than 0"),
    (["method.lora.adapter_dim=12"], "method.lora.adapter_dim: must be a power of 2 up to 256 (got 12)"),
    (["method.lora.adapter_dim=512"], "method.lora.adapter_dim: must be a power of 2 up to 256 (got 512)"),
    (["method.lora.adapter_dropout=1.0"], "method.lora.adapter_dropout: input should be less than 1"),
    (["method.lora.target_modules=[qkv]"], "method.lora.target_modules: 'qkv' matches no linear layer of ftc/tiny-llama"),
    (["method=grpo", "method.reward.kind=regex"], "method.reward: reward kind regex needs method.reward.pattern"),
    (["method=grpo", "method.finetuning_type=all_weights", "model=llama8b", *EXAMPLE],
     "method.finetuning_type: meta/llama-3.1-8b-instruct@v1.0.0+H100 does not support grpo/all_weights"),
    (["model=llama8b"], "cluster.partition: meta/llama-3.1-8b-instruct@v1.0.0 has no config for CPU GPUs"),
    (["model=llama8b", "resources.tensor_parallel=3", *EXAMPLE], "resources.tensor_parallel"),
    (["model=llama8b", "resources.gpus_per_node=16", *EXAMPLE], "resources.gpus_per_node"),
    (["model=llama8b", "resources.nodes=32", *EXAMPLE], "resources.nodes"),
    (["model=llama8b", "resources.time=3-00:00:00", *EXAMPLE], "resources.time: 3-00:00:00 exceeds partition h100's limit"),
    (["resources.time=soon"], "resources.time: must be a Slurm time"),
    (["resources.zero_stage=5"], "resources.zero_stage"),
    (["model=llama8b", *EXAMPLE, "cluster.partition=v100"], "cluster.partition: unknown partition 'v100'"),
    (["model=llama8b", *EXAMPLE, "method.batch_size=10", "resources.micro_batch_size=4", "resources.gpus_per_node=1"],
     "method.batch_size: 10 is not divisible"),
    (["model=llama8b", *EXAMPLE, "data.max_seq_length=100000"], "data.max_seq_length: 100000 exceeds 4096"),
    (["model=llama70b", "method=sft", *EXAMPLE, "resources.nodes=1", "resources.gpus_per_node=1",
      "resources.zero_stage=0", "resources.micro_batch_size=1", "resources.gradient_checkpointing=true"],
     "GiB per GPU on h100-80gb"),
    (["cluster.setup=[rm -rf /]"], "cluster.setup: set in the site's config files"),
    (["cluster.template_dir=/tmp"], "cluster.template_dir: set in the site's config files"),
    (["model=llama8b", *EXAMPLE, "cluster.container.kind=pyxis"], "cluster.container.kind: set in the site's config"),
    (["name=my job"], "name: must start with a letter or digit"),
    (["data=custom"], "no value given"),
    (["data.path=/nonexistent/ftc-data"], "/nonexistent/ftc-data"),
    (["method.learning_rate=["], "override: "),
    (["method.lora.adapter_dim=32", "strict=true"], "strict=true turns warnings into errors"),  # 400 demo rows
    (["--dry"], "unknown option --dry"),
    (["model.training_options.CPU=[]"], "model.training_options.CPU: set in the site's config files"),
]


def _run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("overrides,fragment", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_clear_line(overrides, fragment, output_root, capsys):
    code, out, err = _run([*overrides, "dry_run=true"], capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert lines and all(line.startswith("ftc: error: ") for line in lines), err  # one line per problem
    assert fragment in lines[0]
    assert "Traceback" not in err and out == ""
    assert not output_root.exists(), "a refused request wrote files"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An admin's site folder, as FTC_SITE_CONFIG points at one."""
    root = tmp_path / "site"
    monkeypatch.setenv("FTC_SITE_CONFIG", str(root))
    return root


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_lora_on_an_all_weights_only_config(site, output_root, capsys):
    _write(site / "model" / "fullonly.yaml", """\
        namespace: acme
        name: full-only
        version: v1.0.0
        path: /models/full-only
        architecture: {family: llama, parameters: 123200, layers: 2, hidden_size: 64, attention_heads: 4,
                       kv_heads: 2, intermediate_size: 128, vocab_size: 384, max_seq_length: 512}
        training_options:
          CPU:
            - {training_type: sft, finetuning_type: all_weights, num_gpus: 1, max_seq_length: 512}
        """)
    code, _, err = _run(["model=fullonly", "method=lora", "dry_run=true"], capsys)
    assert code == 2
    assert "method.finetuning_type: acme/full-only@v1.0.0+CPU does not support sft/lora (supports sft/all_weights)" in err
    assert not output_root.exists()


def test_cluster_file_with_a_missing_field(site, output_root, capsys):
    _write(site / "cluster" / "broken.yaml", """\
        name: broken
        executor: slurm
        partition: gpu
        """)
    code, _, err = _run(["cluster=broken", "dry_run=true"], capsys)
    assert code == 2
    assert err.strip() == "ftc: error: cluster.partitions: required field is missing"
    assert not output_root.exists()


def test_cluster_file_with_a_container_but_no_image(site, output_root, capsys):
    _write(site / "cluster" / "pyxis.yaml", """\
        defaults: [example, _self_]
        container: {kind: pyxis}
        """)
    code, _, err = _run(["model=llama8b", "cluster=pyxis", "dry_run=true"], capsys)
    assert code == 2
    assert err.strip() == "ftc: error: cluster.container.image: container kind pyxis needs cluster.container.image"
    assert not output_root.exists()


def test_template_with_an_undefined_variable(site, output_root, tmp_path, capsys):
    templates = tmp_path / "templates"
    _write(templates / "job.sbatch.j2", """\
        {% extends "ftc/job.sbatch.j2" %}
        {% block setup %}module load {{ cuda_version }}
        {% endblock %}
        """)
    _write(site / "cluster" / "site.yaml", f"""\
        defaults:
          - local
          - _self_
        name: site
        template_dir: {templates}
        """)
    code, _, err = _run(["cluster=site", "dry_run=true"], capsys)
    assert code == 2
    assert err.strip() == "ftc: error: template job.sbatch.j2: 'cuda_version' is undefined"
    assert not output_root.exists()


def test_template_with_a_syntax_error(site, output_root, tmp_path, capsys):
    templates = tmp_path / "templates"
    _write(templates / "job.sbatch.j2", "{% extends 'ftc/job.sbatch.j2' %}\n{% block setup %}{% if %}{% endblock %}\n")
    _write(site / "cluster" / "site.yaml", f"defaults: [local, _self_]\nname: site\ntemplate_dir: {templates}\n")
    code, _, err = _run(["cluster=site", "dry_run=true"], capsys)
    assert code == 2
    assert f"{templates}/job.sbatch.j2:2: template syntax error" in err
    assert not output_root.exists()
