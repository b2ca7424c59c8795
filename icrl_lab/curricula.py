"""AD^eps noise-distillation curricula (Zisman et al., 2024): learning histories with no RL at all.

A scripted optimal demonstrator acts epsilon-greedily while epsilon falls step by step from 1 (random)
to a floor; a history made this way looks like a learning run that improves over its episodes. The
floor sets how good the best policy in the data is. It is found by calibration: the epsilon at which
the demonstrator's mean return is `max_perf` times the optimal return on the training tasks.
"""
from __future__ import annotations

import numpy as np

from .envs import make_batched
from .histories import Histories
from .schedules import LinearSchedule
from .sources import (EpsilonGreedyDemonstrator, call_repr, check_episode_fits, check_positive, check_seed,
                      collection_metadata, episode_returns, optimal_returns, rollout)


def demonstrator_returns(family: str, tasks, epsilon: float, episodes_per_task: int = 64, seed: int = 0,
                         **env_kwargs) -> np.ndarray:
    """The epsilon-greedy demonstrator's return in each of `episodes_per_task` episodes of every task, task by task
    (for how its episodes end, e.g. Key-to-Door's 0, 1 or 2)."""
    env = make_batched(family, np.repeat(np.asarray(tasks), episodes_per_task, axis=0), **env_kwargs)
    policy = EpsilonGreedyDemonstrator(env, epsilon, seed=seed)
    return episode_returns(env, policy, seed=seed + 1)


def demonstrator_return(family: str, tasks, epsilon: float, episodes_per_task: int = 64, seed: int = 0,
                        **env_kwargs) -> float:
    """Mean return of the epsilon-greedy demonstrator over `episodes_per_task` episodes of every task.

    The same seed gives the same random draws for every epsilon (common random numbers), so the
    estimate changes smoothly with epsilon, which calibration relies on.
    """
    return float(demonstrator_returns(family, tasks, epsilon, episodes_per_task, seed, **env_kwargs).mean())


def calibrate_floor(family: str, tasks, max_perf: float, episodes_per_task: int = 64, seed: int = 0,
                    tolerance: float = 1e-4, **env_kwargs) -> float:
    """The epsilon at which the demonstrator's mean return is max_perf x the mean optimal return.

    Bisection on epsilon in [0, 1]: the demonstrator's return falls as epsilon grows. max_perf = 1
    gives 0 (the optimal policy); a max_perf below what a random policy already earns is refused.
    """
    if not isinstance(max_perf, (int, float)) or not 0.0 < max_perf <= 1.0:
        raise ValueError(f"max_perf={max_perf!r} is not allowed: it must lie in (0, 1]")
    episodes_per_task = check_positive("episodes_per_task", episodes_per_task)
    optimal = float(optimal_returns(family, tasks, **env_kwargs).mean())
    target = max_perf * optimal

    def mean_return(epsilon):
        return demonstrator_return(family, tasks, epsilon, episodes_per_task, seed, **env_kwargs)

    if max_perf == 1.0:
        return 0.0
    random_return = mean_return(1.0)
    if random_return >= target:
        raise ValueError(f"max_perf={max_perf} is not allowed here: a uniformly random policy already earns "
                         f"{random_return / optimal:.3f} of the optimal return; choose max_perf in "
                         f"({random_return / optimal:.3f}, 1]")
    low, high = 0.0, 1.0  # mean_return(low) >= target > mean_return(high)
    while high - low > tolerance:
        middle = (low + high) / 2
        if mean_return(middle) >= target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def collect_noise_distillation(family: str, tasks, num_steps: int, max_perf: float = 0.5,
                               schedule=None, histories_per_task: int = 1, seed: int = 0,
                               env_kwargs: dict | None = None, command: str | None = None,
                               floor: float | None = None) -> Histories:
    """AD^eps learning histories: `histories_per_task` histories of `num_steps` steps for every task.

    schedule: a schedule from icrl_lab.schedules (LinearSchedule() by default); its floor is replaced
    by the one calibrated for `max_perf` on these tasks, or by `floor` when given (the paper's own
    settings name the floor, e.g. 0.5 for Dark Room). The per-step epsilon is stored with the data.
    command: what to record as the call that made the data (the command line, from the CLI).
    """
    command = command or call_repr("curricula.collect_noise_distillation", family=family, tasks=tasks,
                                   num_steps=num_steps, max_perf=max_perf, schedule=schedule,
                                   histories_per_task=histories_per_task, seed=seed, env_kwargs=env_kwargs,
                                   **({} if floor is None else {"floor": floor}))
    env_kwargs = dict(env_kwargs or {})
    num_steps = check_positive("num_steps", num_steps)
    histories_per_task = check_positive("histories_per_task", histories_per_task)
    tasks = np.asarray(tasks)
    if len(tasks) == 0:
        raise ValueError("tasks is empty: give at least one task to collect histories for")
    check_seed(seed)
    check_episode_fits(num_steps, make_batched(family, tasks[:1], **env_kwargs), family)
    if floor is not None and not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor={floor!r} is not allowed: an epsilon floor lies in [0, 1]")
    schedule = (schedule or LinearSchedule()).with_floor(
        calibrate_floor(family, tasks, max_perf, seed=seed, **env_kwargs) if floor is None else float(floor))
    history_tasks = np.repeat(tasks, histories_per_task, axis=0)
    epsilon = schedule.values(num_steps).astype(np.float32)
    env = make_batched(family, history_tasks, **env_kwargs)
    num_histories = env.num_envs
    rng = np.random.default_rng(seed)
    policy_seed, env_seed = (int(s) for s in rng.integers(2**31, size=2))

    horizon = env.horizon
    if env.fixed_length_episodes and num_steps % horizon == 0:
        # Every episode has the same length and start, and the demonstrator's epsilon at every step is
        # known in advance, so all episodes of all histories can be played side by side: one row each
        # (row = history * episodes + episode), `horizon` steps in all.
        episodes = num_steps // horizon
        env = make_batched(family, np.repeat(history_tasks, episodes, axis=0), **env_kwargs)
        row_epsilon = np.tile(epsilon.reshape(episodes, horizon).T, (1, num_histories))
        played = rollout(env, EpsilonGreedyDemonstrator(env, row_epsilon, seed=policy_seed), horizon, seed=env_seed)
        steps = {name: array.reshape(num_histories, num_steps) for name, array in played.items()}
    else:
        row_epsilon = np.broadcast_to(epsilon[:, None], (num_steps, num_histories))
        steps = rollout(env, EpsilonGreedyDemonstrator(env, row_epsilon, seed=policy_seed), num_steps, seed=env_seed)
    source = {"name": "noise_distillation", "max_perf": None if floor is not None else max_perf, **schedule.describe()}
    return Histories(**steps, tasks=history_tasks, epsilon=np.broadcast_to(epsilon, (num_histories, num_steps)),
                     metadata=collection_metadata(family, env_kwargs, source, seed, command))
