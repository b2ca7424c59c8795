"""The reproduce flow end to end on a tiny recipe: checkpoint, results and figure, re-loadable."""
import json

import pytest

from icrl_lab import recipes
from icrl_lab.evaluate import get_protocol
from icrl_lab.models import load_model
from icrl_lab.train import TrainConfig


@pytest.fixture
def tiny(monkeypatch):
    recipe = recipes.Recipe(
        name="tiny_dark_room", description="tiny",
        collect=recipes.CollectSpec("DarkRoom", "noise_distillation", num_steps=200, histories_per_task=2, max_perf=0.5),
        model=recipes.model_config("DarkRoom", window_steps=40, d_model=16, n_layer=1, n_head=2),
        train=TrainConfig(updates=10, batch_size=8, context_steps=40),
        evaluation=get_protocol("adeps", episodes=3, rollouts_per_task=2), claim={"ratio_to_best_in_data": 1.67})
    monkeypatch.setitem(recipes.RECIPES, recipe.name, recipe)
    return recipe


def test_reproduce_writes_checkpoint_results_and_figure(tiny, tmp_path):
    results = recipes.reproduce(tiny.name, tmp_path / "run", seed=1, progress=False)
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"model.safetensors", "config.json", "results.json", "figure.png"} <= written
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == json.loads(json.dumps(results))
    figures = results["figures"]
    assert figures["episodes"] == 3 and figures["tasks"] == 16 and figures["decoding"] == "greedy"
    assert 8.0 < figures["best_in_data_return"] < 9.0, "the max_perf 0.5 demonstrator on the held-out goals"
    assert set(figures["agents"]) == {"model", "random_weights", "memory_baseline"}
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


def test_full_must_be_a_real_boolean():
    with pytest.raises(ValueError, match="full='false' is not allowed"):
        recipes.load_or_reproduce("dark_room_adeps", full="false")
