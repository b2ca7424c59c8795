"""Attention probes (icrl_lab.probe): the maps a model's attention makes, and the summaries of them."""
import numpy as np
import pytest
import torch

from icrl_lab import probe
from icrl_lab.envs import dark_room_goals
from icrl_lab.evaluate import in_context_rollout
from icrl_lab.models import ADConfig, ICRLTransformer


@pytest.fixture(scope="module")
def evaluation():
    torch.manual_seed(0)
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, d_model=16,
                                     n_layer=2, n_head=2))
    _, played = in_context_rollout(model, "DarkRoom", dark_room_goals("test")[:3], episodes=4, mode="sample")
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
    np.testing.assert_array_equal(probe.episode_of_step(dones), [[0, 0, 1, 1, 2, 2]])
    on_first_step = np.zeros((6, 6))
    on_first_step[:, 0] = 1.0  # every step looks at the very first one
    table = probe.episode_attention(on_first_step[None, None, None], dones, max_back=1)
    shares = table.set_index("episodes_back")["attention"]
    assert shares[0] == pytest.approx(2 / 6) and shares[1] == pytest.approx(4 / 6), "2 steps back, clipped to 1"
