"""Attention, captured and typed: where in its context a trained model looks when it acts.

`attention_maps` replays histories (typically what the model itself did, from
`evaluate.in_context_rollout`) through the model and returns every layer's and head's step-to-step
attention. `attention_table` lays the same weights out as a tidy frame, one row per (query step, key
step) of every head, each key labelled with what it was: its episode (current or earlier), the reward
its token carries, its cell, whether that cell is the goal.

`head_types` types each head by where its attention goes (rewarded steps, the previous step, the
same cell in earlier episodes, the step after an earlier visit to the current cell: "induction"), and
compares each share with two baselines: attention spread evenly over the window (`uniform`), and
attention that decays with distance as the head's own average profile does (`recency`). Most heads
look mostly at recent steps, and recent steps are likelier to share the current cell; only the
recency-matched lift says that a head seeks a kind of step out beyond how near it is.

Looking is not using: `probe.ablation` tests what a head's removal changes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..envs import make_batched
from ..histories import Histories, episode_of_step, model_inputs, previous_actions_and_rewards
from ..models import attention_per_step

FEATURES = ("rewarded", "previous", "same_cell_earlier", "induction", "goal_cell")


@torch.no_grad()
def attention_maps(model, histories: Histories, rows=None, steps: int | None = None) -> np.ndarray:
    """Step-to-step attention of `histories` (the rows given, all by default; their first `steps` steps),
    shape (histories, layers, heads, query steps, key steps); each query's row sums to 1."""
    model.eval()
    _, attention = model(*model_inputs(histories, model.config.num_actions, next(model.parameters()).device, rows, steps),
                         return_attention=True)
    per_step = [attention_per_step(weights, model.config.tokens_per_step) for weights in attention]
    return torch.stack(per_step, dim=1).float().cpu().numpy()


def _visible(num_steps: int, window_steps: int) -> np.ndarray:
    """(queries, keys) mask of the keys each query step may attend to: itself and the window before it."""
    offset = np.arange(num_steps)[:, None] - np.arange(num_steps)[None, :]
    return (offset >= 0) & (offset < window_steps)


def marked_cells(histories: Histories) -> np.ndarray:
    """(histories, cells) flags of the cells a grid task hides (the goal; a key and a door), from the
    environment's own `task_marks`; all False for tasks with no cells (bandits)."""
    metadata = histories.metadata
    env = make_batched(metadata["env_family"], histories.tasks[:1], **metadata.get("env_kwargs", {}))
    size = getattr(env, "size", None)
    flags = np.zeros((histories.num_histories, env.num_obs if size else 1), dtype=bool)
    for row, task in enumerate(histories.tasks):
        for r, c in env.task_marks(task).values():
            flags[row, r * size + c] = True
    return flags


def step_labels(histories: Histories, num_actions: int, steps: int | None = None) -> dict:
    """What every step of every history is, as (histories, steps) arrays: episode, the reward its token
    carries (`reward`: the previous step's), its cell (`cell`, the observation) and whether that cell is
    one the task hides (`on_goal`)."""
    steps = steps or histories.num_steps
    _, prev_rewards = previous_actions_and_rewards(histories, num_actions)
    cells = histories.observations[:, :steps].astype(np.int64)
    marks = marked_cells(histories)
    on_goal = np.take_along_axis(marks, np.minimum(cells, marks.shape[1] - 1), axis=1) if marks.any() else \
        np.zeros_like(cells, dtype=bool)
    return {"episode": episode_of_step(histories.dones[:, :steps]), "reward": prev_rewards[:, :steps],
            "cell": cells, "on_goal": on_goal}


def attention_table(maps: np.ndarray, histories: Histories, window_steps: int, num_actions: int, rows=None,
                    min_weight: float = 0.0) -> pd.DataFrame:
    """Every head's attention as a tidy frame: one row per (history, layer, head, query step, key step in
    the query's window), with the key labelled.

    maps: (histories, layers, heads, steps, steps) from `attention_maps(model, histories, rows)`; rows: the
    rows of `histories` they were made from (all by default). Columns: history, layer, head, query, key,
    weight, distance (query - key), episodes_back, episode ("current" or "earlier"), key_reward (the reward
    the key's token carries), key_cell, key_is_goal, query_cell. Rows with weight below `min_weight` are
    left out (keep the frame small on long histories).
    """
    rows = np.arange(histories.num_histories) if rows is None else np.atleast_1d(rows)
    count, layers, heads, steps, _ = maps.shape
    labels = step_labels(histories, num_actions, steps)
    queries, keys = np.nonzero(_visible(steps, window_steps))
    frames = []
    for i, row in enumerate(rows):
        back = labels["episode"][row, queries] - labels["episode"][row, keys]
        common = {"query": queries, "key": keys, "distance": queries - keys, "episodes_back": back,
                  "episode": np.where(back == 0, "current", "earlier"), "key_reward": labels["reward"][row, keys],
                  "key_cell": labels["cell"][row, keys], "key_is_goal": labels["on_goal"][row, keys],
                  "query_cell": labels["cell"][row, queries]}
        for layer in range(layers):
            for head in range(heads):
                weight = maps[i, layer, head, queries, keys]
                keep = weight >= min_weight
                frames.append(pd.DataFrame({"history": int(row), "layer": layer, "head": head, "weight": weight[keep],
                                            **{name: value[keep] for name, value in common.items()}}))
    frame = pd.concat(frames, ignore_index=True)
    frame["episode"] = frame["episode"].astype("category")
    return frame[["history", "layer", "head", "query", "key", "weight", "distance", "episodes_back", "episode",
                  "key_reward", "key_cell", "key_is_goal", "query_cell"]]


def key_features(histories: Histories, num_actions: int, steps: int | None = None, rows=None) -> dict:
    """For each kind of key a head may seek (FEATURES), a (histories, queries, keys) boolean array: which
    keys of each query are of that kind (before the window is applied).

    rewarded: the key's token carries a reward; previous: the key is the step just before the query;
    same_cell_earlier: the key stood on the query's cell, in an earlier episode; induction: the key is the
    step right after one (in the same episode) that stood on the query's cell, i.e. its token tells which
    action was taken from that cell and what it earned; goal_cell: the key stands on the goal.
    """
    rows = np.arange(histories.num_histories) if rows is None else np.atleast_1d(rows)
    labels = {name: value[rows] for name, value in step_labels(histories, num_actions, steps).items()}
    cell, episode = labels["cell"], labels["episode"]
    steps = cell.shape[1]
    q, k = np.arange(steps)[:, None], np.arange(steps)[None, :]
    same = cell[:, :, None] == cell[:, None, :]
    earlier_episode = episode[:, :, None] > episode[:, None, :]
    before = np.zeros_like(same)  # before[h, q, k]: step k - 1 stood on the query's cell, same episode as k
    before[:, :, 1:] = same[:, :, :-1] & (episode[:, None, 1:] == episode[:, None, :-1])
    return {
        "rewarded": np.broadcast_to((labels["reward"] > 0)[:, None, :], same.shape),
        "previous": np.broadcast_to(k == q - 1, same.shape),
        "same_cell_earlier": same & earlier_episode,
        "induction": before & (k < q),
        "goal_cell": np.broadcast_to(labels["on_goal"][:, None, :], same.shape),
    }


def recency_profile(maps: np.ndarray, window_steps: int) -> np.ndarray:
    """Each head's mean attention by distance back (0 = the query itself), shape (layers, heads, window)."""
    count, layers, heads, steps, _ = maps.shape
    distance = np.arange(steps)[:, None] - np.arange(steps)[None, :]
    visible = _visible(steps, window_steps)
    flat = maps[..., visible]                                               # (histories, layers, heads, pairs)
    index = distance[visible]
    totals = np.stack([np.bincount(index, weights=w, minlength=window_steps)
                       for w in flat.sum(0).reshape(layers * heads, -1)])
    pairs = np.bincount(index, minlength=window_steps) * count
    return (totals / np.maximum(pairs, 1)).reshape(layers, heads, -1)[..., :window_steps]


def head_types(maps: np.ndarray, histories: Histories, window_steps: int, num_actions: int, rows=None) -> pd.DataFrame:
    """Per layer, head and kind of key (FEATURES): the mean share of attention paid to such keys
    (`attention`), over the queries that have at least one in view; the share that attention spread
    evenly over the window would pay (`uniform`); the share that attention following the head's own
    profile by distance would pay (`recency`); and the lifts over both (attention / baseline).

    `lift_recency` > 1: the head seeks that kind of step beyond what its taste for recent steps explains.
    For `previous` the recency baseline matches the head by construction (lift 1): use `attention` there.
    """
    count, layers, heads, steps, _ = maps.shape
    visible = _visible(steps, window_steps)
    uniform = visible / visible.sum(-1, keepdims=True)
    distance = np.clip(np.arange(steps)[:, None] - np.arange(steps)[None, :], 0, window_steps - 1)
    profile = recency_profile(maps, window_steps)
    recency = profile[:, :, distance] * visible                           # (layers, heads, queries, keys)
    recency /= np.maximum(recency.sum(-1, keepdims=True), 1e-12)
    features = key_features(histories, num_actions, steps, rows)
    records = []
    for name, feature in features.items():
        in_view = feature & visible                                        # (histories, queries, keys)
        counted = in_view.any(-1)
        if not counted.any():
            continue
        weights = in_view.astype(np.float32)
        paid = np.einsum("hlnqk,hqk->lnhq", maps, weights)[..., counted]
        even = np.einsum("qk,hqk->hq", uniform, weights)[counted].mean()
        matched = np.einsum("lnqk,hqk->lnhq", recency, weights)[..., counted]
        for layer in range(layers):
            for head in range(heads):
                records.append((layer, head, name, float(paid[layer, head].mean()), float(even),
                                float(matched[layer, head].mean()), int(counted.sum())))
    frame = pd.DataFrame(records, columns=["layer", "head", "feature", "attention", "uniform", "recency", "queries"])
    frame["lift_uniform"] = frame["attention"] / frame["uniform"]
    frame["lift_recency"] = frame["attention"] / frame["recency"]
    return frame


def reward_attention(maps: np.ndarray, prev_rewards: np.ndarray, window_steps: int) -> pd.DataFrame:
    """Per layer and head: the share of attention that steps pay to past steps whose token carries a
    reward (the step right after a rewarded action), against the share attention spread evenly over
    the same window would pay (`uniform`). `lift` > 1: the head seeks rewarded steps out (but see
    `head_types` for the recency-matched comparison).

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
