"""Context interventions: edit what the model remembers, then watch what it does next.

Contexts are the model's own: a few episodes it played in context on held-out tasks (sampled, so that
it finds rewards), kept where the context holds a reward. Each intervention edits that context, and the
model then plays one more episode after it:

- original: the context as it was;
- last_episode: earlier episodes dropped, only the last one kept;
- empty: no context at all (a first episode);
- zero_rewards: every reward in the context set to 0;
- shuffle_rewards: the rewards of each context permuted over its steps (as many rewards, wrong places);
- move_reward (tasks with one hidden goal cell): the rewards put on another cell the context visited,
  and the environment's goal moved there too. Does the model go where the context says the reward is?

Per intervention: the return of the next episode, the steps it spends on the true goal and on the cell
the context rewards, and whether it reaches that cell, with changes against the original context and
95% bootstrap intervals over contexts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..envs import make_batched
from ..evaluate import ModelAgent, bootstrap_ci, play
from ..envs.grid import move
from ..histories import Histories
from .attention import marked_cells

INTERVENTIONS = ("original", "last_episode", "empty", "zero_rewards", "shuffle_rewards", "move_reward")


@torch.no_grad()
def continue_in_context(model, family: str, tasks, context: Histories | None, episodes: int = 1,
                        env_kwargs: dict | None = None, mode: str = "greedy", temperature: float = 1.0,
                        seed: int = 0) -> Histories:
    """Play `episodes` more episodes of every task after its context (rows of `context`, or nothing).
    Returns what was played, context excluded, as Histories."""
    env = make_batched(family, np.asarray(tasks), **(env_kwargs or {}))
    agent = ModelAgent(model, env.num_envs, mode, temperature, seed, context=context)
    _, played = play(env, agent, episodes, seed, metadata={"env_family": family, "env_kwargs": env_kwargs or {}})
    return played


def _rows(histories: Histories, rows, steps: slice | None = None) -> Histories:
    steps = steps or slice(None)
    return Histories(histories.observations[rows, steps], histories.actions[rows, steps], histories.rewards[rows, steps],
                     histories.dones[rows, steps], histories.tasks[rows], metadata=histories.metadata)


def reached_cells(histories: Histories, size: int) -> np.ndarray:
    """(histories, steps) the cell each step's action led to (grid worlds)."""
    reached = np.empty_like(histories.observations, dtype=np.int64)
    reached[:, :-1] = histories.observations[:, 1:]
    row, col = np.divmod(histories.observations.astype(np.int64), size)
    moved_row, moved_col = move(row, col, histories.actions.astype(np.int64), size)
    moved = moved_row * size + moved_col
    last_of_episode = histories.dones.astype(bool).copy()
    last_of_episode[:, -1] = True
    return np.where(last_of_episode, moved, reached)


def edit_context(context: Histories, intervention: str, size: int | None = None, seed: int = 0):
    """The context after `intervention` (see INTERVENTIONS) and the goal cell each row's reward sits on
    afterwards (for move_reward; else None). Returns (context or None for empty, new goal cells or None)."""
    rng = np.random.default_rng(seed)
    if intervention == "original":
        return context, None
    if intervention == "empty":
        return None, None
    if intervention == "last_episode":
        ends = np.flatnonzero(context.dones[0])
        start = ends[-2] + 1 if len(ends) >= 2 else 0
        if not (context.dones[:, ends] if len(ends) else np.ones((context.num_histories, 0), bool)).all():
            raise ValueError("last_episode needs contexts whose episodes end at the same steps (fixed-length episodes)")
        return _rows(context, slice(None), slice(start, None)), None
    edited = _rows(context, slice(None))
    edited.rewards = context.rewards.copy()
    if intervention == "zero_rewards":
        edited.rewards[:] = 0
        return edited, None
    if intervention == "shuffle_rewards":
        edited.rewards = np.stack([rng.permutation(row) for row in context.rewards])
        return edited, None
    if intervention == "move_reward":
        if size is None:
            raise ValueError("move_reward needs a grid world (a `size`)")
        reached = reached_cells(context, size)
        goals = marked_cells(context).argmax(1)
        start_cells = context.observations[:, 0]
        new = np.empty(context.num_histories, dtype=np.int64)
        for row in range(context.num_histories):
            far = [c for c in np.unique(reached[row]) if c != start_cells[row]
                   and abs(c // size - goals[row] // size) + abs(c % size - goals[row] % size) >= 2]
            new[row] = rng.choice(far) if far else goals[row]
        edited.rewards = (reached == new[:, None]).astype(np.float32) * context.rewards.max()
        return edited, new
    raise ValueError(f"intervention={intervention!r} is not one of {INTERVENTIONS}")


def context_interventions(model, played: Histories, context_episodes: int, interventions=INTERVENTIONS,
                          mode: str = "greedy", temperature: float = 1.0, seed: int = 0, resamples: int = 2000):
    """Edit the first `context_episodes` episodes of each of `played`'s histories that hold a reward, let the
    model play one more episode after each edited context, and measure what it does.

    Returns (summary, per_context): per_context has one row per (intervention, context) with return,
    steps_on_goal (the true goal), steps_on_rewarded_cell (the cell the edited context rewards; the true
    goal unless moved), reached_rewarded_cell; summary has, per intervention and measure, the mean with
    its 95% bootstrap interval and the paired change against the original context with its interval.
    """
    family, env_kwargs = played.metadata["env_family"], played.metadata.get("env_kwargs", {})
    env = make_batched(family, played.tasks[:1], **env_kwargs)
    size = getattr(env, "size", None)
    ends = np.flatnonzero(played.dones[0])
    if len(ends) < context_episodes:
        raise ValueError(f"context_episodes={context_episodes} but the histories hold {len(ends)} episodes")
    length = ends[context_episodes - 1] + 1
    context = _rows(played, slice(None), slice(0, length))
    keep = np.flatnonzero(context.rewards.sum(1) > 0)
    if len(keep) == 0:
        raise ValueError("no context holds a reward: play more episodes, or sample (mode='sample')")
    context = _rows(context, keep)
    marks = marked_cells(context)
    one_goal = size is not None and (marks.sum(1) == 1).all()
    rows = []
    for name in interventions:
        if name == "move_reward" and not one_goal:
            continue
        edited, new_goals = edit_context(context, name, size, seed)
        goals = marks.argmax(1) if size is not None else np.zeros(len(keep), dtype=np.int64)
        tasks = context.tasks if new_goals is None else np.stack(np.divmod(new_goals, size), axis=1)
        after = continue_in_context(model, family, tasks, edited, 1, env_kwargs, mode, temperature, seed)
        rewarded_cell = goals if new_goals is None else new_goals
        cells = reached_cells(after, size) if size is not None else np.zeros_like(after.observations)
        on_rewarded = cells == rewarded_cell[:, None]
        rows.append(pd.DataFrame({
            "intervention": name, "context": np.arange(len(keep)), "history": keep,
            "return": after.rewards.sum(1), "steps_on_goal": (cells == goals[:, None]).sum(1),
            "steps_on_rewarded_cell": on_rewarded.sum(1), "reached_rewarded_cell": on_rewarded.any(1).astype(float)}))
    per_context = pd.concat(rows, ignore_index=True)
    original = per_context[per_context["intervention"] == "original"].set_index("context")
    records = []
    for name, group in per_context.groupby("intervention", sort=False):
        group = group.set_index("context")
        for measure in ("return", "steps_on_goal", "steps_on_rewarded_cell", "reached_rewarded_cell"):
            mean, low, high = bootstrap_ci(group[measure], resamples, seed)
            change, change_low, change_high = bootstrap_ci(group[measure] - original[measure], resamples, seed)
            records.append({"intervention": name, "measure": measure, "mean": mean, "low": low, "high": high,
                            "change": change, "change_low": change_low, "change_high": change_high,
                            "contexts": len(group)})
    return pd.DataFrame(records), per_context
