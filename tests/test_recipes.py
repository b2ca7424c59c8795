"""The reproduce flow end to end on a tiny recipe: checkpoint, results and figure, re-loadable."""
import json
from dataclasses import replace

import numpy as np
import pytest

from icrl_lab import recipes
from icrl_lab.envs import task_split
from icrl_lab.evaluate import get_protocol
from icrl_lab.models import load_model
from icrl_lab.train import TrainConfig, train


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


@pytest.fixture
def tiny_chosen(monkeypatch, tiny):
    recipe = replace(tiny, name="tiny_chosen", collect=replace(tiny.collect, split="fit"),
                     selection=recipes.Selection(every=2, episodes=10))
    monkeypatch.setitem(recipes.RECIPES, recipe.name, recipe)
    return recipe


def test_early_stopping_keeps_the_checkpoint_best_on_validation(tiny_chosen, tmp_path, monkeypatch):
    # Scripted validation scores (a tie at the best: the earliest wins), to see which checkpoint is kept.
    scores = iter([1.0, 3.0, 2.0, 3.0, 0.5])
    seen = []

    def scripted(model, family, tasks, episodes, mode, rollouts, seed, env_kwargs=None):
        seen.append({tuple(t) for t in tasks})
        return {"first": 0.0, "last10": next(scores), "first_reward_episode": float(episodes)}

    monkeypatch.setattr(recipes, "in_context_figures", scripted)
    results = recipes.reproduce(tiny_chosen.name, tmp_path / "run", seed=1, progress=False)
    assert results["chosen"]["update"] == 4 and results["chosen"]["last10"] == 3.0
    validation = {tuple(t) for t in task_split("DarkRoom", "validation")}
    assert all(tasks == validation for tasks in seen) and len(seen) == 5, "every stretch scored on the validation goals"
    chosen, record = load_model(tmp_path / "run")
    assert record["updates_done"] == 4 and record["selection"]["chosen"]["update"] == 4
    assert [score["update"] for score in record["selection"]["scores"]] == [2, 4, 6, 8, 10]
    # The kept weights are those of update 4: training again and stopping there gives the same ones.
    data = tiny_chosen.collect.collect(1)
    again, _ = train(tiny_chosen.model, data, replace(tiny_chosen.train, seed=1), progress=False, stop_at=4)
    for name, value in chosen.state_dict().items():
        assert np.array_equal(value.numpy(), again.state_dict()[name].numpy()), name
    latest, _ = load_model(tmp_path / "run" / "training")
    assert not all(np.array_equal(v.numpy(), latest.state_dict()[k].numpy()) for k, v in chosen.state_dict().items())
    with pytest.raises(FileExistsError, match="already holds a chosen checkpoint"):
        recipes.reproduce(tiny_chosen.name, tmp_path / "run", seed=1, progress=False)


def test_an_interrupted_early_stopped_run_resumes_to_the_same_choice(tiny_chosen, tmp_path, monkeypatch):
    # A score that depends on the weights alone, so that a stretch scored again after the interruption
    # scores as it did; the run is stopped (Ctrl-C) while the third stretch is being scored.
    calls = []

    def weights_score(model, family, tasks, episodes, mode, rollouts, seed, env_kwargs=None):
        calls.append(1)
        if interrupt_at and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return {"first": 0.0, "last10": float(next(model.parameters()).detach().abs().sum()) % 1.0,
                "first_reward_episode": float(episodes)}

    monkeypatch.setattr(recipes, "in_context_figures", weights_score)
    interrupt_at = None
    whole = recipes.reproduce(tiny_chosen.name, tmp_path / "whole", seed=1, progress=False)
    interrupt_at, calls[:] = 3, []
    with pytest.raises(KeyboardInterrupt):
        recipes.reproduce(tiny_chosen.name, tmp_path / "run", seed=1, progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        recipes.reproduce(tiny_chosen.name, tmp_path / "run", seed=1, progress=False)
    interrupt_at, calls[:] = None, []
    resumed = recipes.reproduce(tiny_chosen.name, tmp_path / "run", seed=1, progress=False, resume=True)
    assert len(calls) == 3, "only the stretches not yet scored (updates 6, 8 and 10) are scored"
    assert resumed["chosen"] == whole["chosen"] and resumed["figures"] == whole["figures"]
    (first, record), (second, record_whole) = load_model(tmp_path / "run"), load_model(tmp_path / "whole")
    assert record["selection"]["scores"] == record_whole["selection"]["scores"]
    for name, value in first.state_dict().items():
        assert np.array_equal(value.numpy(), second.state_dict()[name].numpy()), name
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        recipes.reproduce(tiny_chosen.name, tmp_path / "run", seed=1, progress=False, resume=True, overwrite=True)


def test_a_recipe_that_chooses_on_validation_must_collect_without_it(tiny):
    with pytest.raises(ValueError, match="collect on split='fit'"):
        replace(tiny, selection=recipes.Selection())
    with pytest.raises(ValueError, match="every=0 is not allowed"):
        recipes.Selection(every=0)


def test_selection_chooses_the_highest_score_and_the_earliest_on_a_tie():
    scores = [{"update": 2, "last10": 1.0}, {"update": 4, "last10": 3.0}, {"update": 6, "last10": 3.0},
              {"update": 8, "last10": 2.0}]
    assert recipes.Selection.choose(scores) is scores[1]
    study_log = [{"update": 50, "greedy_last10": 0.0}, {"update": 100, "greedy_last10": 0.0}]
    assert recipes.Selection.choose(study_log, score="greedy_last10")["update"] == 50
