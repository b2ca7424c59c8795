"""Training must learn, resume to identical weights, and feed in-context evaluation and the CLI."""
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import bandit_tasks, dark_room_goals
from icrl_lab.evaluate import bandit_regret, baseline_regret, in_context_rollout, summarize
from icrl_lab.headless import HeadlessADConfig
from icrl_lab.histories import model_inputs
from icrl_lab.models import ADConfig, DPTConfig, load_model, training_target
from icrl_lab.sequence_models import GRUConfig
from icrl_lab.sources import collect_rl_histories
from icrl_lab.train import TrainConfig, learning_rate_factor, train

SMALL = dict(d_model=32, n_layer=2, n_head=2)


@pytest.fixture(scope="module")
def dark_room_data():
    return collect_noise_distillation("DarkRoom", dark_room_goals("train"), num_steps=400, histories_per_task=4, seed=0)


def test_learning_rate_warms_up_then_decays():
    config = TrainConfig(updates=100, warmup_fraction=0.1)
    factors = [learning_rate_factor(u, config) for u in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:])) and factors[-1] < 0.01


def test_soft_labels_that_are_one_hot_train_exactly_as_hard_labels_and_a_soft_teacher_is_learned(dark_room_data):
    # Distillation from a teacher's probabilities: with one-hot labels the same run as on the action ids.
    one_hot = np.eye(5, dtype=np.float32)[dark_room_data.actions]
    hard = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, **SMALL)
    soft = ADConfig(**{**hard.__dict__, "target": "action_probabilities"})
    settings = TrainConfig(updates=20, batch_size=16, context_steps=40, learning_rate=3e-3)
    _, hard_log = train(hard, dark_room_data, settings, progress=False)
    _, soft_log = train(soft, replace(dark_room_data, action_probabilities=one_hot), settings, progress=False)
    assert [line["loss"] for line in soft_log] == pytest.approx([line["loss"] for line in hard_log], rel=1e-5)
    # A teacher that always says "down 70%, else uniform": the model's prediction goes there.
    teacher = np.full((*dark_room_data.actions.shape, 5), 0.075, dtype=np.float32)
    teacher[..., 3] = 0.7
    model, _ = train(soft, replace(dark_room_data, action_probabilities=teacher),
                     replace(settings, updates=150), progress=False)
    with torch.no_grad():
        logits = model(*(x[:, :40] for x in model_inputs(dark_room_data, 5, rows=[0, 1])))
    np.testing.assert_allclose(torch.softmax(logits, -1).mean((0, 1)).numpy(), teacher[0, 0], atol=0.05)
    with pytest.raises(ValueError, match=r"learns action_probabilities, which the data lacks"):
        train(soft, dark_room_data, settings, progress=False)


def test_a_short_run_learns_the_noise_schedule(dark_room_data):
    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, **SMALL)
    _, log = train(config, dark_room_data, TrainConfig(updates=150, batch_size=32, context_steps=40,
                                                       learning_rate=3e-3), progress=False)
    # Uniform guessing costs ln 5 = 1.609 nats; knowing only how noisy each stretch of the history is
    # already gets below 1.5.
    assert log[0]["loss"] < 1.58 and log[-1]["loss"] < 1.5


def test_the_demonstrator_policy_target_is_the_expected_loss_of_the_drawn_action(dark_room_data):
    # Its cross-entropy is the mean, over the demonstrator's draws, of the cross-entropy of the drawn action:
    # the same objective as AD's, without the noise of the draw.
    config = ADConfig(num_obs=81, num_actions=5, target="demonstrator_policy")
    batch = {"epsilon": torch.tensor([[1.0, 0.0, 0.4]]), "optimal_actions": torch.tensor([[2, 3, 1]])}
    target = training_target(batch, config)
    np.testing.assert_allclose(target[0], 0.2)
    np.testing.assert_allclose(target[1], [0, 0, 0, 1, 0])
    logits = torch.randn(3, 5)
    drawn = torch.stack([torch.nn.functional.cross_entropy(logits, torch.full((3,), a), reduction="none")
                         for a in range(5)], dim=1)
    expected = (target * drawn).sum(1).mean()
    assert torch.allclose(torch.nn.functional.cross_entropy(logits, target), expected)
    model_config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40,
                            target="demonstrator_policy", **SMALL)
    _, log = train(model_config, dark_room_data, TrainConfig(updates=150, batch_size=32, context_steps=40,
                                                             learning_rate=3e-3), progress=False)
    assert log[-1]["loss"] < 1.5, "learns the noise schedule as AD does"
    q_learning = collect_rl_histories("DarkRoom", dark_room_goals("train")[:2], "q_learning", 100, seed=0)
    with pytest.raises(ValueError, match=r"learns demonstrator_policy, which the data lacks \(it needs \['epsilon'\]\)"):
        train(model_config, q_learning, TrainConfig(updates=1, batch_size=2, context_steps=40), progress=False)
    with pytest.raises(ValueError, match="target='next' is not allowed"):
        ADConfig(num_obs=81, num_actions=5, target="next")
    with pytest.raises(ValueError, match="target='next' is not allowed"):
        GRUConfig(num_obs=81, num_actions=5, target="next")
    with pytest.raises(ValueError, match="target='demonstrator_policy' is not allowed for Headless-AD"):
        HeadlessADConfig(num_obs=81, num_actions=5, target="demonstrator_policy")


def test_dpt_on_bandits_learns_to_find_the_best_arm():
    tasks = bandit_tasks(400, k=5, seed=0)
    data = collect_rl_histories("BernoulliBandit", tasks, "random", num_steps=60, seed=0, concentration=1.0,
                                env_kwargs={"horizon": 60})
    config = DPTConfig(num_obs=1, num_actions=5, window_steps=60, **SMALL)
    model, log = train(config, data, TrainConfig(updates=400, batch_size=32, context_steps=60, learning_rate=3e-3),
                       progress=False)
    assert log[-1]["loss"] < 1.3, "the best arm is predictable from the rewards in context"
    test = bandit_tasks(200, k=5, seed=1)
    _, played = in_context_rollout(model, "BernoulliBandit", test, episodes=1, env_kwargs={"horizon": 60},
                                   mode="sample", seed=0)
    model_regret = bandit_regret(played.actions.astype(np.int64), test)[:, -1].mean()
    random_regret = (test.max(axis=1) - test.mean(axis=1)).mean() * 60
    assert model_regret < 0.8 * random_regret
    assert baseline_regret("thompson", test, 60)[:, -1].mean() < random_regret


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(dark_room_data, tmp_path):
    model_config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=20, dropout=0.1, **SMALL)
    config = TrainConfig(updates=30, batch_size=8, context_steps=20, seed=3, checkpoint_every=10)
    straight, _ = train(model_config, dark_room_data, config, out_dir=tmp_path / "a", progress=False)
    train(model_config, dark_room_data, config, out_dir=tmp_path / "b", progress=False, stop_at=20)
    assert json.loads((tmp_path / "b" / "training_state.json").read_text())["update"] == 20
    resumed, log = train(model_config, dark_room_data, config, out_dir=tmp_path / "b", resume=True, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    loaded, record = load_model(tmp_path / "b")
    assert record["updates_done"] == 30 and record["train_config"]["seed"] == 3
    seconds = [entry["seconds"] for entry in log]
    assert [entry["update"] for entry in log][-2:] == [20, 30] and seconds == sorted(seconds), \
        "the log's training time counts on across the resume"


def test_resume_without_a_checkpoint_says_what_to_do(dark_room_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no training state to resume from"):
        train(ADConfig(num_obs=81, num_actions=5, **SMALL), dark_room_data, TrainConfig(updates=2, context_steps=20),
              out_dir=tmp_path, resume=True, progress=False)


def test_a_run_can_start_from_a_trained_model_on_other_data(dark_room_data, tmp_path):
    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, **SMALL)
    settings = TrainConfig(updates=150, batch_size=32, context_steps=40, learning_rate=3e-3)
    train(config, dark_room_data, settings, out_dir=tmp_path / "first", progress=False)
    other = collect_noise_distillation("DarkRoom", dark_room_goals("test"), num_steps=400, histories_per_task=4, seed=1)
    short = TrainConfig(updates=3, batch_size=32, context_steps=40, learning_rate=1e-4, log_every=1)
    _, fresh = train(config, other, short, progress=False)
    _, started = train(config, other, short, out_dir=tmp_path / "second", initial_weights=tmp_path / "first",
                       progress=False)
    # Fresh weights guess uniformly (about ln 5 = 1.61 nats); the trained ones know the noise schedule.
    assert fresh[0]["loss"] > 1.58 and started[0]["loss"] < 1.5
    _, record = load_model(tmp_path / "second")
    assert record["initial_weights"] == {"checkpoint": str(tmp_path / "first"),
                                         "weights_sha256": load_model(tmp_path / "first")[1]["weights_sha256"]}
    wider = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, d_model=64, n_layer=2, n_head=2)
    with pytest.raises(ValueError, match="cannot start from .*other parameters or shapes"):
        train(wider, other, short, initial_weights=tmp_path / "first", progress=False)


def test_in_context_rollout_frame_and_figures(dark_room_data):
    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, **SMALL)
    model, _ = train(config, dark_room_data, TrainConfig(updates=5, batch_size=8, context_steps=40), progress=False)
    goals = dark_room_goals("test")
    frame, played = in_context_rollout(model, "DarkRoom", goals, episodes=3, mode="sample", seed=1)
    assert list(frame.columns) == ["task", "episode", "return"] and len(frame) == 16 * 3
    assert played.num_steps == 60 and np.all(played.dones[:, 19::20])
    np.testing.assert_allclose(frame.sort_values(["task", "episode"])["return"].to_numpy(),
                               played.episode_returns().ravel())
    figures = summarize(frame, optimal_return=16.0, best_in_data=8.0)
    assert figures["ratio_to_best_in_data"] == pytest.approx(figures["mean_return_last10"] / 8.0)
    again, _ = in_context_rollout(model, "DarkRoom", goals, episodes=3, mode="sample", seed=1)
    assert again.equals(frame), "same seed, same rollout"


def test_cli_train_then_evaluate(tmp_path):
    def run(*args):
        result = subprocess.run([sys.executable, "-m", "icrl_lab", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    data = tmp_path / "data.h5"
    run("collect", "--num-steps", "200", "--seed", "1", "--out", str(data))
    run("train", "--data", str(data), "--out", str(tmp_path / "ad"), "--updates", "20", "--batch-size", "8",
        "--context-steps", "40", "--window-steps", "40", "--d-model", "32", "--n-layer", "1", "--n-head", "2")
    figures = run("evaluate", str(tmp_path / "ad"), "--tasks", "test", "--episodes", "3", "--seed", "0")
    assert figures["protocol"] == "adeps" and figures["decoding"] == "greedy" and figures["episodes"] == 3
    for key in ("first", "last10", "ratio_to_best_in_data", "memory_baseline", "random_weights", "best_in_data", "optimal"):
        assert key in figures["headline"]
    assert figures["optimal_return"] == pytest.approx(np.mean(21 - np.abs(dark_room_goals("test") - 4).sum(1)))
    again = run("evaluate", str(tmp_path / "ad"), "--episodes", "3", "--decoding", "sample", "--temperature", "0.5")
    assert again["ablation"] and again["decoding"] == "sample"
    run("train", "--data", str(data), "--out", str(tmp_path / "ad_on"), "--start-from", str(tmp_path / "ad"),
        "--updates", "2", "--batch-size", "8", "--context-steps", "40", "--window-steps", "40", "--d-model", "32",
        "--n-layer", "1", "--n-head", "2")
    assert load_model(tmp_path / "ad_on")[1]["initial_weights"]["checkpoint"] == str(tmp_path / "ad")


def test_greedy_when_rewarded_exploits_only_with_a_reward_in_context(dark_room_data):
    from icrl_lab.histories import previous_actions_and_rewards

    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=30, **SMALL)
    model, _ = train(config, dark_room_data, TrainConfig(updates=30, batch_size=16, context_steps=30), progress=False)
    goals = dark_room_goals("all")
    _, played = in_context_rollout(model, "DarkRoom", goals, episodes=4, mode="greedy_when_rewarded", seed=0)
    prev_actions, prev_rewards = previous_actions_and_rewards(played, 5)
    with torch.no_grad():
        logits = model(torch.as_tensor(played.observations.astype(np.int64)), torch.as_tensor(prev_actions),
                       torch.as_tensor(prev_rewards))
    greedy = logits.argmax(-1).numpy()
    rewards = played.rewards > 0
    in_context = np.zeros_like(rewards)
    for t in range(played.num_steps):
        in_context[:, t] = rewards[:, max(0, t - 30):t].any(axis=1)
    assert in_context.any() and (~in_context).any()
    assert np.array_equal(played.actions[in_context], greedy[in_context])
    assert not np.array_equal(played.actions[~in_context], greedy[~in_context]), "no reward yet: it samples"


@pytest.mark.slow
def test_a_compiled_run_trains_to_the_weights_of_an_eager_one(dark_room_data):
    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=20, dropout=0.0, **SMALL)
    settings = dict(updates=3, batch_size=8, context_steps=20)
    eager, _ = train(config, dark_room_data, TrainConfig(**settings), progress=False)
    compiled, _ = train(config, dark_room_data, TrainConfig(**settings, compile=True), progress=False)
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=f"{name} differs")
