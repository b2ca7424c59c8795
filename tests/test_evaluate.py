"""Evaluation protocols, their controls and statistics: what a headline is measured with."""
import numpy as np
import pytest
import torch

from icrl_lab.envs import dark_room_goals, key_to_door_tasks, make_batched, token_sizes
from icrl_lab.evaluate import (PROTOCOLS, MemoryAgent, ModelAgent, RandomAgent, bootstrap_ci, choose_actions, compare,
                               evaluate_protocol, get_protocol, play, rollout_table)
from icrl_lab.models import ADConfig, ICRLTransformer
from icrl_lab.sources import optimal_returns


def tiny_model(family="DarkRoom", seed=0):
    torch.manual_seed(seed)
    tasks = dark_room_goals("train") if family == "DarkRoom" else key_to_door_tasks("train")
    return ICRLTransformer(ADConfig(**token_sizes(family, tasks), window_steps=40, d_model=16, n_layer=1, n_head=2)).eval()


def test_adeps_protocol_decodes_greedily_and_dpt_samples():
    assert PROTOCOLS["adeps"].decoding == "greedy" and PROTOCOLS["adeps"].episodes_for("DarkRoom") == 100
    assert PROTOCOLS["adeps"].episodes_for("DarkKeyToDoor") == 1000
    assert PROTOCOLS["dpt"].decoding == "sample" and PROTOCOLS["dpt"].temperature == 1.0
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    np.testing.assert_array_equal(choose_actions(logits, "greedy"), [1, 0])
    with pytest.raises(ValueError, match="protocol='nope'"):
        get_protocol("nope")
    with pytest.raises(ValueError, match="decoding='argmax'"):
        get_protocol("adeps", decoding="argmax")


def test_greedy_protocol_rollouts_do_not_depend_on_the_evaluation_seed():
    """Dark Room is deterministic, so greedy decoding must give the same returns whatever the seed."""
    model, goals = tiny_model(), dark_room_goals("test")[:4]
    record = {"env_family": "DarkRoom", "env_kwargs": {}, "data": {"source": {"name": "q_learning"}},
              "data_last_episode_return": 8.0}
    protocol = get_protocol("adeps", episodes=4, rollouts_per_task=2)
    one, result = evaluate_protocol(model, record, goals, protocol, seed=1)
    two, _ = evaluate_protocol(model, record, goals, protocol, seed=2)
    assert one["agents"]["model"] == two["agents"]["model"]
    table = result["tables"]["model"]
    assert (table.groupby("task")["last10"].nunique() == 1).all(), "both rollouts of a goal act alike"
    assert one["agents"]["memory_baseline"] != two["agents"]["memory_baseline"], "the random control depends on it"


def test_controls_play_the_same_tasks_and_rollouts():
    model, goals = tiny_model(), dark_room_goals("test")[:5]
    record = {"env_family": "DarkRoom", "env_kwargs": {}, "data": {"source": {"name": "q_learning"}},
              "data_last_episode_return": 8.0}
    figures, result = evaluate_protocol([model, tiny_model(seed=1)], record, goals, get_protocol("adeps", episodes=3), seed=0)
    tables = result["tables"]
    keys = {name: set(map(tuple, table[["task", "rollout"]].to_numpy())) for name, table in tables.items()}
    assert keys["model"] == keys["random_weights"] == keys["memory_baseline"] == {(t, r) for t in range(5) for r in range(4)}
    assert sorted(tables["model"]["seed"].unique()) == [0, 1], "two training seeds"
    assert figures["training_seeds"] == 2 and figures["tasks"] == 5
    assert figures["optimal_return"] == pytest.approx(optimal_returns("DarkRoom", goals).mean())


def test_memory_baseline_returns_to_the_goal_once_rewarded():
    """After its first reward, the no-model control walks straight back and stays: the optimal return."""
    goals = dark_room_goals("test")
    env = make_batched("DarkRoom", goals)
    frame, played = play(env, MemoryAgent(env, seed=0), episodes=60, seed=0)
    table = rollout_table(frame, played, rollouts_per_task=1)
    optimal = optimal_returns("DarkRoom", goals)
    found = table["first_reward_episode"] < 60
    assert found.sum() >= 12, "random moves find most goals within 60 episodes"
    for task, first in enumerate(table["first_reward_episode"]):
        later = frame[(frame["task"] == task) & (frame["episode"] > first)]["return"]
        assert (later == optimal[task]).all()


def test_memory_baseline_learns_key_then_door():
    tasks = key_to_door_tasks("test")[:10]
    env = make_batched("DarkKeyToDoor", tasks)
    frame, _ = play(env, MemoryAgent(env, seed=0), episodes=150, seed=0)
    assert frame[frame["episode"] >= 140]["return"].mean() == 2.0, "both rewards every episode once both are known"
    env = make_batched("DarkKeyToDoor", tasks)
    random_frame, _ = play(env, RandomAgent(env, seed=0), episodes=150, seed=0)
    assert random_frame["return"].mean() < 0.5


def test_exploration_diagnostics_of_a_known_run():
    env = make_batched("DarkRoom", np.array([[4, 5]]))  # one step right of the start
    frame, played = play(env, MemoryAgent(env, seed=3), episodes=5, seed=3)
    table = rollout_table(frame, played, rollouts_per_task=1)
    rewarded = np.flatnonzero(played.rewards[0] > 0)[0]
    assert table["first_reward_episode"][0] == rewarded // 20
    assert table["cells_before_first_reward"][0] == len(np.unique(played.observations[0, :rewarded + 1]))


class RecordingModel(ICRLTransformer):
    """A model that keeps the previous rewards it is given, to see what enters its context."""

    def forward(self, observations, prev_actions, prev_rewards, **kwargs):
        self.seen = getattr(self, "seen", []) + [(prev_actions[:, -1].clone(), prev_rewards[:, -1].clone())]
        return super().forward(observations, prev_actions, prev_rewards, **kwargs)


def test_the_door_reward_that_ends_an_episode_enters_the_context():
    tasks = key_to_door_tasks("test")[:6]
    config = tiny_model("DarkKeyToDoor").config
    model = RecordingModel(config).eval()
    env = make_batched("DarkKeyToDoor", tasks)

    class MemoryWithModelInputs(MemoryAgent):
        """Acts as the memory control (which opens the door often) while feeding the model its steps."""

        def __init__(self, env):
            super().__init__(env, seed=0)
            self.model_agent = ModelAgent(model, env.num_envs)

        def act(self, observations):
            self.model_agent.act(observations)
            return super().act(observations)

        def observe(self, actions, rewards, done, next_observations):
            self.model_agent.observe(actions, rewards, done, next_observations)
            super().observe(actions, rewards, done, next_observations)

    _, played = play(env, MemoryWithModelInputs(env), episodes=60, seed=0)
    door_steps = np.argwhere(played.dones & (played.rewards > 0))  # a terminal step rewarded: the door
    assert len(door_steps) > 10
    for row, step in door_steps[:20]:
        prev_action, prev_reward = (array[row].item() for array in model.seen[step + 1])
        assert prev_action == config.num_actions, "an episode's first step still has no previous action"
        assert prev_reward == 1.0, "the door's reward is in the next episode's first token"


def test_bootstrap_interval_and_comparison():
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 1.0, size=200)
    mean, low, high = bootstrap_ci(values)
    assert low < mean < high and low < 5.0 < high and high - low < 0.4
    assert compare(values + 1.0, values)["differs"] and compare(values + 1.0, values)["difference"] == pytest.approx(1.0)
    assert not compare(values, values[rng.permutation(200)] * 0 + values)["differs"]
    with pytest.raises(ValueError, match="same tasks"):
        compare(values, values[:10])


def test_saved_evaluations_pair_up_task_by_task(tmp_path):
    """evaluate --save keeps the per-task values behind the intervals; compare pairs two such saves."""
    import json

    import pandas as pd

    from icrl_lab.recipes import compare_evaluations, evaluation_file, save_evaluation

    goals = dark_room_goals("test")[:4]
    record = {"env_family": "DarkRoom", "env_kwargs": {}, "data": {"source": {"name": "q_learning"}},
              "data_last_episode_return": 8.0}
    protocol = get_protocol("adeps", episodes=6, rollouts_per_task=2, decoding="sample")
    saved = {}
    for name, model_seed, evaluation_seed in (("a", 0, 1), ("b", 1, 1), ("other_seed", 0, 2)):
        figures, result = evaluate_protocol(tiny_model(seed=model_seed), record, goals, protocol, seed=evaluation_seed)
        save_evaluation({"checkpoint": name, **figures}, result, tmp_path / name, record)
        saved[name] = figures
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["evaluation-per-task.csv", "evaluation.json", "figure.png"]
    values = pd.read_csv(tmp_path / "a" / evaluation_file(per_task=True))
    assert set(values["agent"]) == {"model", "random_weights", "memory_baseline"} and len(values) == 3 * len(goals)
    for agent, figures in saved["a"]["agents"].items():
        assert values[values["agent"] == agent]["last10"].mean() == pytest.approx(figures["last10"]["mean"])

    itself = compare_evaluations(tmp_path / "a", tmp_path / "a")["a_minus_b"]
    assert set(itself) == {"first", "last10", "first_reward_episode", "cells_before_first_reward"}
    assert all(figure["difference"] == 0 and not figure["differs"] for figure in itself.values())
    paired = compare_evaluations(tmp_path / "a", tmp_path / "b")
    assert paired["a"] == "a" and paired["b"] == "b" and paired["evaluation_seed"] == 1
    assert paired["a_minus_b"]["last10"]["difference"] == pytest.approx(
        saved["a"]["agents"]["model"]["last10"]["mean"] - saved["b"]["agents"]["model"]["last10"]["mean"])
    with pytest.raises(ValueError, match="differ in evaluation_seed"):
        compare_evaluations(tmp_path / "a", tmp_path / "other_seed")
    (tmp_path / "b" / evaluation_file(per_task=True)).unlink()
    with pytest.raises(FileNotFoundError, match="evaluation-per-task.csv does not exist"):
        compare_evaluations(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "a" / "evaluation.json").read_text())["checkpoint"] == "a"


def test_compare_refuses_saves_of_other_tasks_of_the_same_number(tmp_path):
    """Key-to-Door's validation and test splits are both 50 tasks with the same optimum: only the recorded
    task digest tells them apart. A save from before digests were recorded pairs, and says it was not checked."""
    import json

    from icrl_lab.recipes import compare_evaluations, evaluate_checkpoint, save_evaluation

    record = {"env_family": "DarkKeyToDoor", "env_kwargs": {}, "data": {"source": {"name": "q_learning"}},
              "data_last_episode_return": 1.0}
    model = tiny_model("DarkKeyToDoor")
    for split in ("test", "validation"):
        figures, result = evaluate_checkpoint(model, record, "adeps", split=split, seed=1, episodes=2, rollouts_per_task=1)
        save_evaluation({"checkpoint": split, **figures}, result, tmp_path / split, record, episodes=2)
    test, validation = (json.loads((tmp_path / split / "evaluation-2-episodes.json").read_text())
                        for split in ("test", "validation"))
    assert (test["tasks"], test["optimal_return"]) == (validation["tasks"], validation["optimal_return"]) == (50, 2.0)
    assert test["split"] == "test" and test["task_digest"] != validation["task_digest"]
    with pytest.raises(ValueError, match="differ in split"):
        compare_evaluations(tmp_path / "test", tmp_path / "validation", episodes=2)
    assert compare_evaluations(tmp_path / "test", tmp_path / "test", episodes=2)["tasks_checked"]
    for key in ("split", "task_digest"):
        del validation[key]  # as saved before the tasks were recorded
    (tmp_path / "validation" / "evaluation-2-episodes.json").write_text(json.dumps(validation))
    unchecked = compare_evaluations(tmp_path / "test", tmp_path / "validation", episodes=2)
    assert not unchecked["tasks_checked"] and "save it again" in unchecked["note"] and "task_digest" not in unchecked
