"""Probes (icrl_lab.probe): attention maps and their typing, ablations, context edits, linear probes, exploration."""
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from icrl_lab import plots, probe
from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals, key_to_door_tasks, make_batched, task_split
from icrl_lab.envs.grid import cell_id, move
from icrl_lab.evaluate import bootstrap_ci, in_context_rollout
from icrl_lab.histories import Histories, episode_of_step, previous_actions_and_rewards
from icrl_lab.models import ADConfig, ICRLTransformer, rotate, window_mask
from icrl_lab.recipes import load_shipped
from icrl_lab.schedules import LinearSchedule, schedule_of
from icrl_lab.sources import optimal_returns


@pytest.fixture(scope="module")
def evaluation(untrained_rollout):
    model, _, played = untrained_rollout
    return model, played


def test_attention_maps_are_normalised_step_to_step_maps(evaluation):
    model, played = evaluation
    maps = probe.attention_maps(model, played, rows=[0, 2], steps=60)
    assert maps.shape == (2, 2, 2, 60, 60)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(maps[0, 0, 0], k=1) == 0), "no step attends to its future"
    assert np.all(maps[0, 0, 0][np.tril_indices(60, k=-40)] == 0), "nor further back than its window"


def test_reward_attention_measures_the_lift_over_uniform_attention():
    steps, window = 6, 3
    prev_rewards = np.array([[0, 1, 0, 0, 1, 0]], np.float32)
    uniform = np.tril(np.ones((steps, steps))) * np.triu(np.ones((steps, steps)), k=-(window - 1))
    uniform /= uniform.sum(-1, keepdims=True)
    seeking = np.zeros((steps, steps))
    for query in range(steps):
        visible = [k for k in range(max(0, query - window + 1), query + 1)]
        rewarded = [k for k in visible if prev_rewards[0, k] > 0]
        seeking[query, rewarded or visible] = 1 / len(rewarded or visible)
    maps = np.stack([uniform, seeking])[None, None]  # (1 history, 1 layer, 2 heads, steps, steps)
    table = probe.reward_attention(maps, prev_rewards, window)
    assert list(table["head"]) == [0, 1]
    assert table.loc[0, "lift"] == pytest.approx(1.0)
    assert table.loc[1, "attention_to_rewarded"] == pytest.approx(1.0) and table.loc[1, "lift"] > 2
    with pytest.raises(ValueError, match="nothing to measure"):
        probe.reward_attention(maps, np.zeros_like(prev_rewards), window)


def test_episode_attention_counts_episodes_back():
    dones = np.array([[0, 1, 0, 1, 0, 1]], bool)
    np.testing.assert_array_equal(episode_of_step(dones), [[0, 0, 1, 1, 2, 2]])
    on_first_step = np.zeros((6, 6))
    on_first_step[:, 0] = 1.0  # every step looks at the very first one
    table = probe.episode_attention(on_first_step[None, None, None], dones, max_back=1)
    shares = table.set_index("episodes_back")["attention"]
    assert shares[0] == pytest.approx(2 / 6) and shares[1] == pytest.approx(4 / 6), "2 steps back, clipped to 1"


def test_capture_does_not_change_outputs_and_the_table_is_a_normalised_causal_window(evaluation):
    model, played = evaluation
    prev_actions, prev_rewards = previous_actions_and_rewards(played, model.config.num_actions)
    inputs = [torch.as_tensor(a[:2, :60]) for a in (played.observations.astype(np.int64), prev_actions, prev_rewards)]
    with torch.no_grad():
        plain = model(*inputs)
        captured, _ = model(*inputs, return_attention=True)
    torch.testing.assert_close(plain, captured, rtol=1e-5, atol=1e-6)
    maps = probe.attention_maps(model, played, rows=[0, 1], steps=60)
    table = probe.attention_table(maps, played, model.config.window_steps, model.config.num_actions, rows=[0, 1])
    sums = table.groupby(["history", "layer", "head", "query"])["weight"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    assert (table["distance"] >= 0).all() and (table["distance"] < model.config.window_steps).all()
    assert set(table["episode"]) == {"current", "earlier"}
    goal = played.tasks[0, 0] * 9 + played.tasks[0, 1]
    assert (table.loc[table["history"] == 0, "key_is_goal"] == (table.loc[table["history"] == 0, "key_cell"] == goal)).all()


def test_head_types_find_a_head_that_seeks_rewarded_steps_beyond_recency(evaluation):
    model, played = evaluation
    maps = probe.attention_maps(model, played)
    features = probe.key_features(played, model.config.num_actions)
    seeking = maps.copy()
    visible = probe.attention._visible(played.num_steps, model.config.window_steps)
    target = features["rewarded"] & visible
    has = target.any(-1)
    seeking[:, 0, 0] = np.where(has[..., None], target / np.maximum(target.sum(-1, keepdims=True), 1), seeking[:, 0, 0])
    types = probe.head_types(seeking, played, model.config.window_steps, model.config.num_actions).set_index(
        ["layer", "head", "feature"])
    assert types.loc[(0, 0, "rewarded"), "attention"] == pytest.approx(1.0)
    assert types.loc[(0, 0, "rewarded"), "lift_recency"] > 2
    assert types.loc[(0, 0, "previous"), "lift_recency"] == pytest.approx(1.0, abs=0.3)


def test_ablating_a_head_removes_exactly_its_contribution():
    torch.manual_seed(1)
    model = ICRLTransformer(ADConfig(num_obs=9, num_actions=3, window_steps=5, d_model=8, n_layer=1, n_head=2)).eval()
    for parameter in model.parameters():  # biases too, so that nothing is trivially zero
        torch.nn.init.normal_(parameter, std=0.5)
    observations, actions, rewards = torch.randint(9, (2, 7)), torch.randint(4, (2, 7)), torch.rand(2, 7)
    outputs = []
    hook = model.blocks[0].attention.register_forward_hook(lambda module, args, output: outputs.append(output[0]))
    with torch.no_grad():
        model(observations, actions, rewards)
        with probe.ablated(model, heads=[(0, 1)]):
            ablated_logits = model(observations, actions, rewards)
        x = model.blocks[0].norm1(model.embed(observations, actions, rewards))
    hook.remove()
    attention = model.blocks[0].attention
    # By hand: head 1's output, y_1 = softmax(q_1 k_1^T / sqrt(d) + causal window mask) v_1, through its
    # slice of the output projection.
    q, k, v = attention.qkv(x).view(2, 7, 3, 2, 4).permute(2, 0, 3, 1, 4)
    positions = torch.arange(7)
    q, k = rotate(q, positions), rotate(k, positions)
    scores = (q[:, 1] @ k[:, 1].transpose(-1, -2)) / 2.0
    scores = scores.masked_fill(~window_mask(positions, positions, 5), float("-inf"))
    head_output = torch.softmax(scores, -1) @ v[:, 1]
    contribution = head_output @ attention.out.weight[:, 4:].T
    torch.testing.assert_close(outputs[0] - outputs[1], contribution, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # and the rest of the model is unchanged: recompute the logits from the ablated output
        after = model.embed(observations, actions, rewards) + outputs[1]
        after = after + model.blocks[0].mlp(model.blocks[0].norm2(after))
        torch.testing.assert_close(model.head(model.norm(after)), ablated_logits, rtol=1e-5, atol=1e-5)
    assert attention.head_mask is None and model.blocks[0].mlp_enabled, "restored after the block"
    with torch.no_grad(), probe.ablated(model, mlps=[0]):
        skipped = model(observations, actions, rewards)
    with torch.no_grad():
        torch.testing.assert_close(skipped, model.head(model.norm(model.embed(observations, actions, rewards) + outputs[0])))


def test_ablating_every_head_destroys_in_context_improvement_of_the_shipped_model():
    model, record = load_shipped("dark_room_adeps")
    goals = np.repeat(dark_room_goals("test"), 4, axis=0)
    improvement = {}
    for name, parts in (("intact", {}), ("no heads", {"layers": range(model.config.n_layer)})):
        with probe.ablated(model, **parts):
            frame, played = in_context_rollout(model, record["env_family"], goals, 12, record["env_kwargs"],
                                               mode="sample", temperature=1.0, seed=0)
        units = probe.unit_metrics(frame, played)
        improvement[name] = bootstrap_ci(units["improvement"])
    assert improvement["intact"][1] > 0, f"the shipped model improves in context: {improvement['intact']}"
    assert improvement["no heads"][1] <= 0 and improvement["no heads"][0] < improvement["intact"][0] / 3, improvement


def test_a_probe_recovers_a_planted_feature_and_not_shuffled_labels():
    torch.manual_seed(0)
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, window_steps=20, d_model=16, n_layer=1, n_head=2)).eval()
    with torch.no_grad():  # plant the class obs % 4 along the first four directions of the observation embedding
        model.obs_embeddings[0].weight[:, :4] += torch.nn.functional.one_hot(torch.arange(81) % 4, 4).float()
    played = probe.random_histories("DarkRoom", dark_room_goals("test")[:8], 60, seed=0)
    labels = played.observations.astype(np.int64) % 4
    targets = {"planted": ("multiclass", labels, np.ones_like(labels, dtype=bool))}
    table = probe.probe_layers(model, played, test_rows=[0, 1], targets=targets, max_samples=400, random_model=False)
    embeddings = table.set_index("layer").loc[0]
    assert embeddings["score"] > 0.9 and embeddings["chance"] < 0.4
    assert embeddings["shuffled"] < 0.45, "labels shuffled across histories carry nothing to learn"


def test_move_reward_puts_the_rewards_on_a_visited_cell_and_exploration_stats_are_sane():
    played = probe.random_histories("DarkRoom", np.repeat(dark_room_goals("test")[:4], 2, axis=0), 80, seed=1)
    edited, cells = probe.edit_context(played, "move_reward", size=9, seed=0)
    reached = probe.reached_cells(played, 9)
    assert ((edited.rewards > 0) == (reached == cells[:, None])).all()
    assert all(cell in reached[row] for row, cell in enumerate(cells))
    stats, coverage = probe.exploration_stats(played)
    assert (np.diff(coverage, axis=1) >= 0).all() and (coverage <= 81).all()
    assert stats["revisit_rate"].between(0, 1).all()
    for row in np.flatnonzero(stats["found"]):
        assert played.rewards[row, :stats.loc[row, "first_reward_step"]].sum() == 0


@pytest.mark.slow
def test_probe_command_writes_the_tables_and_figures(tmp_path):
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "icrl_lab", "probe", "dark_room_adeps", "--quick", "--out",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    written = {path.name for path in tmp_path.iterdir()}
    assert {"head_types.csv", "ablation_effects.csv", "probes.csv", "exploration.csv", "headline.json",
            "attention.png", "ablation.png", "probes.png", "coverage.png"} <= written
    assert json.loads((tmp_path / "headline.json").read_text()).keys() <= printed.keys()


def test_the_bayes_optimal_demonstrator_prediction_from_an_empty_room():
    # From the centre of an empty 9x9 room every cell is as likely a goal; the demonstrator moves toward
    # it (vertically first) with probability 1 - epsilon, else uniformly: 36 goals above, 36 below, 4 on
    # either side in the centre row, and the centre itself.
    env = make_batched("DarkRoom", dark_room_goals("test")[:1])
    agent = probe.BayesDemonstratorAgent(env, np.full(400, 0.5), window_steps=400)
    predicted = agent.probabilities(env.reset_rows(seed=0))
    np.testing.assert_allclose(predicted[0], 0.1 + 0.5 * np.array([1, 36, 4, 36, 4]) / 81)
    with pytest.raises(ValueError, match="decoding='greedy_when_rewarded' is not allowed here"):
        probe.BayesDemonstratorAgent(env, np.full(400, 0.5), 400, decoding="greedy_when_rewarded")
    with pytest.raises(ValueError, match="at least window_steps=400 values"):
        probe.BayesDemonstratorAgent(env, np.full(80, 0.5), 400)


def test_the_bayes_optimal_demonstrator_rules_out_visited_cells_and_keeps_a_found_goal():
    goals = dark_room_goals("test")
    env = make_batched("DarkRoom", goals[:1])
    agent = probe.BayesDemonstratorAgent(env, np.full(400, 0.5), window_steps=400)
    cell = env.reset_rows(seed=0)
    agent.act(cell)
    agent.observe(np.array([1]), np.array([0.0]), np.array([False]), cell - 9)  # up, no reward
    posterior = agent.log_posterior()[0]
    assert posterior[cell[0] - 9] == -np.inf and np.isfinite(posterior).sum() == 80
    agent.act(cell - 9)
    agent.observe(np.array([2]), np.array([1.0]), np.array([False]), cell - 8)  # right, rewarded
    assert np.flatnonzero(np.isfinite(agent.log_posterior()[0])).tolist() == (cell - 8).tolist()
    # Greedy on the whole-history recipe's curriculum: once found, each goal is walked to by the shortest
    # path in every later episode, so the last 10 episodes earn the optimal return.
    frame, _ = probe.bayes_rollout(goals, LinearSchedule().with_floor(0.4117).values(400), 400, episodes=30, seed=1)
    last10 = frame[frame["episode"] >= 20].groupby("task")["return"].mean()
    np.testing.assert_allclose(last10.to_numpy(), optimal_returns("DarkRoom", goals))
    # What notebook 05 shows: its curve, named in the legend, ends on the optimum line.
    optimal = float(optimal_returns("DarkRoom", goals).mean())
    ax = plots.protocol_curves({"perfect fit (Bayes-optimal prediction)": frame}, 8.47, optimal)
    curve = ax.get_lines()[0]
    assert curve.get_label() == "perfect fit (Bayes-optimal prediction)"
    assert curve.get_ydata()[-1] == pytest.approx(optimal) and curve.get_ydata()[0] < 2.0
    assert "perfect fit (Bayes-optimal prediction)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(ax.figure)


def test_a_perfect_fit_of_one_known_noise_level_is_the_fixed_noise_one_and_slides_its_window_alike():
    # With a single epsilon level, the unknown-noise fit is the fit that reads that epsilon at every place:
    # the same prediction at every step of a rollout three windows long (its sums slide, the other's restart).
    goals = dark_room_goals("test")[:4]
    env = make_batched("DarkRoom", goals)
    unknown = probe.UnknownNoiseBayesAgent(env, [0.5], [1.0], window_steps=30, decoding="sample", seed=3)
    known = probe.BayesDemonstratorAgent(env, np.full(30, 0.5), window_steps=30)
    cells = env.reset_rows(seed=0)
    for _ in range(90):
        np.testing.assert_allclose(unknown.probabilities(cells), known.probabilities(cells), atol=1e-9)
        actions = unknown.act(cells)
        known.cells = cells
        next_cells, rewards, terminated, truncated = env.step_arrays(actions)
        done = terminated | truncated
        for agent in (unknown, known):
            agent.observe(actions, rewards, done, next_cells)
        cells = env.reset_rows(done) if done.any() else next_cells
    with pytest.raises(ValueError, match="weights positive probabilities summing to 1"):
        probe.UnknownNoiseBayesAgent(env, [0.5, 1.0], [0.5, 0.6], window_steps=30)
    # Along recorded histories, with the whole history in its window, it predicts as the fixed-noise fit does.
    data = collect_noise_distillation("DarkRoom", goals, num_steps=60, histories_per_task=2, seed=0)
    data = probe.with_window_epsilon(data, np.full(60, 0.5))  # the fixed-noise fit reads 0.5 at every step
    np.testing.assert_allclose(probe.unknown_noise_action_probabilities(data, [0.5], [1.0], window_steps=61),
                               probe.bayes_action_probabilities(data), atol=1e-9)


def test_the_papers_pace_asks_for_greedy_exploration_and_not_for_sampling():
    # One long history per goal: epsilon spends 90% of it falling from 1 to the floor and 10% at the floor.
    epsilons, weights = probe.epsilon_levels(LinearSchedule().with_floor(0.5), 80_000, levels=11)
    np.testing.assert_allclose(epsilons, np.linspace(0.5, 1, 11))
    assert weights.sum() == pytest.approx(1) and weights[0] == pytest.approx(0.1 + 0.9 / 20, abs=1e-3)
    # Its perfect fit, greedy with the paper's 80-step window, finds the held-out goals within a few episodes
    # and returns to them; sampled, it stays nearly as noisy as the context it makes for itself.
    goals = dark_room_goals("test")
    greedy, _ = probe.unknown_noise_bayes_rollout(goals, epsilons, weights, 80, episodes=15, seed=1)
    sampled, _ = probe.unknown_noise_bayes_rollout(goals, epsilons, weights, 80, episodes=15, decoding="sample", seed=1)
    last5 = {name: frame[frame["episode"] >= 10]["return"].mean() for name, frame in (("greedy", greedy), ("sample", sampled))}
    assert last5["greedy"] > 12 > 6 > last5["sample"]
    # What notebook 05 shows: both curves, named in the legend, the greedy one far above the sampled one.
    ax = plots.protocol_curves({"perfect fit of the paper's setting, greedy": greedy,
                                "perfect fit of the paper's setting, sample": sampled}, 6.42, 16.75)
    curves = {line.get_label(): line.get_ydata() for line in ax.get_lines()[:2]}
    assert curves["perfect fit of the paper's setting, greedy"][-1] > 12 > 4 > curves["perfect fit of the paper's setting, sample"][-1]
    assert {"perfect fit of the paper's setting, greedy", "perfect fit of the paper's setting, sample"} <= {
        text.get_text() for text in ax.get_legend().get_texts()}
    plt.close(ax.figure)


def test_a_perfect_fit_that_knows_the_training_goals_still_finds_the_held_out_ones():
    env = make_batched("DarkRoom", dark_room_goals("test")[:1])
    straight_up = probe.goal_prior([[0, 4]], 9)  # one goal, straight above the centre: the demonstrator moves up
    agent = probe.BayesDemonstratorAgent(env, np.full(400, 0.5), window_steps=400, goal_prior=straight_up)
    np.testing.assert_allclose(agent.probabilities(env.reset_rows(seed=0))[0], [0.1, 0.6, 0.1, 0.1, 0.1], atol=1e-5)
    with pytest.raises(ValueError, match="elsewhere=0 is not allowed"):
        probe.goal_prior([[0, 4]], 9, elsewhere=0)
    with pytest.raises(ValueError, match="goal_prior must hold 81 positive probabilities summing to 1"):
        probe.BayesDemonstratorAgent(env, np.full(400, 0.5), 400, goal_prior=np.ones(81))
    # Before the first reward, knowing the fit goals lowers the loss on their histories and raises it on the
    # validation goals' (the signature the trained models show, study round 11)...
    fit = task_split("DarkRoom", "fit")
    knowing = probe.goal_prior(fit, 9)
    for goals, helps in ((fit[:8], True), (task_split("DarkRoom", "validation"), False)):
        data = collect_noise_distillation("DarkRoom", goals, num_steps=400, histories_per_task=8, floor=0.4117, seed=5)
        predicted = probe.bayes_action_probabilities(data, knowing)
        np.testing.assert_allclose(predicted.sum(-1), 1.0)
        before = (np.cumsum(data.rewards, axis=1) - data.rewards) == 0
        loss_uniform = -probe.bayes_action_log_probs(data)[before].mean()
        loss_knowing = -np.log(np.take_along_axis(predicted, data.actions.astype(np.int64)[..., None], -1))[before].mean()
        assert (loss_knowing < loss_uniform) == helps
    # ...yet, greedily, it still finds every held-out test goal and walks straight to it.
    goals = dark_room_goals("test")
    frame, _ = probe.bayes_rollout(goals, LinearSchedule().with_floor(0.4117).values(400), 400, episodes=30, seed=1,
                                   goal_prior=knowing)
    last10 = frame[frame["episode"] >= 20].groupby("task")["return"].mean()
    np.testing.assert_allclose(last10.to_numpy(), optimal_returns("DarkRoom", goals))


def test_the_shipped_whole_history_model_loses_more_than_a_perfect_fit_before_the_first_reward():
    model, record = load_shipped("dark_room_adeps_whole_history")
    data = collect_noise_distillation("DarkRoom", task_split("DarkRoom", "validation"), num_steps=400,
                                      histories_per_task=32, floor=record["data"]["source"]["floor"], seed=5)
    losses = probe.loss_against_bayes(model, data)
    before, after = losses["before_first_reward"], losses["after"]
    assert before["share_of_steps"] + after["share_of_steps"] == pytest.approx(1.0)
    # Before any reward, the demonstrator's moves say a little of the goal: a perfect fit beats uniform
    # guessing (ln 5) by about 0.014 nats a step; the model gets under a third of that.
    assert before["bayes"] < before["uniform"] - 0.01 and before["bayes"] < before["model"] < before["uniform"]
    assert after["bayes"] < after["model"] < after["bayes"] + 0.01
    with pytest.raises(ValueError, match="do not fit the model's window of 400"):
        probe.loss_against_bayes(model, collect_noise_distillation("DarkRoom", data.tasks[:1], num_steps=420, seed=0))
    with pytest.raises(ValueError, match=r"goal_priors names \['uniform'\].*name the perfect fits otherwise"):
        probe.loss_against_bayes(model, data, {"uniform": None})
    # On fresh histories of goals it trained on, it gets most of that gain: it fits its data, training goals
    # and all, as a perfect fit that knows them would (study round 11).
    fit = collect_noise_distillation("DarkRoom", task_split("DarkRoom", "fit")[:8], num_steps=400,
                                     histories_per_task=32, floor=record["data"]["source"]["floor"], seed=5)
    on_fit = probe.loss_against_bayes(model, fit)["before_first_reward"]
    share = {name: (part["uniform"] - part["model"]) / (part["uniform"] - part["bayes"]) for name, part in
             (("fit", on_fit), ("validation", before))}
    assert share["fit"] > 0.6 and share["validation"] < 0.5


def test_the_shipped_whole_history_model_predicts_like_a_perfect_fit_on_its_data_but_not_on_its_own_moves():
    model, record = load_shipped("dark_room_adeps_whole_history")
    floor = record["data"]["source"]["floor"]
    goals = task_split("DarkRoom", "fit")[:8]
    demonstrator = collect_noise_distillation("DarkRoom", goals, num_steps=400, histories_per_task=4, floor=floor, seed=5)
    own = probe.greedy_contexts(model, np.repeat(goals, 4, axis=0), schedule_of(record["data"]["source"]).values(400))
    assert own.num_steps == 400 and own.epsilon[0, 0] == 1.0 and (own.epsilon[:, -1] == own.epsilon[0, -1]).all()
    on_data = probe.compare_with_bayes(model, demonstrator)["before_first_reward"]
    on_own = probe.compare_with_bayes(model, own)["before_first_reward"]
    # Before the first reward: within a hundredth of a nat of the fit on the demonstrator's contexts, tenths
    # of a nat away on its own greedy ones, where its argmax mostly departs from the fit's.
    assert on_data["kl"] < 0.01 and on_own["kl"] > 0.1
    assert on_own["argmax_agrees"] < 0.5 < on_data["argmax_agrees"]
    with pytest.raises(ValueError, match="not a whole number of 20-step episodes"):
        probe.greedy_contexts(ICRLTransformer(ADConfig(num_obs=81, num_actions=5, window_steps=30)), goals, np.ones(30))


def brute_force_key_to_door_prediction(steps, cell, epsilons, weights, size, num_actions=5):
    """The posterior predictive of the Key-to-Door demonstrator written out hypothesis by hypothesis: for every
    (epsilon, key, door), replay the steps, knowing under it when the key is held, and weigh the hypothesis by
    its actions' probabilities if it explains every reward seen and not seen."""
    moves = probe.bayes.demonstrator_moves(size)
    predictive, total = np.zeros(num_actions), 0.0
    for epsilon, weight in zip(epsilons, weights):
        for key in range(size * size):
            for door in range(size * size):
                if key == door:
                    continue
                likelihood, holds = weight, False
                for here, action, reward, there, done in steps:
                    heading = moves[here, door if holds else key]
                    likelihood *= epsilon / num_actions + (1 - epsilon) * (action == heading)
                    earned = (there == key and not holds) or (there == door and holds)
                    if earned != (reward > 0):
                        likelihood = 0.0
                    holds = (holds or there == key) and not done
                heading = moves[cell, door if holds else key]
                predictive += likelihood * (epsilon / num_actions + (1 - epsilon) * (np.arange(num_actions) == heading))
                total += likelihood
    return predictive / total


def test_the_key_to_door_perfect_fit_is_the_posterior_predictive_written_out():
    # A 5x5 room, demonstrator histories long enough to hold rewards and episode ends (horizon 12).
    env_kwargs = {"size": 5, "horizon": 12}
    tasks = np.array([[0, 1, 4, 3], [2, 2, 0, 0]])
    data = collect_noise_distillation("DarkKeyToDoor", tasks, num_steps=40, floor=0.3, seed=0, env_kwargs=env_kwargs)
    assert data.rewards.sum() > 0 and data.dones.sum() > 2
    # Where each step lands (after an episode's last step the recorded next observation is the next start).
    landed = cell_id(*move(*np.divmod(data.observations, 5), data.actions, 5), 5)
    epsilons, weights = np.array([0.3, 0.9]), np.array([0.4, 0.6])
    # The agent fed the recorded steps one by one, as `key_to_door_action_probabilities` feeds it.
    predicted = probe.key_to_door_action_probabilities(data, epsilons, weights, window_steps=41)
    assert predicted.shape == (2, 40, 5) and np.isfinite(predicted).all()
    for t in range(40):
        for row in range(len(tasks)):
            steps = [(data.observations[row, s], data.actions[row, s], data.rewards[row, s],
                      landed[row, s], data.dones[row, s]) for s in range(t)]
            np.testing.assert_allclose(predicted[row, t], brute_force_key_to_door_prediction(
                steps, data.observations[row, t], epsilons, weights, 5), atol=1e-9)
    env = make_batched("DarkKeyToDoor", tasks, **env_kwargs)
    with pytest.raises(ValueError, match="weights positive probabilities summing to 1"):
        probe.KeyToDoorBayesAgent(env, [0.5, 1.0], [0.5, 0.6], window_steps=30)
    with pytest.raises(ValueError, match=r"levels in \(0, 1\]"):  # a sliding window could not forget a ruled-out pair
        probe.KeyToDoorBayesAgent(env, [0.0, 1.0], [0.5, 0.5], window_steps=30)


def test_the_key_to_door_perfect_fit_of_a_cut_history_starts_from_the_cells_reached_at_the_cut():
    env_kwargs = {"size": 5, "horizon": 12}
    data = collect_noise_distillation("DarkKeyToDoor", np.array([[0, 1, 4, 3], [2, 2, 0, 0]]), num_steps=40, floor=0.3,
                                      seed=0, env_kwargs=env_kwargs)
    levels, window = (np.array([0.3, 0.9]), np.array([0.4, 0.6])), 10
    whole = probe.key_to_door_action_probabilities(data, *levels, window)
    reached = probe.cells_reached(data)
    assert not reached[:, 0].any() and reached.shape == (2, 40, 25)
    for cut in (5, 21, 28):  # mid-episode cuts, with cells reached before them
        assert reached[:, cut].any(axis=1).all()
        piece = replace(data, **{name: getattr(data, name)[:, cut:] for name in
                                 ("observations", "actions", "rewards", "dones", "epsilon", "optimal_actions")})
        # Once its window is full, the cut history's fit sees what the whole one's does.
        started = probe.key_to_door_action_probabilities(piece, *levels, window, holds_key=reached[:, cut])
        np.testing.assert_allclose(started[:, window - 1:], whole[:, cut + window - 1:], atol=1e-12)
        # Started as if the episode began at the cut, it reads a door opened with a key fetched before as unexplained.
        with np.errstate(invalid="ignore"):  # where it rules out every pair, its prediction is NaN
            fresh = probe.key_to_door_action_probabilities(piece, *levels, window)
        assert not np.allclose(fresh[:, window - 1:], whole[:, cut + window - 1:], atol=1e-3, equal_nan=True)


def test_key_to_door_steps_are_split_by_what_they_seek():
    # Episode 1 (steps 0-3): the key at step 1, the door at step 3. Episode 2 (4-7): the key at step 6, then
    # the horizon. Episode 3 (8-11): nothing. With a 5-step window a step sees the 4 before it.
    rewards = np.zeros((1, 12), np.float32)
    rewards[0, [1, 3, 6]] = 1
    dones = np.zeros((1, 12), bool)
    dones[0, [3, 7, 11]] = True
    zeros = np.zeros((1, 12), np.int64)
    history = Histories(zeros, zeros, rewards, dones, key_to_door_tasks("test")[:1],
                        metadata={"env_family": "DarkKeyToDoor"})
    parts = {name: np.flatnonzero(mask[0]).tolist() for name, mask in probe.key_to_door_parts(history, 5).items()}
    assert parts == {"seeking_key": [0, 1, 4, 5, 6, 8, 9, 10, 11], "seeking_door_none_in_window": [2, 3],
                     "seeking_door_one_in_window": [7], "all": list(range(12))}
    # A window of 4 steps no longer shows the door of step 3 at step 7.
    assert probe.key_to_door_parts(history, 4)["seeking_door_one_in_window"].sum() == 0


def test_the_key_to_door_perfect_fit_finds_and_keeps_held_out_keys_and_doors_greedily():
    # The recipe's data: windows of 160 steps cut anywhere in 800-step histories, epsilon from 1 to its floor.
    epsilons, weights = probe.epsilon_levels(LinearSchedule().with_floor(0.75), 800, levels=6)
    tasks = key_to_door_tasks("test")[:16]
    frame, _ = probe.key_to_door_bayes_rollout(tasks, epsilons, weights, 160, episodes=15, seed=1)
    returns = frame.groupby("episode")["return"].mean()
    assert returns.iloc[0] < 1.0 and returns.iloc[-5:].mean() > 1.9  # the optimum is 2
