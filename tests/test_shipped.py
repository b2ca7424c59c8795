"""The shipped checkpoints load and still reproduce the protocol figures recorded beside them
(evaluation.json, and README), each re-evaluated under its recipe's protocol and seed."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from icrl_lab.evaluate import headline
from icrl_lab.recipes import RECIPES, SHIPPED, SHIPPED_NAMES, evaluate_checkpoint, evaluation_file, load_shipped

# Greedy rollouts on Dark Room are deterministic; Key-to-Door's random starts and bandits' sampling are
# not bit-stable across machines (a float difference can flip an action), hence the tolerances.
TOLERANCE = {"first": 1.5, "last10": 1.5, "ratio_to_best_in_data": 0.2, "memory_baseline": 1.0, "random_weights": 1.0,
             "best_in_data": 0.05, "optimal": 1e-9, "regret": 4.0, "thompson_regret": 2.0, "ucb_regret": 3.0,
             "regret_to_thompson": 0.3}
SHIPPED_KEYS = {"DarkRoom": ("first", "last10", "ratio_to_best_in_data", "memory_baseline", "random_weights",
                             "best_in_data", "optimal"),
                "BernoulliBandit": ("regret", "thompson_regret", "ucb_regret", "regret_to_thompson")}
SHIPPED_KEYS["DarkKeyToDoor"] = SHIPPED_KEYS["DarkRoom"]
# Key-to-Door's protocol plays 1000 episodes; the test re-measures a shorter run recorded beside it
# (python -m icrl_lab evaluate key_to_door_adeps --seed 0 --episodes 100 --save icrl_lab/checkpoints/key_to_door_adeps).
QUICK = {"key_to_door_adeps": 100}


def files_under(folder):
    """Every file under an importlib.resources folder (a Traversable, which has no rglob)."""
    for entry in folder.iterdir():
        yield from files_under(entry) if entry.is_dir() else (entry,)


def test_every_recipe_listed_here_is_shipped_with_its_provenance():
    for name in SHIPPED_NAMES:
        assert name in RECIPES
        folder = SHIPPED / name
        for file in ("model.safetensors", "config.json", "results.json", "evaluation.json", "figure.png",
                     evaluation_file(per_task=True)):
            assert (folder / file).is_file(), f"{folder / file} is missing"
        record = json.loads((folder / "config.json").read_text())
        assert record["command"].startswith("python -m icrl_lab reproduce " + name)
        assert record["seed"] == json.loads((folder / "results.json").read_text())["seed"]
        evaluation = json.loads((folder / "evaluation.json").read_text())
        assert evaluation["command"].startswith(f"python -m icrl_lab evaluate {name} ")
        assert evaluation["protocol"] == RECIPES[name].evaluation.name and not evaluation["ablation"]
        per_task = pd.read_csv(folder / evaluation_file(per_task=True))  # what `compare` pairs: the same evaluation
        column, recorded = (("regret", evaluation["regret"]["model"]) if "regret" in evaluation
                            else ("last10", evaluation["agents"]["model"]["last10"]))
        assert per_task[per_task["agent"] == "model"][column].mean() == pytest.approx(recorded["mean"])
    total = sum(len(file.read_bytes()) for file in files_under(SHIPPED))
    assert total < 6_000_000, f"shipped checkpoints take {total / 1e6:.1f} MB: keep them small"


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_checkpoint_reproduces_its_protocol_figures(name):
    model, record = load_shipped(name)
    episodes = QUICK.get(name)
    recorded = json.loads((SHIPPED / name / evaluation_file(episodes)).read_text())
    measured, _ = evaluate_checkpoint(model, record, seed=recorded["evaluation_seed"], episodes=episodes)
    assert measured["protocol"] == recorded["protocol"] and measured["decoding"] == recorded["decoding"]
    assert (measured["split"], measured["task_digest"]) == (recorded["split"], recorded["task_digest"])  # the same tasks
    measured = headline(measured)
    for key in SHIPPED_KEYS[RECIPES[name].family]:
        assert measured[key] == pytest.approx(recorded["headline"][key], abs=TOLERANCE[key]), key


def test_evaluate_command_by_recipe_name_prints_the_protocol_figures_with_controls():
    result = subprocess.run([sys.executable, "-m", "icrl_lab", "evaluate", "dark_room_adeps", "--protocol", "adeps",
                             "--seed", "0", "--episodes", "100"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    printed = json.loads(lines[-1])
    recorded = json.loads((SHIPPED / "dark_room_adeps" / "evaluation.json").read_text())
    assert printed["decoding"] == "greedy" and printed["episodes"] == 100 and not printed["ablation"]
    assert set(printed["agents"]) == {"model", "random_weights", "memory_baseline"}
    assert len(printed["agents"]["model"]["last10"]["ci"]) == 2
    assert printed["headline"]["last10"] == pytest.approx(recorded["headline"]["last10"], abs=TOLERANCE["last10"])
