"""Attention probes: where in its context a trained model looks when it acts.

`attention_maps` replays histories (typically what the model itself did, from
`evaluate.in_context_rollout`) through the model and returns every layer's and head's step-to-step
attention. The summaries below reduce those maps to the two questions in-context RL raises:

- does the current step look at past steps that earned a reward (`reward_attention`), more than
  attention spread evenly over its window would?
- how far back does it look, counted in episodes (`episode_attention`)? Attention to earlier
  episodes is what lets a model improve across episodes without any weight update.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .histories import Histories, previous_actions_and_rewards
from .models import attention_per_step


@torch.no_grad()
def attention_maps(model, histories: Histories, rows=None, steps: int | None = None) -> np.ndarray:
    """Step-to-step attention of `histories` (the rows given, all by default; their first `steps` steps),
    shape (histories, layers, heads, query steps, key steps); each query's row sums to 1."""
    rows = np.arange(histories.num_histories) if rows is None else np.atleast_1d(rows)
    steps = steps or histories.num_steps
    prev_actions, prev_rewards = previous_actions_and_rewards(histories, model.config.num_actions)
    device = next(model.parameters()).device
    model.eval()
    _, attention = model(torch.as_tensor(histories.observations[rows, :steps].astype(np.int64), device=device),
                         torch.as_tensor(prev_actions[rows, :steps], device=device),
                         torch.as_tensor(prev_rewards[rows, :steps], device=device), return_attention=True)
    per_step = [attention_per_step(weights, model.config.tokens_per_step) for weights in attention]
    return torch.stack(per_step, dim=1).float().cpu().numpy()


def _visible(num_steps: int, window_steps: int) -> np.ndarray:
    """(queries, keys) mask of the keys each query step may attend to: itself and the window before it."""
    offset = np.arange(num_steps)[:, None] - np.arange(num_steps)[None, :]
    return (offset >= 0) & (offset < window_steps)


def reward_attention(maps: np.ndarray, prev_rewards: np.ndarray, window_steps: int) -> pd.DataFrame:
    """Per layer and head: the share of attention that steps pay to past steps whose token carries a
    reward (the step right after a rewarded action), against the share attention spread evenly over
    the same window would pay (`uniform`). `lift` > 1: the head seeks rewarded steps out.

    maps: (histories, layers, heads, steps, steps) from `attention_maps`; prev_rewards: (histories, steps),
    the reward each step's token carries. Queries with no rewarded step in view are left out.
    """
    histories, layers, heads, steps, _ = maps.shape
    rewarded = (np.asarray(prev_rewards)[:, :steps] > 0).astype(np.float64)          # (histories, keys)
    visible = _visible(steps, window_steps).astype(np.float64)                       # (queries, keys)
    in_view = rewarded[:, None, :] * visible[None]                                   # (histories, queries, keys)
    uniform = in_view.sum(-1) / visible.sum(-1)                                      # (histories, queries)
    counted = in_view.sum(-1) > 0
    paid = np.einsum("hlqk,hqk->hlq", maps.reshape(histories, layers * heads, steps, steps), in_view)
    if not counted.any():
        raise ValueError("no step of these histories has a rewarded step in view: nothing to measure")
    even = float(uniform[counted].mean())
    rows = [(index // heads, index % heads, float(paid[:, index][counted].mean())) for index in range(layers * heads)]
    frame = pd.DataFrame(rows, columns=["layer", "head", "attention_to_rewarded"])
    return frame.assign(uniform=even, lift=frame["attention_to_rewarded"] / even)


def episode_of_step(dones: np.ndarray) -> np.ndarray:
    """The episode number (0, 1, ...) of every step, from the `dones` flags of (histories, steps)."""
    dones = np.asarray(dones, dtype=np.int64)
    return np.cumsum(dones, axis=-1) - dones


def episode_attention(maps: np.ndarray, dones: np.ndarray, max_back: int = 4) -> pd.DataFrame:
    """Per layer and head: the mean share of attention paid to the current episode (episodes_back 0),
    the one before (1), ..., up to `max_back` (which also collects anything older).

    maps: (histories, layers, heads, steps, steps); dones: (histories, steps) of the same histories.
    """
    histories, layers, heads, steps, _ = maps.shape
    episode = episode_of_step(np.asarray(dones)[:, :steps])
    back = np.clip(episode[:, :, None] - episode[:, None, :], 0, max_back)            # (histories, queries, keys)
    flat = maps.reshape(histories, layers * heads, steps, steps)
    shares = np.stack([np.einsum("hlqk,hqk->l", flat, back == lag) for lag in range(max_back + 1)], axis=1)
    shares /= histories * steps
    rows = [(index // heads, index % heads, lag, float(shares[index, lag]))
            for index in range(layers * heads) for lag in range(max_back + 1)]
    return pd.DataFrame(rows, columns=["layer", "head", "episodes_back", "attention"])
