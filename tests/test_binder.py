"""The Binder set-up (binder/environment.yml and binder/postBuild) and the local conda environment.yml
agree with pyproject.toml: same packages, pinned versions inside pyproject's ranges, CPU-only torch."""
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def runtime_requirements() -> dict:
    return {canonicalize_name(r.name): r for r in map(Requirement, pyproject()["project"]["dependencies"])}


def conda_environment(path):
    environment = yaml.safe_load(path.read_text())
    dependencies = environment["dependencies"]
    pip = next(entry["pip"] for entry in dependencies if isinstance(entry, dict))
    conda = [entry for entry in dependencies if isinstance(entry, str)]
    return environment, conda, pip


def python_version(conda) -> Version:
    (python,) = [entry for entry in conda if entry.startswith("python")]
    return Version(python.split("=")[-1])


def test_binder_environment_pins_exactly_the_runtime_dependencies():
    environment, conda, pip = conda_environment(ROOT / "binder" / "environment.yml")
    assert "conda-forge" in environment["channels"] and "pip" in conda
    required = runtime_requirements()
    pins = {}
    for entry in pip:
        if entry.startswith("-"):
            assert entry == CPU_INDEX, f"unexpected pip option {entry!r}"
            continue
        name, _, version = entry.partition("==")
        assert version, f"{entry!r} is not pinned with =="
        pins[canonicalize_name(name)] = Version(version)
    assert set(pins) == set(required), "binder/environment.yml and pyproject's dependencies list different packages"
    for name, version in pins.items():
        assert required[name].specifier.contains(version, prereleases=True), f"{name}=={version} is outside {required[name]}"


def test_binder_takes_the_cpu_build_of_torch_and_a_supported_python():
    _, conda, pip = conda_environment(ROOT / "binder" / "environment.yml")
    assert CPU_INDEX in pip
    (torch,) = [entry for entry in pip if entry.startswith("torch==")]
    assert Version(torch.partition("==")[2]).local == "cpu"
    assert pyproject()["project"]["requires-python"].startswith(">=")
    assert python_version(conda) >= Version(pyproject()["project"]["requires-python"][2:])


def test_local_environment_installs_the_kit_with_the_same_python_and_torch():
    _, local_conda, local_pip = conda_environment(ROOT / "environment.yml")
    _, binder_conda, binder_pip = conda_environment(ROOT / "binder" / "environment.yml")
    assert python_version(local_conda) == python_version(binder_conda)
    assert "-e .[dev]" in local_pip, "the local environment installs the kit, whose pyproject lists the packages"
    (local_torch,) = [entry for entry in local_pip if entry.startswith("torch==")]
    (binder_torch,) = [entry for entry in binder_pip if entry.startswith("torch==")]
    assert Version(local_torch.partition("==")[2]).public == Version(binder_torch.partition("==")[2]).public


def test_post_build_stops_on_errors_and_installs_the_kit():
    script = ROOT / "binder" / "postBuild"
    assert os.access(script, os.X_OK), "repo2docker runs postBuild as a program: make it executable"
    lines = [line.strip() for line in script.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert script.read_text().startswith("#!/bin/bash")
    assert re.match(r"set -[a-z]*e", lines[0]), "postBuild must begin with `set -e`"
    assert any(re.search(r"pip install .*-e \.$", line) for line in lines), "postBuild must install the kit (-e .)"
    subprocess.run(["bash", "-n", str(script)], check=True)
