"""The command line at first contact: Hydra's flags (--help, --cfg, --resolve, --package, --info, --version),
`ftc configs` by the names you type, run folders that name the model, and the sweep dry run's array script."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import ftc
from ftc.compiler.cli import COMMANDS, _doc_line, main
from ftc.compiler.config.compose import load_job
from ftc.compiler.planning.build import compile_job

REPO = Path(__file__).resolve().parents[1]
CI_SITE = REPO / ".ci" / "site"
HOSTILE = "a'b\"c\\d"  # quotes and a backslash
GROUP_DIRS = {g: sorted(p.stem for p in (REPO / "conf" / g).glob("*.yaml"))
              for g in ("model", "method", "data", "cluster", "resources")}


def _run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _refused(args, capsys) -> str:
    code, out, err = _run(args, capsys)
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ftc: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- help, version


def test_bare_ftc_prints_help_with_every_group_option_and_command(ftc):
    result = ftc()
    assert result.code == 0, result.err
    out = result.out
    for group, options in GROUP_DIRS.items():
        line = next(x for x in out.splitlines() if x.strip().startswith(f"{group} "))
        assert sorted(o.removesuffix(" (default)") for o in line.split(None, 1)[1].split(", ")) == options
    assert "  model      tiny (default)" in out and "method     lora (default)" in out
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(_doc_line(command))}$", out, re.MULTILINE)
    for flag in ("--cfg", "--resolve", "--package", "--info", "--shell-completion", "--version", "--multirun"):
        assert flag in out


def test_help_flags_print_the_same_help_and_nothing_runs(capsys, output_root):
    outputs = {_run([flag], capsys)[1] for flag in ("--help", "-h", "help")}
    assert len(outputs) == 1 and "Config groups" in outputs.pop()
    code, out, _ = _run(["model=llama8b", "--help"], capsys)
    assert code == 0 and "Config groups" in out
    assert not output_root.exists()


def test_help_lists_a_site_folders_cluster(capsys, monkeypatch):
    monkeypatch.setenv("FTC_SITE_CONFIG", str(CI_SITE))
    _, out, _ = _run(["--help"], capsys)
    cluster_line = next(x for x in out.splitlines() if x.startswith("  cluster "))
    assert "ci" in cluster_line.split(None, 1)[1].split(", ")


def test_version_names_ftc_and_hydra(capsys):
    import hydra

    code, out, _ = _run(["--version"], capsys)
    assert code == 0
    assert out.startswith(f"ftc {ftc.__version__} (Hydra {hydra.__version__}")


def test_hydra_help_says_which_hydra_flags_are_not_taken(capsys):
    code, out, _ = _run(["--hydra-help"], capsys)
    assert code == 0 and "--config-dir" in out and "--cfg" in out


# ---------------------------------------------------------------- --cfg, --resolve, --package


def test_cfg_job_is_the_composed_config_with_overrides_and_interpolations_kept(capsys, output_root):
    code, out, _ = _run(["--cfg", "job", "model=llama8b", "method.learning_rate=2e-4"], capsys)
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["model"]["name"] == "llama-3.1-8b-instruct"
    assert shown["method"]["learning_rate"] == 2e-4
    assert shown["name"] == "${data.name}-${method.name}"
    assert "training_options" not in shown["model"] and "hydra" not in shown
    assert not output_root.exists()


def test_cfg_resolve_gives_the_values_the_job_validates_from(capsys):
    code, out, _ = _run(["-c", "job", "--resolve", "model=llama8b", "method=dpo"], capsys)
    shown = yaml.safe_load(out)
    _, resolved = load_job(["model=llama8b", "method=dpo"])
    resolved["model"].pop("training_options")
    assert code == 0 and shown == resolved
    assert shown["name"] == "demo-dpo"


def test_cfg_all_adds_the_guard_rails_and_hydras_record(capsys):
    code, out, _ = _run(["--cfg=all", "model=llama8b", "method=sft"], capsys)
    shown = yaml.safe_load(out)
    assert code == 0
    assert shown["model"]["training_options"]["H100"][0]["training_type"] == "sft"
    assert shown["hydra"]["runtime"]["choices"]["method"] == "sft"
    assert {"path": "ftc.conf", "schema": "pkg", "provider": "main"} in shown["hydra"]["runtime"]["config_sources"]
    code, out, _ = _run(["--cfg", "hydra", "model=llama8b"], capsys)
    assert list(yaml.safe_load(out)) == ["hydra"]


def test_package_shows_one_part(capsys):
    code, out, _ = _run(["--cfg", "job", "-p", "method.lora", "method.lora.alpha=32"], capsys)
    assert code == 0
    assert yaml.safe_load(out) == {"adapter_dim": 8, "alpha": 32, "adapter_dropout": 0.1,
                                   "target_modules": "all-linear"}
    _, out, _ = _run(["--cfg", "job", "--package", "method.lora.alpha"], capsys)
    assert out == "16\n"


@pytest.mark.parametrize("args, expected", [
    (["--cfg", "jobs"], "--cfg: choose job, hydra or all (got 'jobs')"),
    (["--cfg"], "--cfg: needs a value"),
    (["--cfg="], "--cfg: needs a value"),
    (["--cfg", "job", "-p", "metod"], "--package: no 'metod' in the composed config (keys there: model,"),
    (["--cfg", "job", "-p", "method.lora.alpha.x"], "--package: no 'x' in 'method.lora.alpha' (keys there: none"),
    (["--cfg", "job", "method.learning_rate=1e-4,2e-4"], "--cfg: shows one config, but method.learning_rate has"),
    (["--cfg", "job", "method.lora.adpter_dim=8"], "method.lora.adpter_dim: unknown field; did you mean"),
    (["--resolve", "model=tiny"], "--resolve: goes with --cfg"),
    (["-p", "method"], "--package: goes with --cfg"),
    (["--info=everything"], "--info: choose all, searchpath, groups, choices (got 'everything')"),
    (["--config-dir", "/tmp"], "--config-dir: not taken by ftc: site folders go in $FTC_SITE_CONFIG"),
    (["-cp", "x"], "--config-path: not taken by ftc"),
    (["--cfg", "x" * 100_000], "--cfg: choose job, hydra or all (got 'xxxx"),
    (["--cfg", "job\x1b[2J\r"], "--cfg: choose job, hydra or all (got 'job\\x1b[2J\\r')"),
    (["--cfg", "job", "-p", HOSTILE], "--package: no " + repr(HOSTILE)),
    (["--cfg", "job", "-p", "nan"], "--package: no 'nan'"),
    (["--cfg", "job", "-p", ""], "--package: needs a value"),
    (["-sc", "install=fish"], "--shell-completion: use install=bash, install=zsh"),
    (["-sc", "query"], "--shell-completion: use install=bash"),
    (["--frobnicate"], "unknown option --frobnicate; see ftc --help"),
])
def test_bad_flags_get_one_line_and_exit_2(args, expected, capsys):
    line = _refused(args, capsys)
    assert line.startswith(f"ftc: error: {expected}"), line
    assert "\x1b" not in line and "\r" not in line


# ---------------------------------------------------------------- --info


def test_info_shows_search_path_groups_choices_and_site_folders(capsys, monkeypatch):
    monkeypatch.setenv("FTC_SITE_CONFIG", str(CI_SITE))
    code, out, _ = _run(["--info", "model=llama8b", "method=dpo"], capsys)
    assert code == 0
    path = out.split("Search path")[1].split("\n\n")[0]
    assert "pkg://ftc.conf" in path and f"file://{CI_SITE}" in path
    sites = out.split("Site folders ($FTC_SITE_CONFIG):\n")[1].split("\n\n")[0]
    assert sites.startswith(f"  {CI_SITE}  (cluster: ci") and "templates" not in sites.split("(")[1].split(":")[0]
    groups = out.split("Config groups and their options")[1].split("\n\n")[0]
    assert re.search(r"^  model +.*\*llama8b", groups, re.MULTILINE) and re.search(r"^  method +.*\*dpo", groups, re.MULTILINE)
    assert re.search(r"^  cluster +.*\bci\b", groups, re.MULTILINE)
    assert "model=llama8b method=dpo data=demo cluster=local resources=auto" in out.split("Choices")[1]


def test_info_parts_and_no_site_folders(capsys, monkeypatch):
    monkeypatch.delenv("FTC_SITE_CONFIG", raising=False)
    _, out, _ = _run(["--info", "choices", "model=tiny"], capsys)
    assert "Search path" not in out and "Config groups" not in out
    assert "model=tiny method=lora data=demo cluster=local resources=auto recipe=tiny-lora" in out
    _, out, _ = _run(["-i", "searchpath"], capsys)
    assert "none: set FTC_SITE_CONFIG=" in out and "Choices" not in out


def test_info_marks_a_missing_site_folder(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FTC_SITE_CONFIG", str(tmp_path / "nowhere"))
    _, out, _ = _run(["--info", "searchpath"], capsys)
    assert f"{tmp_path / 'nowhere'}  (missing: not a folder)" in out


# ---------------------------------------------------------------- ftc configs


def test_configs_group_by_the_names_you_type(ftc):
    result = ftc("configs")
    assert result.code == 0, result.err
    heads = [line for line in result.out.splitlines() if line and not line.startswith(" ")]
    pick = next(i for i, h in enumerate(heads) if h.startswith("Pick one"))
    names = [h.split()[0] for h in heads[:pick]]
    assert names == [m for m in GROUP_DIRS["model"] if m != "custom"]  # custom: a user's folder, listed below
    assert heads[pick + 1].startswith("Your own models: model=custom model.path=DIR")
    llama = next(h for h in heads if h.startswith("llama8b "))
    assert "meta/llama-3.1-8b-instruct@v1.0.0" in llama and "8.0B parameters" in llama
    block = result.out.split(llama + "\n")[1].split("\n\n")[0].splitlines()
    assert block[0] == "  +A100, +H100, +H200"
    assert re.match(r"^    sft +lora +1 node x 8 GPUs +TP 1 +max seq 4096$", block[1])
    assert "model.urn=" in heads[pick] and "--urns" in heads[pick]


def test_configs_one_name_and_a_typo(capsys):
    code, out, _ = _run(["configs", "tiny"], capsys)
    assert code == 0 and out.startswith("tiny  ftc/tiny-llama@v1.0.0") and "llama8b" not in out
    assert _refused(["configs", "llama9b"], capsys).startswith(
        "ftc: error: configs: no model config 'llama9b'; did you mean llama8b?")
    assert _refused(["configs", "--flat"], capsys) == \
        "ftc: error: configs: unknown option --flat; usage: ftc configs [NAME ...] [--urns]"


def test_configs_a_site_model_config(ftc, tmp_path):
    site = tmp_path / "site" / "model"
    site.mkdir(parents=True)
    text = (REPO / "conf" / "model" / "llama8b.yaml").read_text().replace("name: llama-3.1-8b-instruct", "name: my-llama")
    (site / "myllama.yaml").write_text(text)
    result = ftc("configs", "myllama", env={"FTC_SITE_CONFIG": str(tmp_path / "site")})
    assert result.code == 0, result.err
    assert result.out.startswith("myllama  meta/my-llama@v1.0.0")


# ---------------------------------------------------------------- names: run folders, sweep script


def _compile(*args):
    job, resolved = load_job(list(args))
    return compile_job(job, resolved)


def test_run_folder_names_the_model(output_root):
    tiny = _compile("model=tiny")
    llama = _compile("model=llama8b", "cluster=example")
    named = _compile("model=llama8b", "cluster=example", "name=email", "namespace=acme")
    assert Path(tiny.plan.run_dir) == output_root / "default" / "tiny-llama-demo-lora" / tiny.plan.run_id
    assert Path(llama.plan.run_dir) == output_root / "default" / "llama-3.1-8b-instruct-demo-lora" / llama.plan.run_id
    assert Path(named.plan.run_dir) == output_root / "acme" / "llama-3.1-8b-instruct-email" / named.plan.run_id


def test_status_names_runs_by_their_folder(ftc):
    assert ftc("model=tiny", "dry_run=true").code == 0
    assert ftc("model=llama8b", "cluster=example", "dry_run=true").code == 0
    result = ftc("status", "--all")
    assert result.code == 0, result.err
    names = sorted(line.split()[0] for line in result.out.splitlines()[1:])
    assert names == ["llama-3.1-8b-instruct-demo-lora", "tiny-llama-demo-lora"]


def test_sweep_dry_run_prints_the_array_script_it_wrote(ftc, output_root):
    result = ftc("-m", "model=llama8b", "cluster=example", "method.learning_rate=1e-4,2e-4", "dry_run=true")
    assert result.code == 0, result.err
    head, _, rest = result.out.partition("--- ")
    path, _, script = rest.partition("\n")
    assert Path(path).name == "sweep.sbatch" and Path(path).read_text() == script
    assert Path(path).parent.parent == output_root / "default" / "sweeps"
    assert "#SBATCH --array=0-1%2" in script
    run_dirs = sorted(str(p.parent) for p in output_root.glob("default/llama-3.1-8b-instruct-demo-lora/*/plan.json"))
    assert len(run_dirs) == 2 and all(f"  {d}\n" in script for d in run_dirs)
    assert head.count("\n[") == 2 and re.match(r"sweep ([0-9a-f]{10}): 2 point\(s\), .*; ftc compare \1 ", head)
    listed = json.loads(next((output_root / "default" / "sweeps").glob("*.json")).read_text())
    assert sorted(str(output_root / "default" / p["folder"]) for p in listed["points"]) == run_dirs


def test_sweep_dry_run_says_why_points_cannot_share_one_array(ftc, output_root):
    result = ftc("-m", "model=llama8b", "cluster=example", "resources.gpus_per_node=1,2", "dry_run=true")
    assert result.code == 0, result.err
    assert result.out.count("\n[") == 2 and "--- " not in result.out
    last = result.out.splitlines()[-1]
    assert last.startswith("no job array: sweep: point 1 (run ") and "--gpus-per-node=2" in last
    assert not list((output_root / "default" / "sweeps").glob("*/sweep.sbatch"))  # only the sweep's record
    submitted = ftc("-m", "model=llama8b", "cluster=example", "resources.gpus_per_node=1,2", "preflight=false")
    assert submitted.code == 2 and last.removeprefix("no job array: ") in submitted.err


def test_local_sweep_dry_run_says_there_is_no_array(ftc):
    result = ftc("-m", "method.learning_rate=1e-4,2e-4", "dry_run=true")
    assert result.code == 0, result.err
    assert "--- " not in result.out and "local executor: the points run one after another" in result.out
