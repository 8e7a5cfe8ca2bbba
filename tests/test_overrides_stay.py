"""Overrides stay overrides: no command line brings in raw shell, Slurm options, templates, guard rails
or any other of a site's limits (a partition's time, nodes, GPUs, memory; ports; the container).

Whatever the override (+key, ++key, ~key, hydra.*, a group pointing at a path, a package, an
interpolation), the composed job's admin-owned fields are exactly those of the site's own files, or
the request is refused with one line naming the key. Config folders come only from $FTC_SITE_CONFIG.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftc.compiler.config.compose import compose_config, load_job, resolve
from ftc.compiler.config.owners import SITE, owner
from ftc.compiler.config.schema import ClusterConfig
from ftc.compiler.errors import UserError

# Every cluster field the schema gives the site: limits and facts as well as raw shell.
ADMIN_FIELDS = tuple(f for f in ClusterConfig.model_fields if owner(f"cluster.{f}") == SITE)
CONF = Path(str(resources.files("ftc.conf")))


def _site_values(cluster: ClusterConfig) -> tuple:
    dumped = cluster.model_dump()
    return tuple(dumped[f] for f in ADMIN_FIELDS)


def _admin_view(job) -> tuple:
    return _site_values(job.cluster), job.model.training_options


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def admin_owned():
    """What the shipped files hold: every cluster file's raw shell and every model file's guard rails."""
    clusters, models = [], []
    for option in _options("cluster"):
        cluster = resolve(compose_config([f"cluster={option}"])[0])["cluster"]
        clusters.append(_site_values(ClusterConfig.model_validate(cluster)))
    for option in _options("model"):
        options = compose_config([f"model={option}"])[1]
        if options is not None:  # model=custom: its options come from the cluster (the admin's)
            models.append(options)
    return clusters, models


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A user's own config folder, with every kind of file a site folder may hold, all of them evil."""
    root = tmp_path_factory.mktemp("user-site")
    (root / "cluster").mkdir()
    (root / "cluster" / "evil.yaml").write_text(
        "defaults: [local, _self_]\nname: evil\nsetup: ['touch PWNED']\nenv: {LD_PRELOAD: /tmp/x.so}\n"
        f"sbatch_extra: {{uid: '0'}}\ntemplate_dir: {root}\n")
    (root / "model").mkdir()
    (root / "model" / "evil.yaml").write_text(
        "defaults: [tiny, _self_]\ntraining_options: {CPU: [{training_type: sft, finetuning_type: all_weights, "
        "num_gpus: 1, max_seq_length: 999999}]}\n")
    (root / "job.sbatch.j2").write_text("{% extends 'ftc/job.sbatch.j2' %}{% block setup %}touch PWNED{% endblock %}")
    return root


@pytest.fixture(scope="module")
def baseline(user_files, admin_owned, tmp_path_factory):
    return admin_owned, tmp_path_factory.mktemp("runs")


def _owned(result, admin) -> bool:
    """Refused (a line), or every admin-owned value is one the shipped files hold."""
    if isinstance(result, str):
        return True
    (cluster, training_options), (clusters, models) = result, admin
    as_plain = cluster
    plain_options = {k: [o.model_dump() for o in v] for k, v in training_options.items()}
    return as_plain in clusters and any(plain_options == _plain(m) for m in models)


def _plain(options: dict) -> dict:
    return {k: [{**{"num_nodes": 1, "tensor_parallel_size": 1, "pipeline_parallel_size": 1}, **o} for o in v]
            for k, v in options.items()}


def _attempt(overrides: list[str], root) -> tuple | str:
    try:
        job, _ = load_job([*overrides, f"output_root={root}"])
    except UserError as exc:
        assert len(exc.problems) >= 1 and all("\n" not in p for p in exc.problems)
        return exc.problems[0]
    return _admin_view(job)


def _overrides(user: str) -> list[str]:
    return [
        f"hydra.searchpath=[file://{user}]", f"+hydra.searchpath=[file://{user}]", f"++hydra.searchpath=[file://{user}]",
        "hydra.searchpath=[pkg://ftc.conf]", f"hydra.job.chdir=true", "hydra/launcher=basic", "~hydra",
        f"cluster={user}/cluster/evil", f"cluster=file://{user}/cluster/evil", "cluster=../../../../" + user.lstrip("/")
        + "/cluster/evil", f"model={user}/model/evil", "cluster@_global_=example", "+cluster@extra=example",
        "+cluster=example", "++cluster=evil", "~cluster", "~model", "cluster={setup: [touch PWNED]}",
        "model={training_options: {}}", "cluster=${oc.env:HOME}", "cluster.setup=[touch PWNED]",
        "+cluster.setup=[touch PWNED]", "++cluster.setup=[touch PWNED]", "~cluster.setup", "cluster.setup.0=touch",
        "cluster.env.LD_PRELOAD=/tmp/x.so", "+cluster.env.X=1", "++cluster.env={X: 1}", "~cluster.env",
        "cluster.sbatch_extra.uid=0", "++cluster.sbatch_extra={uid: 0}", f"cluster.template_dir={user}",
        f"+cluster.template_dir={user}", "~cluster.template_dir", "model.training_options.CPU=[]",
        "++model.training_options={}", "~model.training_options", "+model.training_options.X=[]",
        "model.urn=acme/evil@v1+CPU", "cluster/setup=[x]", "cluster.account=${cluster.setup}",
        "cluster.name=${oc.env:HOME}", "+cluster.setup@_global_=x", "cluster.partitions.local.gpu=cpu",
        "cluster.partitions.local.max_time=999:00:00", "+cluster.partitions.local.max_nodes=64",
        "++cluster.partitions.local.gpus_per_node=64", "~cluster.partitions.local.max_time",
        "cluster.partitions={big: {gpu: cpu, gpus_per_node: 1}}", "+cluster.partitions.big={gpu: cpu, gpus_per_node: 1}",
        "cluster.partitions.local.mem_per_node_gb=99999", "+cluster.gpus.fast={memory_gib: 1e6, bf16_tflops: 1, family: CPU}",
        "cluster.container.image=x", "cluster.rdzv_port_first=1024", "cluster.fs_bandwidth_gbs=10000",
        "cluster.executor=slurm", "cluster.array_parallelism=1000", "cluster.requeue_signal_seconds=30",
        "cluster.partition=${cluster.name}", "cluster.account=${cluster.partitions.local.max_time}",
    ]


def test_the_check_sees_a_change(baseline):
    """_owned is not vacuous: the shipped local cluster passes, the same with one more setup line does not."""
    admin, root = baseline
    job, _ = load_job([f"output_root={root}"])
    assert _owned(_admin_view(job), admin)
    cluster, options = _admin_view(job)
    for field, value in (("setup", ["touch PWNED"]), ("partitions", {}), ("rdzv_port_first", 1024)):
        changed = tuple(value if f == field else v for f, v in zip(ADMIN_FIELDS, cluster))
        assert not _owned((changed, options), admin), field
    assert not _owned((cluster, {}), admin)


def test_no_listed_override_changes_what_admins_own(user_files, baseline):
    admin, root = baseline
    for override in _overrides(str(user_files)):
        for also in ([], ["cluster=evil"], ["model=evil"]):  # the user's own files, should a way in open
            result = _attempt([override, *also], root)
            assert _owned(result, admin), f"{[override, *also]} changed admin fields: {result}"


def test_hydra_searchpath_is_refused_by_name(user_files, baseline):
    result = _attempt([f"hydra.searchpath=[file://{user_files}]", "cluster=evil"], baseline[1])
    assert result.startswith("hydra.searchpath: Hydra's own settings are not overrides here")


def test_a_site_folder_comes_only_from_the_environment(user_files, baseline, monkeypatch):
    """The same files are taken when the admin's variable names their folder: that is the one way in."""
    monkeypatch.setenv("FTC_SITE_CONFIG", str(user_files))
    job, _ = load_job(["cluster=evil", f"output_root={baseline[1]}"])
    assert job.cluster.setup == ["touch PWNED"]


PREFIXES = st.sampled_from(["", "+", "++", "~"])
KEYS = st.sampled_from(["cluster", "model", "hydra", "hydra.searchpath", "cluster.setup", "cluster.env",
                        "cluster.env.PATH", "cluster.sbatch_extra", "cluster.sbatch_extra.wrap", "cluster.template_dir",
                        "model.training_options", "model.training_options.CPU", "cluster/setup", "cluster@_global_",
                        "cluster@cluster", "method", "data", "resources", "recipe", "+recipe", "model.urn",
                        "cluster.partitions", "cluster.partitions.local", "cluster.partitions.local.max_time",
                        "cluster.partitions.local.max_nodes", "cluster.gpus", "cluster.container", "cluster.name",
                        "cluster.rdzv_port_first", "cluster.fs_bandwidth_gbs", "cluster.partition", "cluster.qos"])
VALUES = st.sampled_from(["evil", "example", "/tmp", "[touch PWNED]", "{setup: [touch PWNED]}", "${oc.env:HOME}",
                          "{}", "[]", "null", "'touch PWNED'", "../cluster/evil", "tiny", "local", "999:00:00", "64",
                          "{local: {gpu: cpu, gpus_per_node: 64}}"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(st.tuples(PREFIXES, KEYS, VALUES), min_size=1, max_size=3))
def test_generated_overrides_never_change_what_admins_own(overrides, user_files, baseline):
    admin, root = baseline
    args = [f"{p}{k}" if p == "~" else f"{p}{k}={v}" for p, k, v in overrides]
    args = [a.replace("evil", f"{user_files}/cluster/evil") if a.startswith("cluster=") else a for a in args]
    result = _attempt(args, root)
    assert _owned(result, admin), f"{args} changed admin fields: {result}"
