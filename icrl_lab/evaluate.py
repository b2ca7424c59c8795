"""In-context evaluation: a trained model acts on many held-out tasks at once, its context carried
across episodes, with no weight updates. Improvement over episodes is in-context learning.

Each step costs one token per task thanks to the key/value cache. Results come as a pandas DataFrame
with one row per (task, episode) and its return; `summarize` turns it into the headline figures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .curricula import demonstrator_return
from .envs import make_batched
from .histories import Histories
from .sources import collect_rl_histories, optimal_returns

MODES = ("greedy", "sample", "greedy_when_rewarded")


@torch.no_grad()
def in_context_rollout(model, family: str, tasks, episodes: int, env_kwargs: dict | None = None,
                       mode: str = "greedy", temperature: float = 1.0, seed: int = 0):
    """Run `model` in context on every task for `episodes` episodes.

    mode: "greedy" (argmax), "sample" (from the softmax at `temperature`), or "greedy_when_rewarded":
    sample while no reward lies inside the model's context window, act greedily while one does. The
    last is a decoding rule on top of the model (explore until something is found, then exploit what
    the context shows); it uses only rewards the agent has observed.

    Returns (frame, histories): frame has columns task, episode, return; histories holds what the
    model did, step by step, as a Histories dataset (for plots, the rollout viewer, probing).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} is not allowed: it must be an integer >= 1")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} is not allowed: it must be > 0")
    tasks = np.asarray(tasks)
    env = make_batched(family, tasks, **(env_kwargs or {}))
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    n, marker = env.num_envs, model.config.num_actions
    obs = env.reset_rows(seed=seed)
    prev_actions, prev_rewards = np.full(n, marker), np.zeros(n, dtype=np.float32)
    cache = model.new_cache(n)
    completed, running_return = np.zeros(n, dtype=np.int64), np.zeros(n)
    last_rewarded = np.full(n, -(10**9))  # step of each task's latest reward
    rows, steps = [], []
    model.eval()
    while completed.min() < episodes:
        logits = model(torch.as_tensor(obs, device=device)[:, None], torch.as_tensor(prev_actions, device=device)[:, None],
                       torch.as_tensor(prev_rewards, device=device)[:, None], cache=cache)[:, -1].float()
        greedy = logits.argmax(-1).cpu().numpy()
        if mode == "greedy":
            actions = greedy
        else:
            sampled = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0].cpu().numpy()
            # The context holds the previous rewards of the last window_steps steps.
            rewarded_in_context = last_rewarded >= len(steps) - model.config.window_steps
            actions = sampled if mode == "sample" else np.where(rewarded_in_context, greedy, sampled)
        next_obs, rewards, terminated, truncated = env.step_arrays(actions)
        done = terminated | truncated
        steps.append((obs, actions, rewards, done))
        running_return += rewards
        last_rewarded = np.where(rewards > 0, len(steps) - 1, last_rewarded)
        for task in np.flatnonzero(done & (completed < episodes)):
            rows.append((task, completed[task], running_return[task]))
        completed += done
        running_return[done] = 0.0
        prev_actions = np.where(done, marker, actions)
        prev_rewards = rewards.astype(np.float32)  # the final step's reward too (see previous_actions_and_rewards)
        obs = env.reset_rows(done) if done.any() else next_obs
    frame = pd.DataFrame(rows, columns=["task", "episode", "return"])
    observations, actions, rewards, dones = (np.stack(a, axis=1) for a in zip(*steps))
    played = Histories(observations, actions, rewards.astype(np.float32), dones, tasks,
                       metadata={"env_family": family, "env_kwargs": env_kwargs or {}, "source": {"name": "model", "mode": mode}})
    return frame, played


def best_in_data_return(data_metadata: dict, family: str, tasks, env_kwargs: dict | None = None,
                        training_returns: np.ndarray | None = None) -> float:
    """The return of the best policy in the training data, on these tasks.

    For AD^eps data: the demonstrator at its calibrated floor (expected return, by simulation). For
    an RL algorithm's histories: the mean return of their last episodes (`training_returns`).
    """
    source = data_metadata.get("source", {})
    if source.get("name") == "noise_distillation":
        return demonstrator_return(family, tasks, source["floor"], episodes_per_task=256, seed=1, **(env_kwargs or {}))
    if training_returns is None:
        raise ValueError("best_in_data_return needs training_returns for data not made by a noise curriculum")
    return float(np.nanmean(training_returns))


def summarize(frame: pd.DataFrame, optimal_return: float, best_in_data: float, last: int = 10) -> dict:
    """The headline figures of an in-context evaluation."""
    per_episode = frame.groupby("episode")["return"].mean()
    last_mean = float(per_episode.iloc[-last:].mean())
    return {
        "mean_return_first_episode": float(per_episode.iloc[0]),
        "mean_return_last10": last_mean,
        "best_in_data_return": float(best_in_data),
        "optimal_return": float(optimal_return),
        "ratio_to_best_in_data": last_mean / best_in_data if best_in_data > 0 else float("nan"),
        "episodes": int(per_episode.index.max() + 1),
        "tasks": int(frame["task"].nunique()),
    }


def bandit_regret(actions: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Cumulative regret per step, shape (tasks, steps): the best arm's mean minus the chosen arm's, summed."""
    rows = np.arange(len(means))[:, None]
    return np.cumsum(means.max(axis=1, keepdims=True) - means[rows, actions], axis=1)


def baseline_regret(algorithm: str, means: np.ndarray, horizon: int, seed: int = 0) -> np.ndarray:
    """Cumulative regret of UCB1 or Thompson sampling on the same bandit tasks."""
    data = collect_rl_histories("BernoulliBandit", means, algorithm, horizon, seed=seed, env_kwargs={"horizon": horizon})
    return bandit_regret(data.actions.astype(np.int64), means)


def evaluate_model(model, record: dict, tasks, episodes: int = 50, mode: str = "greedy", temperature: float = 1.0,
                   seed: int = 0, rollouts_per_task: int = 1) -> tuple[dict, object]:
    """The headline figures of a trained model on `tasks`, given its checkpoint record (environment
    family and arguments, training-data provenance). Each task is played `rollouts_per_task` times
    side by side (independent contexts), which steadies the figures of stochastic decoding.

    Returns (figures, result): for grid worlds the frame of returns (columns task, rollout, episode,
    return), for bandits the cumulative-regret curves of the model, Thompson sampling and UCB1 on the
    same tasks."""
    family, env_kwargs = record["env_family"], record.get("env_kwargs", {})
    if family == "BernoulliBandit":
        _, played = in_context_rollout(model, family, tasks, 1, env_kwargs, mode=mode, temperature=temperature, seed=seed)
        horizon = played.num_steps
        curves = {"model": bandit_regret(played.actions.astype(np.int64), tasks),
                  "Thompson sampling": baseline_regret("thompson", tasks, horizon, seed),
                  "UCB1": baseline_regret("ucb1", tasks, horizon, seed)}
        figures = {"regret": float(curves["model"][:, -1].mean()),
                   "thompson_regret": float(curves["Thompson sampling"][:, -1].mean()),
                   "ucb_regret": float(curves["UCB1"][:, -1].mean()), "tasks": len(tasks), "horizon": horizon}
        figures["regret_to_thompson"] = figures["regret"] / figures["thompson_regret"]
        return figures, curves
    if not isinstance(rollouts_per_task, int) or rollouts_per_task < 1:
        raise ValueError(f"rollouts_per_task={rollouts_per_task!r} is not allowed: it must be an integer >= 1")
    repeated = np.repeat(np.asarray(tasks), rollouts_per_task, axis=0)
    frame, _ = in_context_rollout(model, family, repeated, episodes, env_kwargs, mode=mode, temperature=temperature,
                                  seed=seed)
    frame.insert(1, "rollout", frame["task"] % rollouts_per_task)
    frame["task"] //= rollouts_per_task
    best = best_in_data_return(record["data"], family, tasks, env_kwargs,
                               training_returns=record.get("data_last_episode_return"))
    optimal = float(optimal_returns(family, tasks, **env_kwargs).mean())
    return {**summarize(frame, optimal, best), "rollouts_per_task": rollouts_per_task}, frame
