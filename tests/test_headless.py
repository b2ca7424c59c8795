"""Headless-AD: any number of actions at inference, embeddings redrawn per history, the contrastive loss,
the cache, save and load, training through icrl_lab.train, and acting with permuted actions."""
import numpy as np
import pytest
import torch

from icrl_lab.envs import bandit_tasks, dark_room_goals
from icrl_lab.evaluate import bootstrap_ci, in_context_rollout
from icrl_lab.headless import (ActionRelabelled, HeadlessAD, HeadlessADConfig, action_permutations,
                               draw_action_embeddings, info_nce, relabel_actions, stack_bandit_histories)
from icrl_lab.beyond_ad import collect_variable_arm_bandits, regret_table
from icrl_lab.models import ADConfig, ICRLTransformer, load_model, save_model
from icrl_lab.sources import collect_rl_histories
from icrl_lab.train import TrainConfig, train


def bandit_model(**kwargs):
    torch.manual_seed(0)
    return HeadlessAD(HeadlessADConfig(num_obs=1, num_actions=6, window_steps=30, d_model=16, n_layer=2, n_head=2,
                                       action_dim=16, arms_in_observation=True, **kwargs)).eval()


@pytest.mark.parametrize("arms", [2, 6, 13, 40])
def test_head_scores_any_number_of_actions_and_the_cache_matches(arms):
    bound = bandit_model().bind(arms, rows=3, seed=1)
    g = torch.Generator().manual_seed(0)
    obs = torch.zeros(3, 20, dtype=torch.long)
    prev = torch.randint(arms, (3, 20), generator=g)
    prev[:, 0] = arms  # no previous action at the first step
    rewards = torch.randint(2, (3, 20), generator=g).float()
    with torch.no_grad():
        full = bound(obs, prev, rewards)
        cache = bound.new_cache(3)
        steps = torch.cat([bound(obs[:, t:t + 1], prev[:, t:t + 1], rewards[:, t:t + 1], cache=cache) for t in range(20)], 1)
    assert full.shape == (3, 20, arms) and torch.isfinite(full).all()
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=0)


def test_embeddings_are_orthonormal_and_redrawn_per_history():
    e = draw_action_embeddings(4, 10, 16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(e @ e.transpose(1, 2), torch.eye(10).expand(4, 10, 10), atol=1e-5, rtol=0)
    assert not torch.allclose(e[0], e[1]), "every history gets its own draw"
    wide = draw_action_embeddings(2, 40, 16)  # more actions than dimensions: unit vectors, not orthonormal
    torch.testing.assert_close(wide.norm(dim=-1), torch.ones(2, 40))
    # The loss draws afresh at every call: the same batch gives a different loss under other draws.
    model = bandit_model()
    batch = {"observations": torch.full((2, 10), 5), "prev_actions": torch.randint(5, (2, 10)),
             "prev_rewards": torch.rand(2, 10), "actions": torch.randint(5, (2, 10))}
    losses = {model.loss(batch, torch.Generator().manual_seed(s)).item() for s in range(3)}
    assert len(losses) == 3
    # ...and the model's output depends on the draw only through the actions' roles: permuting the
    # embeddings of a row permutes its logits the same way.
    bound = model.bind(5, rows=2, seed=0)
    permutation = torch.tensor([3, 0, 4, 1, 2])
    obs, prev, rewards = batch["observations"] * 0, batch["prev_actions"], batch["prev_rewards"]
    with torch.no_grad():
        logits = bound(obs, prev, rewards)
        bound.embeddings = bound.embeddings[:, permutation]
        permuted = bound(obs, torch.argsort(permutation)[prev], rewards)
    torch.testing.assert_close(permuted, logits[..., permutation], atol=1e-5, rtol=0)


def test_info_nce_is_minimised_by_the_right_action():
    embeddings = draw_action_embeddings(1, 5, 8, torch.Generator().manual_seed(0))
    available = torch.tensor([[True, True, True, True, False]])
    target = torch.tensor([[2]])
    losses = [info_nce(4.0 * embeddings[:, a][:, None], embeddings, available, target)[1].item() for a in range(4)]
    assert int(np.argmin(losses)) == 2
    # Gradient descent on a free prediction moves it toward the target's embedding.
    predicted = torch.zeros(1, 1, 8, requires_grad=True)
    optimizer = torch.optim.SGD([predicted], lr=1.0)
    for _ in range(100):
        _, loss = info_nce(predicted, embeddings, available, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logits = info_nce(predicted.detach(), embeddings, available)
    assert logits[0, 0].argmax() == 2 and loss.item() < 0.05
    assert logits[0, 0, 4] == float("-inf"), "an unavailable action is never chosen"


def test_variable_arm_data_trains_with_the_common_loop_and_reloads(tmp_path):
    data = collect_variable_arm_bandits([3, 6], tasks_per_arm=8, horizon=30, seed=0)
    assert data.observations[:8].max() == 3 and data.observations[8:].min() == 6
    assert np.isnan(data.tasks[:8, 3:]).all()
    config = HeadlessADConfig(num_obs=1, num_actions=6, window_steps=30, d_model=16, n_layer=1, n_head=2,
                              action_dim=16, arms_in_observation=True)
    model, log = train(config, data, TrainConfig(updates=6, batch_size=4, context_steps=30, log_every=3),
                       out_dir=tmp_path / "m", progress=False)
    assert isinstance(model, HeadlessAD) and np.isfinite(log[-1]["loss"])
    loaded, record = load_model(tmp_path / "m")
    assert isinstance(loaded, HeadlessAD) and record["kind"] == "headless_ad"
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    table, curves = regret_table({"Headless-AD": loaded}, [9], num_tasks=5, horizon=30)
    assert set(table["learner"]) == {"Headless-AD", "Thompson sampling", "UCB1"}
    assert curves[9]["Headless-AD"].shape == (5, 30)


def test_relabelled_actions_act_as_the_environment_permutes_them():
    """A model wrapped with ActionRelabelled, fed histories relabelled the same way, sees what the plain
    model sees on the plain histories."""
    torch.manual_seed(0)
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=20, d_model=16,
                                     n_layer=1, n_head=2)).eval()
    permutations = action_permutations(3, 5, seed=0)
    wrapped = ActionRelabelled(model, permutations)
    data = collect_rl_histories("DarkRoom", dark_room_goals("train")[:3], "random", 20, seed=0)
    relabelled = relabel_actions(data, permutations)
    rows = np.arange(3)[:, None]
    np.testing.assert_array_equal(permutations[rows, relabelled.actions.astype(int)], data.actions)
    obs = torch.as_tensor(data.observations.astype(np.int64))
    env_prev = torch.as_tensor(np.concatenate([np.full((3, 1), 5), data.actions[:, :-1]], 1).astype(np.int64))
    label_prev = torch.as_tensor(np.concatenate([np.full((3, 1), 5), relabelled.actions[:, :-1]], 1).astype(np.int64))
    rewards = torch.zeros(3, 20)
    with torch.no_grad():
        env_logits, label_logits = wrapped(obs, env_prev, rewards), model(obs, label_prev, rewards)
    # The logit of environment action j is the model's logit of the label that performs j.
    for row in range(3):
        for label in range(5):
            torch.testing.assert_close(env_logits[row, :, permutations[row, label]], label_logits[row, :, label])
    frame, _ = in_context_rollout(wrapped, "DarkRoom", dark_room_goals("test")[:3], 2, seed=0)
    assert len(frame) == 6


def test_bootstrap_interval_brackets_the_mean():
    mean, low, high = bootstrap_ci(np.arange(100.0))
    assert low < mean == 49.5 < high and high - low < 15


def test_the_loss_temperature_divides_the_training_logits_and_not_the_acting_ones():
    tau = 2.5
    config = HeadlessADConfig(num_obs=3, num_actions=6, window_steps=8, d_model=16, n_layer=1, n_head=2, action_dim=8,
                              loss_temperature=tau)
    model = config.build().eval()
    generator = torch.Generator().manual_seed(0)
    batch = {"observations": torch.randint(0, 3, (4, 8), generator=generator),
             "prev_actions": torch.randint(0, 7, (4, 8), generator=generator),  # 6: no previous action
             "prev_rewards": torch.rand(4, 8, generator=generator),
             "actions": torch.randint(0, 6, (4, 8), generator=generator)}
    loss = model.loss(batch, torch.Generator().manual_seed(1))
    embeddings = draw_action_embeddings(4, 6, 8, torch.Generator().manual_seed(1))
    logits = model(batch["observations"], batch["prev_actions"], batch["prev_rewards"], embeddings)
    expected = torch.nn.functional.cross_entropy((logits / tau).reshape(-1, 6), batch["actions"].reshape(-1))
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, 6), batch["actions"].reshape(-1)))
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="loss_temperature"):
            HeadlessADConfig(num_obs=3, num_actions=6, loss_temperature=bad)
