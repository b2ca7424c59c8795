"""The reproduce flow end to end on a tiny recipe: checkpoint, results and figure, re-loadable."""
import json

import pytest

from icrl_lab import recipes
from icrl_lab.models import load_model


@pytest.fixture
def tiny(monkeypatch):
    recipe = recipes.Recipe(
        name="tiny_dark_room", description="tiny", family="DarkRoom",
        data={"source": "noise_distillation", "split": "train", "num_steps": 200, "histories_per_task": 2, "max_perf": 0.5},
        model={"kind": "ad", "window_steps": 40, "d_model": 16, "n_layer": 1, "n_head": 2},
        train={"updates": 10, "batch_size": 8, "context_steps": 40},
        evaluation={"episodes": 3, "mode": "sample", "temperature": 1.0}, claim={"ratio_to_best_in_data": 2.0})
    monkeypatch.setitem(recipes.RECIPES, recipe.name, recipe)
    return recipe


def test_reproduce_writes_checkpoint_results_and_figure(tiny, tmp_path):
    results = recipes.reproduce(tiny.name, tmp_path / "run", seed=1, progress=False)
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"model.safetensors", "config.json", "results.json", "figure.png"} <= written
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == json.loads(json.dumps(results))
    figures = results["figures"]
    assert figures["episodes"] == 3 and figures["tasks"] == 16
    assert 8.0 < figures["best_in_data_return"] < 9.0, "the max_perf 0.5 demonstrator on the held-out goals"
    model, record = load_model(tmp_path / "run")
    again, _ = recipes.evaluate_checkpoint(model, record, seed=1)
    assert again == figures, "re-evaluating the saved checkpoint gives the same figures"
    assert record["seed"] == 1 and record["recipe"]["name"] == tiny.name


def test_unknown_recipe_and_missing_checkpoint_are_named(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="recipe='nope'"):
        recipes.get_recipe("nope")
    monkeypatch.setattr(recipes, "SHIPPED", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m icrl_lab reproduce dark_room_adeps"):
        recipes.shipped_checkpoint("dark_room_adeps")
