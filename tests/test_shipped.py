"""The shipped checkpoints load and still reproduce the figures recorded beside them (and in README).

Each is re-evaluated with its recipe's own evaluation and seed; figures may move a little across
machines (floating-point differences can flip a sampled action), hence the tolerances.
"""
import json
import subprocess
import sys
from importlib.resources import as_file

import pytest

from icrl_lab.recipes import RECIPES, SHIPPED, SHIPPED_NAMES, evaluate_checkpoint, load_shipped

TOLERANCE = {"ratio_to_best_in_data": 0.25, "mean_return_last10": 2.0, "mean_return_first_episode": 2.0,
             "regret": 3.0, "regret_to_thompson": 0.25}
CHECKED = {"DarkRoom": ("mean_return_first_episode", "mean_return_last10", "ratio_to_best_in_data"),
           "DarkKeyToDoor": ("mean_return_first_episode", "mean_return_last10", "ratio_to_best_in_data"),
           "BernoulliBandit": ("regret", "regret_to_thompson")}


def files_under(folder):
    """Every file under an importlib.resources folder (a Traversable, which has no rglob)."""
    for entry in folder.iterdir():
        yield from files_under(entry) if entry.is_dir() else (entry,)


def test_every_recipe_listed_here_is_shipped_with_its_provenance():
    for name in SHIPPED_NAMES:
        assert name in RECIPES
        folder = SHIPPED / name
        for file in ("model.safetensors", "config.json", "results.json", "figure.png"):
            assert (folder / file).is_file(), f"{folder / file} is missing"
        record = json.loads((folder / "config.json").read_text())
        assert record["command"].startswith("python -m icrl_lab reproduce " + name)
        assert record["seed"] == json.loads((folder / "results.json").read_text())["seed"]
    total = sum(len(file.read_bytes()) for file in files_under(SHIPPED))
    assert total < 5_000_000, f"shipped checkpoints take {total / 1e6:.1f} MB: keep them small"


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_checkpoint_reproduces_its_figures(name):
    model, record = load_shipped(name)
    recorded = record["results"]["figures"]
    measured, _ = evaluate_checkpoint(model, record, seed=record["results"]["seed"])
    for key in CHECKED[RECIPES[name].family]:
        assert key in recorded, f"results.json of {name} records no {key!r}"
        assert key in measured, f"evaluating {name} no longer measures {key!r}"
        assert measured[key] == pytest.approx(recorded[key], abs=TOLERANCE[key]), key


def test_evaluate_command_on_a_shipped_checkpoint_prints_its_recorded_figures():
    with as_file(SHIPPED / "dark_room_adeps") as folder:
        result = subprocess.run([sys.executable, "-m", "icrl_lab", "evaluate", str(folder),
                                 "--tasks", "test", "--seed", "0"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    recorded = json.loads((SHIPPED / "dark_room_adeps" / "results.json").read_text())["figures"]
    assert printed["mode"] == "greedy_when_rewarded" and printed["rollouts_per_task"] == 8
    assert printed["ratio_to_best_in_data"] == pytest.approx(recorded["ratio_to_best_in_data"], abs=TOLERANCE["ratio_to_best_in_data"])
