"""Slurm reads every directive value exactly as ftc meant it, or ftc refuses the value.

Each hostile value (tests/hostile/directive_values.yaml, plus a hypothesis strategy) goes through each
field that lands on an `#SBATCH` line or in an `srun` option. A compile is either refused with one
line naming that field, or the real parsers read the rendered script back: `sbatch -vv --test-only`
(Slurm's own #SBATCH parser; it prints the options it parsed before it asks the controller anything)
must list exactly the options ftc rendered, each with exactly its value, and bash must hand `srun`
exactly the intended arguments.

Values enter as they would from the composed config (command line or site file alike), so the test
does not depend on Hydra's quoting; tests/test_hostile_corpus.py covers the command line itself.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ftc.compiler.checks.inputs import check_inputs
from ftc.compiler.config.compose import load_job
from ftc.compiler.config.fields import slurm_minutes
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.config.validation import format_validation_error
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import compile_job
from ftc.compiler.render.sbatch import sbatch_directives
from slurm_fixtures import CI_SITE, require_slurm

pytestmark = pytest.mark.slurm

VALUES = yaml.safe_load((Path(__file__).parent / "hostile" / "directive_values.yaml").read_text())
OPTION_LINE = re.compile(r"^sbatch: (\S+) *: (.*)$")
SBATCH_ONLY = {"test-only", "verbose"}
# How sbatch -vv prints an option whose value it rewrites.
SHOWN = {
    "open-mode": lambda v: v[0],
    "gres": lambda v: f"gres:{v}",
    "signal": lambda v: v.split("@")[0],
}


def _put(resolved: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split("/")
    node = resolved
    for part in parents:
        node = node[part]
    node[leaf] = value


def _partition(resolved: dict, value: str) -> None:
    cluster = resolved["cluster"]
    cluster["partitions"] = {value: cluster["partitions"]["h100"]}
    cluster["partition"] = value


def _gres_name(resolved: dict, value: str) -> None:
    """The cluster-wide GRES type reaches --gres only where the partition sets none of its own."""
    _put(resolved, "cluster/partitions/h100/gres_type", None)
    _put(resolved, "cluster/gres_name", value)


# field -> how the value enters the resolved config, and (flag, value Slurm must read) or srun argument
FIELDS = {
    "cluster.account": (lambda r, v: _put(r, "cluster/account", v), lambda v: ("account", v)),
    "cluster.qos": (lambda r, v: _put(r, "cluster/qos", v), lambda v: ("qos", v)),
    "cluster.gres_name": (_gres_name, lambda v: ("gres", f"gres:gpu:{v}:1")),
    "cluster.partitions.h100.gres_type": (lambda r, v: _put(r, "cluster/partitions/h100/gres_type", v),
                                          lambda v: ("gres", f"gres:gpu:{v}:1")),
    "cluster.partitions.h100.constraint": (lambda r, v: _put(r, "cluster/partitions/h100/constraint", v),
                                           lambda v: ("constraint", v)),
    "cluster.partition": (_partition, lambda v: ("partition", v)),
    "name": (lambda r, v: _put(r, "name", v), None),
    "output_root": (None, None),  # filled in per test: it is a folder under tmp_path
    "cluster.sbatch_extra.comment": (lambda r, v: _put(r, "cluster/sbatch_extra", {"comment": v}),
                                     lambda v: ("comment", v)),
    "cluster.sbatch_extra": (lambda r, v: _put(r, "cluster/sbatch_extra", {v: "x"}), lambda v: (v, "x")),
    "cluster.srun_mpi": (lambda r, v: _put(r, "cluster/srun_mpi", v), lambda v: f"--mpi={v}"),
    "cluster.container.image": (lambda r, v: _put(r, "cluster/container", {"kind": "pyxis", "image": v, "mounts": []}),
                                lambda v: f"--container-image={v}"),
    "cluster.container.mounts": (lambda r, v: _put(r, "cluster/container", {"kind": "pyxis", "image": "img",
                                                                             "mounts": [v]}),
                                 lambda v: f"--container-mounts={v}"),
}
SRUN_FIELDS = ("cluster.srun_mpi", "cluster.container.image", "cluster.container.mounts")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The resolved config of a GPU job on the CI site, as Hydra composes it."""
    require_slurm()
    root = tmp_path_factory.mktemp("directives")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTC_SITE_CONFIG", str(CI_SITE))
        _, resolved = load_job(["cluster=ci", "model=llama8b", f"output_root={root / 'runs'}"])
    return root, resolved


def _compile(resolved: dict):
    try:
        job = JobConfig.model_validate(resolved)
    except ValidationError as exc:
        raise UserError(*format_validation_error(exc)) from None
    check_inputs(job)
    return compile_job(job, resolved)


def _attempt(base, field: str, value: str):
    """('refused', line) or ('compiled', run, expectation)."""
    root, resolved = base
    resolved = copy.deepcopy(resolved)
    if field == "output_root":
        resolved["output_root"] = f"{root}/{value}"
    else:
        FIELDS[field][0](resolved, value)
    try:
        run = _compile(resolved)
    except UserError as exc:
        return "refused", exc.problems
    return "compiled", run


def _sbatch_options(script: Path) -> dict[str, str] | str:
    proc = subprocess.run(["timeout", "20", "sbatch", "-vv", "--test-only", str(script)], capture_output=True)
    text = proc.stderr.decode("utf-8", "surrogateescape")
    if "defined options" not in text:
        return text
    block = text.split("defined options", 1)[1].split("end of defined options", 1)[0]
    found = {}
    for line in block.split("\n"):  # not splitlines(): a value may hold U+2028 or U+0085
        match = OPTION_LINE.match(line)
        if match and not match.group(1).startswith("-"):
            found[match.group(1)] = match.group(2)
    return found


def _expected_options(run) -> dict[str, str]:
    expected = {}
    for flag, value in sbatch_directives(run.plan):
        text = flag if value is None else str(value)
        expected[flag] = SHOWN.get(flag, lambda v: v)(text)
    return expected


def _srun_args(run, work: Path) -> list[str]:
    bin_dir = work / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir(parents=True)
        # srun as pyxis extends it (the script asks `srun --help` for --container-image first)
        srun = '#!/bin/bash\n[ "$1" = --help ] && { echo "--container-image"; exit 0; }\nprintf "%s\\0" "$@" > "$FTC_ARGS_OUT"\n'
        for tool, text in {"srun": srun,
                           "scontrol": "#!/bin/bash\necho node1\n"}.items():
            (bin_dir / tool).write_text(text)
            (bin_dir / tool).chmod(0o755 | stat.S_IEXEC)
    script = work / f"job-{run.plan.run_id}.sbatch"
    script.write_text(run.script)
    out = work / f"args-{run.plan.run_id}"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "node1", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_JOB_ID": "7", "FTC_ARGS_OUT": str(out)}
    subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, timeout=30, check=True)
    args = out.read_bytes().decode("utf-8", "surrogateescape").split("\0")[:-1]
    return args[: args.index("torchrun")]


def _check(base, field: str, value: str, work: Path, pending: list) -> None:
    outcome = _attempt(base, field, value)
    if outcome[0] == "refused":
        problems = outcome[1]
        assert len(problems) == 1 and problems[0].startswith(field), (field, value, problems)
        assert "\n" not in problems[0]
        return
    run = outcome[1]
    if field in SRUN_FIELDS:
        args = _srun_args(run, work)
        assert FIELDS[field][1](value) in args if value else args[2:] == [], (field, value, args)
        return
    script = work / f"{len(pending)}.sbatch"
    script.write_text(run.script)
    expected = _expected_options(run)
    if field == "name":
        assert expected["job-name"] == f"ftc-{value}-{run.plan.run_id}"
    elif field == "output_root":
        assert expected["output"].startswith(os.path.abspath(f"{base[0]}/{value}") + "/")
    elif value:  # an empty account, QoS, constraint or GRES type means "none" or "the default"
        flag, shown = FIELDS[field][1](value)
        assert expected[flag] == shown, (field, value, expected)
    pending.append((field, value, script, expected))


def _read_back(pending: list) -> None:
    """Slurm's parser, eight scripts at a time."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda item: _sbatch_options(item[2]), pending))
    for (field, value, script, expected), found in zip(pending, results):
        assert isinstance(found, dict), f"{field}={value!r}: sbatch could not parse the script: {found[-300:]}"
        assert set(found) - SBATCH_ONLY == set(expected), (field, value, found, expected)
        for flag, shown in expected.items():
            if flag == "time":
                assert slurm_minutes(found[flag]) == slurm_minutes(shown)
            else:
                assert found[flag] == shown, f"{field}={value!r}: Slurm read --{flag}={found[flag]!r}, meant {shown!r}"


def test_the_value_corpus_is_large():
    assert len(VALUES) >= 120 and len(VALUES) * len(FIELDS) >= 200


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_every_hostile_value_is_refused_or_read_back_exactly(field, base, tmp_path):
    pending: list = []
    for value in VALUES:
        _check(base, field, value, tmp_path, pending)
    _read_back(pending)
    if field not in SRUN_FIELDS:
        assert len(pending) >= 3, f"{field}: too few values accepted to test Slurm's reading of them"


def test_the_issue_s_exploit_is_refused(base):
    """The value that made one #SBATCH --account line into three options."""
    outcome = _attempt(base, "cluster.account", "\\'\\' --output=x-%j.out --comment=\\")
    assert outcome[0] == "refused" and outcome[1][0].startswith("cluster.account: a backslash")


HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from(list(" \t'\"\\#%$`;&|<>(){}[]*?!~=,:@+-./_aZ09é🙂\u00a0\u2028") + ["\x00", "\x1b"]),
    min_size=0, max_size=24,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(FIELDS)), value=HOSTILE_TEXT)
def test_generated_values_are_refused_or_read_back_exactly(field, value, base, tmp_path_factory):
    pending: list = []
    _check(base, field, value, tmp_path_factory.mktemp("gen"), pending)
    _read_back(pending)
