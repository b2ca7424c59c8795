import os

import matplotlib
import pytest
import torch

# Small models run fastest on one thread, and a second thread only contends with other work on a
# 2-core machine.
torch.set_num_threads(1)
matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def untrained_rollout():
    """A small untrained AD model sampled on 3 held-out Dark Room goals for 4 episodes: (model, frame, played)."""
    from icrl_lab.envs import dark_room_goals
    from icrl_lab.evaluate import in_context_rollout
    from icrl_lab.models import ADConfig, ICRLTransformer

    torch.manual_seed(0)
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, d_model=16,
                                     n_layer=2, n_head=2))
    frame, played = in_context_rollout(model, "DarkRoom", dark_room_goals("test")[:3], episodes=4, mode="sample")
    return model, frame, played
