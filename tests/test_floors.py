"""The dependency floors in pyproject.toml are versions CI runs on, so a site stack that meets them starts.

The login-node floors (core, api and the test tools) are installed as they are from .ci/floors.txt by
.ci/run's login-node step, which runs the compiler's tests on them; the train extra's floors equal
.ci/constraints.txt, the main environment's pins.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IN_FLOOR_ENVIRONMENT = pytest.mark.skipif(not os.environ.get("FTC_FLOORS"),
                                          reason="only in .ci/run's login-node environment (FTC_FLOORS=1)")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[name.strip().lower()] = version.strip()
    return found


def release(version: str) -> tuple[int, ...]:
    """1.3 and 1.3.0 are the same release."""
    parts = [int(p) for p in re.findall(r"\d+", version)]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def floors(requirements: list[str]) -> dict[str, str]:
    """name -> the version after `>=`; a requirement without one has no floor to test, which is refused."""
    found = {}
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", requirement)
        assert floor, f"{requirement}: no lower bound"
        found[name] = floor.group(1)
    return found


def test_login_node_floors_are_what_ci_installs_for_the_login_node():
    extras = PROJECT["optional-dependencies"]
    # the browser test needs Chromium, the SDK's conformance test trains: both run in the main environment only
    tools = [r for r in extras["dev"] if not r.startswith(("selenium", "nemo-microservices"))]
    declared = floors(PROJECT["dependencies"] + extras["api"] + tools)
    assert pins(ROOT / ".ci" / "floors.txt") == declared


def test_train_floors_are_the_versions_the_main_environment_pins():
    declared = floors(PROJECT["optional-dependencies"]["train"])
    pinned = pins(ROOT / ".ci" / "constraints.txt")
    unpinned = sorted(set(declared) - set(pinned))
    assert not unpinned, f"train dependencies CI does not pin: {unpinned}"
    differ = {n: (v, pinned[n]) for n, v in declared.items() if release(pinned[n]) != release(v)}
    assert not differ, f"floor != CI pin: {differ}"


def test_the_floors_file_parses_as_floors_test_expects():
    # A floors file that listed a range would install something else than the floor.
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.fullmatch(r"[a-z0-9_.-]+==[0-9][0-9.]*", line), line


@IN_FLOOR_ENVIRONMENT
@pytest.mark.parametrize("name", sorted(pins(ROOT / ".ci" / "floors.txt")))
def test_the_login_node_environment_runs_on_the_floors(name):
    floor = pins(ROOT / ".ci" / "floors.txt")[name]
    assert release(metadata.version(name)) == release(floor), f"{name} {metadata.version(name)} is not its floor {floor}"


@IN_FLOOR_ENVIRONMENT
def test_the_login_node_environment_runs_the_oldest_python_allowed():
    floor = re.search(r">=\s*3\.(\d+)", PROJECT["requires-python"]).group(1)
    assert sys.version_info[:2] == (3, int(floor))
