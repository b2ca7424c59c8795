"""The GRU and the diagonal state-space model: the transformer's interface, training through the common
loop, step-by-step decoding equal to the whole-sequence output, save and load, acting in context."""
import numpy as np
import pytest
import torch

from icrl_lab.beyond_ad import step_cost
from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals
from icrl_lab.evaluate import in_context_rollout
from icrl_lab.models import load_model, save_model
from icrl_lab.sequence_models import GRUConfig, GRUPolicy, SSMConfig, SSMPolicy
from icrl_lab.train import TrainConfig, train

CONFIGS = {"gru": GRUConfig, "ssm": SSMConfig}


def small(kind, **kwargs):
    return CONFIGS[kind](num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=20, d_model=16, n_layer=2, **kwargs)


def stream(batch, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(81, (batch, steps), generator=g), torch.randint(6, (batch, steps), generator=g),
            torch.randint(2, (batch, steps), generator=g).float())


@pytest.mark.parametrize("kind", ["gru", "ssm"])
def test_trains_a_few_steps_and_decodes_step_by_step_as_a_whole(kind, tmp_path):
    data = collect_noise_distillation("DarkRoom", dark_room_goals("train")[:4], num_steps=40, histories_per_task=2,
                                      seed=0, floor=0.5)
    model, log = train(small(kind), data, TrainConfig(updates=8, batch_size=4, context_steps=20, log_every=4),
                       out_dir=tmp_path / kind, progress=False)
    assert isinstance(model, {"gru": GRUPolicy, "ssm": SSMPolicy}[kind])
    assert log[-1]["loss"] < log[0]["loss"] + 0.5 and np.isfinite(log[-1]["loss"])
    inputs = stream(3, 70)  # longer than the training windows
    with torch.no_grad():
        full = model(*inputs)
        state = model.new_cache(3)
        stepped = torch.cat([model(*(x[:, t:t + 1] for x in inputs), cache=state) for t in range(70)], dim=1)
        state = model.new_cache(3)
        chunked = torch.cat([model(*(x[:, t:t + 7] for x in inputs), cache=state) for t in range(0, 70, 7)], dim=1)
    assert full.shape == (3, 70, 5) and state.length == 70
    torch.testing.assert_close(stepped, full, atol=2e-5, rtol=0)
    torch.testing.assert_close(chunked, full, atol=2e-5, rtol=0)


@pytest.mark.parametrize("kind", ["gru", "ssm"])
def test_saves_loads_and_acts_in_context(kind, tmp_path):
    torch.manual_seed(0)
    model = small(kind).build().eval()
    save_model(model, tmp_path / "m", {"note": "x"})
    loaded, record = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and record["kind"] == kind and record["note"] == "x"
    inputs = stream(2, 15)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), model(*inputs))
    frame, played = in_context_rollout(loaded, "DarkRoom", dark_room_goals("test")[:2], 3, mode="sample", seed=0)
    assert len(frame) == 6 and played.num_steps == 60
    costs = step_cost(loaded, [0, 50], batch_size=2, repeats=2)
    assert list(costs["context_steps"]) == [0, 50]


def test_configs_refuse_what_they_cannot_build():
    with pytest.raises(ValueError, match="state_size"):
        small("ssm", state_size=0)
    with pytest.raises(ValueError, match="obs_factors"):
        GRUConfig(num_obs=80, num_actions=5, obs_factors=(9, 9))
