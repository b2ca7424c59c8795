"""The Beyond-AD checkpoints shipped for notebook 07 load and still reproduce the figures in their
results.json, each re-measured the way its study script measured it (benchmarks/sequence_learners.py,
benchmarks/studies/headless_bandits.py and headless_dark_room.py)."""
import pytest

from icrl_lab.beyond_ad import CHECKPOINTS, load_checkpoint, permuted_dark_room, regret_table
from icrl_lab.evaluate import Protocol, evaluate_protocol, headline
from icrl_lab.recipes import RECIPES, load_shipped

# Sampled actions are not bit-stable across machines (a float difference can flip a draw), hence tolerances.
REGRET_TOLERANCE, RETURN_TOLERANCE = 4.0, 1.5


def recorded_regret(results: dict) -> dict:
    return {(row["arms"], row["learner"]): row["regret"] for row in results["regret"]}


@pytest.mark.parametrize("name", ["bandit_thompson_ad", "bandit_thompson_gru", "bandit_thompson_ssm",
                                  "bandit_headless_ad"])
def test_a_bandit_checkpoint_reproduces_its_regret(name):
    model, record = load_checkpoint(name)
    results = record["results"]
    recorded = recorded_regret(results)
    learner = next(learner for _, learner in recorded if learner not in ("Thompson sampling", "UCB1"))
    arms = sorted({k for k, _ in recorded})
    table, _ = regret_table({learner: model}, arms, num_tasks=results.get("eval_tasks", 200),
                            horizon=results.get("horizon", 100), seed=results["seed"])
    for (k, name_), measured in recorded_regret({"regret": table.to_dict(orient="records")}).items():
        assert measured == pytest.approx(recorded[(k, name_)], abs=REGRET_TOLERANCE), (k, name_)


@pytest.mark.parametrize("name", ["dark_room_gru", "dark_room_ssm"])
@pytest.mark.parametrize("reading", ["protocol", "ablation"])
def test_a_dark_room_sequence_learner_reproduces_its_returns(name, reading):
    model, record = load_checkpoint(name)
    results = record["results"]
    recorded = results[reading]
    figures, _ = evaluate_protocol(model, record, RECIPES[results["same_as_recipe"]].test_tasks(),
                                   Protocol(**recorded["evaluation"]), seed=results["seed"])
    measured = headline(figures)
    for key in ("first", "last10", "memory_baseline", "random_weights"):
        assert measured[key] == pytest.approx(recorded["figures"][key], abs=RETURN_TOLERANCE), key


def test_headless_ad_in_dark_room_reproduces_its_permuted_returns():
    model, record = load_checkpoint("dark_room_headless_ad")
    results = record["results"]
    episodes = results["episodes"]
    # The study's reading: the ablation rule, 4 rollouts per held-out goal (headless_dark_room.py).
    frame = permuted_dark_room({"AD": load_shipped("dark_room_adeps")[0], "Headless-AD": model},
                               RECIPES["dark_room_adeps"].test_tasks(), episodes=episodes, seed=results["seed"],
                               mode="greedy_when_rewarded", temperature=1.5, rollouts_per_task=4)
    last = frame[frame["episode"] >= episodes - 10].groupby(["model", "actions"])["return"].mean()
    for (model_name, actions), value in last.items():
        assert value == pytest.approx(results["mean_return_last10"][f"{model_name} / {actions}"], abs=RETURN_TOLERANCE)


def test_every_beyond_ad_checkpoint_is_tested_here():
    tested = {"bandit_thompson_ad", "bandit_thompson_gru", "bandit_thompson_ssm", "bandit_headless_ad",
              "dark_room_gru", "dark_room_ssm", "dark_room_headless_ad"}
    assert set(CHECKPOINTS) == tested
