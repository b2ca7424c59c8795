"""Exploration before the first reward: how a model searches a dark grid, against simple references.

Until a reward is found, nothing in the context says where the goal is; what is left is how well the
search covers the grid. Per history (grid worlds): the step of the first reward, the distinct cells
reached by each step (frozen at the first reward: the coverage curve), and the share of moves before
the first reward that land on a cell already seen empty (revisits). References on the same tasks and
as many steps: a uniformly random policy, and the source of the model's training data (for AD^eps, the
noisy demonstrator along its curriculum: at its start nearly random, and it knows the goal).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..curricula import collect_noise_distillation
from ..envs import make_batched
from ..histories import Histories
from ..schedules import LinearSchedule
from ..sources import collect_rl_histories
from ..evaluate import bootstrap_ci
from .interventions import reached_cells


def exploration_stats(histories: Histories) -> tuple[pd.DataFrame, np.ndarray]:
    """Per history: first_reward_step (num_steps when never rewarded), found, cells_before_reward (distinct
    cells reached up to the first reward, start included), revisit_rate (moves before the first reward onto
    a cell reached before); and the coverage curves, (histories, steps) distinct cells reached by each step,
    frozen at the first reward."""
    metadata = histories.metadata
    size = make_batched(metadata["env_family"], histories.tasks[:1], **metadata.get("env_kwargs", {})).size
    reached = reached_cells(histories, size)
    rewarded = histories.rewards > 0
    found = rewarded.any(1)
    first = np.where(found, rewarded.argmax(1), histories.num_steps)
    num_cells = size * size
    seen = np.zeros((histories.num_histories, num_cells), dtype=bool)
    seen[np.arange(histories.num_histories), histories.observations[:, 0].astype(np.int64)] = True
    coverage = np.empty(histories.observations.shape, dtype=np.int64)
    revisits = np.zeros(histories.num_histories)
    for t in range(histories.num_steps):
        searching = t <= first
        cell = reached[:, t]
        again = seen[np.arange(histories.num_histories), cell]
        revisits += again & searching & (t < first)
        seen[np.arange(histories.num_histories)[searching], cell[searching]] = True
        coverage[:, t] = seen.sum(1)
    frame = pd.DataFrame({"history": np.arange(histories.num_histories), "first_reward_step": first, "found": found,
                          "cells_before_reward": coverage[np.arange(histories.num_histories), np.minimum(first, histories.num_steps - 1)],
                          "revisit_rate": revisits / np.maximum(first, 1)})
    return frame, coverage


def random_histories(family: str, tasks, num_steps: int, env_kwargs: dict | None = None, seed: int = 0) -> Histories:
    """A uniformly random policy's histories on `tasks`."""
    return collect_rl_histories(family, tasks, "random", num_steps, seed=seed, env_kwargs=env_kwargs)


def data_source_histories(record: dict, tasks, num_steps: int, seed: int = 0) -> Histories | None:
    """Histories of the policy that made a checkpoint's training data, on `tasks` (None when unknown): the
    AD^eps demonstrator along its curriculum (rescaled to num_steps), or the RL algorithm that made them."""
    data = record.get("data", {})
    source, family, env_kwargs = data.get("source", {}), record["env_family"], record.get("env_kwargs", {})
    if source.get("name") == "noise_distillation":
        schedule = LinearSchedule(start=source.get("start", 1.0), floor=source["floor"], floor_at=source.get("floor_at", 0.9))
        return collect_noise_distillation(family, tasks, num_steps, schedule=schedule, floor=source["floor"], seed=seed,
                                          env_kwargs=env_kwargs)
    if source.get("name") in ("q_learning", "random"):
        return collect_rl_histories(family, tasks, source["name"], num_steps, seed=seed, env_kwargs=env_kwargs)
    return None


def compare_exploration(policies: dict, resamples: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """policies: name -> Histories on the same tasks. Returns (summary, curves): summary per policy and
    measure (first_reward_step, found, cells_before_reward, revisit_rate) the mean with a 95% bootstrap
    interval over histories; curves per policy and step the mean coverage and the share still searching."""
    summary, curves = [], []
    for name, histories in policies.items():
        stats, coverage = exploration_stats(histories)
        for measure in ("first_reward_step", "found", "cells_before_reward", "revisit_rate"):
            mean, low, high = bootstrap_ci(stats[measure].astype(float), resamples, seed)
            summary.append({"policy": name, "measure": measure, "mean": mean, "low": low, "high": high,
                            "histories": len(stats)})
        steps = np.arange(histories.num_steps)
        curves.append(pd.DataFrame({"policy": name, "step": steps, "coverage": coverage.mean(0),
                                    "coverage_se": coverage.std(0) / np.sqrt(len(coverage)),
                                    "searching": (stats["first_reward_step"].to_numpy()[:, None] >= steps[None, :]).mean(0)}))
    return pd.DataFrame(summary), pd.concat(curves, ignore_index=True)
