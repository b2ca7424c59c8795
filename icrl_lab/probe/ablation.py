"""Causal tests: remove a part of the model and measure what its in-context learning loses.

`ablated(model, heads=..., layers=..., mlps=...)` zeroes the output of the chosen attention heads (a
whole layer's heads with `layers`), or skips the chosen MLPs, inside a `with` block (zero ablation,
through the hooks of `icrl_lab.models`). `ablation_effects` plays the model in context on held-out tasks
with each part removed in turn and reports, per part and decoding mode, the change of

- the in-context return (mean return over all episodes, per task and rollout),
- the improvement (mean return of the last third of the episodes minus the first third),
- the first rewarded episode (grid worlds; a rollout never rewarded counts as `episodes`),

each as the mean of paired differences against the intact model over tasks x rollouts, with a 95%
bootstrap confidence interval over those units.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from ..evaluate import bootstrap_ci, in_context_rollout


@contextmanager
def ablated(model, heads=(), layers=(), mlps=()):
    """Within the block, `model` runs without the given heads ((layer, head) pairs), without every head of
    the given `layers`, and without the MLPs of the given layers (`mlps`); restored on exit."""
    config = model.config
    masks = {layer: torch.ones(config.n_head) for layer in range(config.n_layer)}
    for layer, head in heads:
        masks[layer][head] = 0.0
    for layer in layers:
        masks[layer][:] = 0.0
    saved = [(block.attention.head_mask, block.mlp_enabled) for block in model.blocks]
    try:
        parameter = next(model.parameters())
        for layer, block in enumerate(model.blocks):
            if not bool(masks[layer].all()):
                block.attention.head_mask = masks[layer].to(parameter.device)
            if layer in set(mlps):
                block.mlp_enabled = False
        yield model
    finally:
        for block, (mask, enabled) in zip(model.blocks, saved):
            block.attention.head_mask, block.mlp_enabled = mask, enabled


def standard_ablations(config) -> dict:
    """Name -> keyword arguments of `ablated`: each head alone, each layer's attention, each MLP, all heads."""
    parts = {f"L{layer}H{head}": {"heads": [(layer, head)]}
             for layer in range(config.n_layer) for head in range(config.n_head)}
    parts.update({f"L{layer} attention": {"layers": [layer]} for layer in range(config.n_layer)})
    parts.update({f"L{layer} MLP": {"mlps": [layer]} for layer in range(config.n_layer)})
    parts["all heads"] = {"layers": list(range(config.n_layer))}
    return parts


def unit_metrics(frame: pd.DataFrame, played, blocks: int = 10) -> pd.DataFrame:
    """Per rollout (one row of `played`): mean return, improvement (last third of episodes minus first
    third) and first rewarded episode. With one long episode (bandits), the episode is cut into `blocks`
    blocks of steps that stand for episodes (mean reward per step)."""
    episodes = int(frame["episode"].max()) + 1
    if episodes >= 3:
        returns = frame.pivot(index="task", columns="episode", values="return").to_numpy(dtype=float)
    else:
        usable = played.num_steps // blocks * blocks
        returns = played.rewards[:, :usable].reshape(played.num_histories, blocks, -1).mean(-1).astype(float)
    third = max(1, returns.shape[1] // 3)
    rewarded = returns > 0
    first = np.where(rewarded.any(1), rewarded.argmax(1), returns.shape[1]).astype(float)
    return pd.DataFrame({"unit": np.arange(len(returns)), "return": returns.mean(1),
                         "improvement": returns[:, -third:].mean(1) - returns[:, :third].mean(1),
                         "first_rewarded_episode": first if episodes >= 3 else np.nan})


def ablation_effects(model, family: str, tasks, episodes: int, env_kwargs: dict | None = None, parts: dict | None = None,
                     modes=("greedy", "sample"), temperature: float = 1.0, rollouts: int = 4, seed: int = 0,
                     resamples: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Play the model in context on `tasks` intact and with each part removed; return (effects, metrics).

    parts: name -> keyword arguments of `ablated` (default `standard_ablations`). Sampled play repeats each
    task `rollouts` times (independent contexts); greedy play is deterministic, so once. The same seed
    for every part pairs each ablated rollout with the intact one on the same task.

    metrics: one row per (part, mode, unit) with the unit's return, improvement and first rewarded episode.
    effects: per (part, mode, metric) the intact mean, the ablated mean, the mean paired change and its 95%
    bootstrap interval over units (columns change, low, high), sorted by how much the return falls.
    """
    parts = {"none": {}, **(parts if parts is not None else standard_ablations(model.config))}
    tasks = np.asarray(tasks)
    rows = []
    for mode in modes:
        repeats = 1 if mode == "greedy" else rollouts
        units = np.repeat(tasks, repeats, axis=0)
        for name, kwargs in parts.items():
            with ablated(model, **kwargs):
                frame, played = in_context_rollout(model, family, units, episodes, env_kwargs, mode=mode,
                                                   temperature=temperature, seed=seed)
            rows.append(unit_metrics(frame, played).assign(part=name, mode=mode, task=np.arange(len(units)) // repeats))
    metrics = pd.concat(rows, ignore_index=True)
    records = []
    for (mode, name), group in metrics.groupby(["mode", "part"], sort=False):
        intact = metrics[(metrics["mode"] == mode) & (metrics["part"] == "none")].set_index("unit")
        group = group.set_index("unit")
        for metric in ("return", "improvement", "first_rewarded_episode"):
            change, low, high = bootstrap_ci(group[metric] - intact[metric], resamples, seed)
            records.append({"part": name, "mode": mode, "metric": metric, "intact": float(intact[metric].mean()),
                            "ablated": float(group[metric].mean()), "change": change, "low": low, "high": high,
                            "units": len(group)})
    effects = pd.DataFrame(records)
    order = effects[effects["metric"] == "return"].groupby("part")["change"].mean().sort_values().index
    effects["part"] = pd.Categorical(effects["part"], categories=list(order), ordered=True)
    return effects.sort_values(["metric", "mode", "part"]).reset_index(drop=True), metrics


def rank_heads(effects: pd.DataFrame, mode: str = "sample", metric: str = "return") -> pd.DataFrame:
    """Single heads (parts named L<layer>H<head>) by how much their removal changes `metric`, largest loss first."""
    table = effects[(effects["mode"] == mode) & (effects["metric"] == metric)
                    & effects["part"].astype(str).str.fullmatch(r"L\d+H\d+")].copy()
    table["part"] = table["part"].astype(str)
    return table.sort_values("change").reset_index(drop=True)
