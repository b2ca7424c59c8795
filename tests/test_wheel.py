"""The kit as a user installs it: a wheel built from the sources alone, installed into a fresh virtual
environment outside the clone, loads its shipped checkpoints and runs its console script from elsewhere.

It also evaluates a shipped checkpoint by its recipe's name, with the console script.

The fresh environment reuses this one's installed packages (torch among them) through a .pth file, so
nothing is downloaded; only the kit itself comes from the wheel."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FILES = ("config.json", "model.safetensors", "results.json", "evaluation.json", "evaluation-per-task.csv",
                 "figure.png")


def run(command, cwd, timeout=600):
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=environment, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "icrl_lab", source / "icrl_lab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "training_state.*"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", dist, source],
        cwd=source)
    (built,) = dist.glob("icrl_lab-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", venv], cwd=venv)
    python = venv / "bin" / "python"
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             cwd=venv).strip())
    (site_packages / "reuse_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=venv)
    return venv


def test_the_wheel_carries_the_shipped_checkpoints_and_the_license(wheel):
    from icrl_lab.recipes import SHIPPED_NAMES

    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SHIPPED_NAMES:
        for file in SHIPPED_FILES:
            assert f"icrl_lab/checkpoints/{name}/{file}" in names
    assert any(entry.endswith(".dist-info/licenses/LICENSE") for entry in names)
    assert not any(entry.startswith(("data/", "tests/", "notebooks/")) for entry in names)


def test_the_installed_kit_loads_a_shipped_checkpoint_outside_the_clone(installed, tmp_path):
    script = ("import json, icrl_lab; from icrl_lab.recipes import load_shipped; "
              "model, record = load_shipped('dark_room_adeps'); "
              "print(json.dumps({'package': icrl_lab.__file__, 'kind': record['kind'], "
              "'parameters': sum(p.numel() for p in model.parameters()), "
              "'figures': record['results']['figures']}))")
    loaded = json.loads(run([installed / "bin" / "python", "-c", script], cwd=tmp_path).strip().splitlines()[-1])
    assert Path(loaded["package"]).is_relative_to(installed), "icrl_lab must come from the installed wheel"
    recorded = json.loads((ROOT / "icrl_lab" / "checkpoints" / "dark_room_adeps" / "results.json").read_text())
    assert loaded["kind"] == "ad" and loaded["parameters"] > 0
    assert loaded["figures"] == recorded["figures"]


def test_the_console_script_runs_from_the_installed_wheel(installed, tmp_path):
    printed = run([installed / "bin" / "icrl-lab", "--help"], cwd=tmp_path)
    for command in ("collect", "train", "evaluate", "reproduce", "course"):
        assert command in printed


def test_the_installed_console_script_evaluates_a_recipe_by_name(installed, tmp_path):
    printed = run([installed / "bin" / "icrl-lab", "evaluate", "dark_room_adeps", "--protocol", "adeps", "--seed", "0",
                   "--episodes", "100"], cwd=tmp_path)
    figures = json.loads(printed.strip().splitlines()[-1])
    recorded = json.loads((ROOT / "icrl_lab" / "checkpoints" / "dark_room_adeps" / "evaluation.json").read_text())
    assert figures["protocol"] == "adeps" and figures["decoding"] == "greedy"
    assert figures["headline"]["last10"] == recorded["headline"]["last10"], "greedy Dark Room rollouts are deterministic"
