"""Bernoulli multi-armed bandits: k arms, each paying 1 with its own hidden probability.

The task is the vector of arm means. There is nothing to observe (the observation is always 0), so
all that can be learned comes from one's own actions and rewards, which makes bandits the simplest
setting for in-context learning (as in DPT, Lee et al. 2023: 5 arms, horizon 500).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from .grid import check_horizon
from .vector import BatchedEnv


def check_means(means, name: str = "means") -> np.ndarray:
    means = np.asarray(means, dtype=np.float64)
    if means.ndim < 1 or means.shape[-1] < 2:
        raise ValueError(f"{name} has {means.shape[-1] if means.ndim else 0} arms: a bandit needs k >= 2 arms")
    if np.any((means < 0) | (means > 1)) or not np.all(np.isfinite(means)):
        raise ValueError(f"{name} must be probabilities in [0, 1], got {means.tolist()}")
    return means


COLOURS = {"background": (236, 236, 236), "axis": (70, 70, 70), "pulls": (33, 102, 172), "last": (228, 26, 28),
           "mean": (77, 175, 74)}


def draw_bars(pulls, means, last=None, bar_px: int = 32, height: int = 120) -> np.ndarray:
    """An RGB bar chart of a bandit: each arm's share of the pulls so far as a bar (the last arm pulled
    in red), and its hidden mean as a green tick on the same 0..1 scale."""
    pulls, k = np.asarray(pulls, dtype=np.float64), len(pulls)
    share = pulls / max(pulls.sum(), 1.0)
    image = np.empty((height, k * bar_px, 3), dtype=np.uint8)
    image[:] = COLOURS["background"]
    top = height - 1  # row of a full bar's top is 0, of an empty one height - 1
    for arm in range(k):
        left, right = arm * bar_px + 4, (arm + 1) * bar_px - 4
        bar_top = int(round(top * (1 - share[arm])))
        image[bar_top:height, left:right] = COLOURS["last" if arm == last else "pulls"]
        if means is not None:
            tick = int(round(top * (1 - float(means[arm]))))
            image[max(tick - 1, 0):tick + 2, left - 3:right + 3] = COLOURS["mean"]
    image[-2:, :] = COLOURS["axis"]
    return image


class BernoulliBanditEnv(gym.Env):
    """One bandit task with gymnasium's API. means None: k arm means drawn uniformly at every seeded reset.

    render_mode 'rgb_array' draws each arm's share of the pulls so far and its hidden mean (draw_bars).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, means=None, k: int = 5, horizon: int = 500, render_mode: str | None = None):
        self.horizon = check_horizon(horizon)
        if means is None:
            if not isinstance(k, (int, np.integer)) or k < 2:
                raise ValueError(f"k={k!r} is not allowed: a bandit needs k >= 2 arms")
            self.means, self.k = None, int(k)
        else:
            self.means = check_means(means)
            self.k = len(self.means)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported: use None or 'rgb_array'")
        self.render_mode = render_mode
        self._draw_task = means is None
        self.observation_space = gym.spaces.Discrete(1)
        self.action_space = gym.spaces.Discrete(self.k)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self._draw_task and (seed is not None or self.means is None):
            self.means = self.np_random.random(self.k)
        self.steps = 0
        self.pulls, self.last = np.zeros(self.k, dtype=np.int64), None
        return 0, {"means": self.means.copy()}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action={action!r} is not one of the arms 0..{self.k - 1}")
        reward = float(self.np_random.random() < self.means[int(action)])
        self.steps += 1
        self.pulls[int(action)] += 1
        self.last = int(action)
        return 0, reward, False, self.steps >= self.horizon, {"means": self.means.copy()}

    def render(self):
        if self.render_mode == "rgb_array":
            return draw_bars(self.pulls, self.means, self.last)
        return None


class BatchedBernoulliBandit(BatchedEnv):
    """Many bandit tasks at once, as a gymnasium VectorEnv.

    means: the arm means of every row, shape (n, k); None (with num_envs) draws k uniform means per
    row at the first reset and at every seeded full reset. autoreset_mode is gymnasium's (see
    icrl_lab.envs.vector). optimal_actions() is each task's best arm, and an evaluation measures regret.
    """

    fixed_length_episodes = True
    num_obs = 1
    metric = "regret"

    def __init__(self, means=None, horizon: int = 500, k: int = 5, num_envs: int | None = None,
                 autoreset_mode="NextStep", render_mode: str | None = None):
        self.horizon = check_horizon(horizon)
        if means is None:
            if not isinstance(k, (int, np.integer)) or k < 2:
                raise ValueError(f"k={k!r} is not allowed: a bandit needs k >= 2 arms")
            self.num_actions = int(k)
        else:
            self.num_actions = np.shape(means)[-1] if np.ndim(means) == 2 else 0
        self._init_vector(means, num_envs, autoreset_mode, render_mode, {"horizon": horizon})

    def check_tasks(self, means) -> np.ndarray:
        means = check_means(means, "means")
        if means.ndim != 2:
            raise ValueError(f"means must have shape (n, k) of arm means, got {means.shape}")
        return means

    def _set_tasks(self, means):
        self._tasks = self.means = means

    def _draw_tasks(self, n):
        return self.np_random.random((n, self.num_actions))

    def reset_rows(self, mask=None, seed=None) -> np.ndarray:
        """Reset every row (mask None) or the rows where mask is True; return all observations (all 0)."""
        self._begin_reset(mask, seed)
        if mask is None:
            self.steps = np.zeros(self.num_envs, dtype=np.int64)
        else:
            self.steps[mask] = 0
        return np.zeros(self.num_envs, dtype=np.int64)

    def step_arrays(self, actions):
        """Step every row: (observations, rewards, terminated, truncated), with no autoreset."""
        actions = np.asarray(actions)
        rewards = (self.np_random.random(self.num_envs) < self.means[np.arange(self.num_envs), actions]).astype(np.float32)
        self.steps += 1
        truncated = self.steps >= self.horizon
        return np.zeros(self.num_envs, dtype=np.int64), rewards, np.zeros(self.num_envs, dtype=bool), truncated

    def optimal_actions(self) -> np.ndarray:
        """The best arm of each task (what DPT is trained to predict)."""
        return np.argmax(self.means, axis=1)

    def optimal_returns(self, seed: int = 0) -> np.ndarray:
        """Each task's expected return when always pulling its best arm (seed is not needed)."""
        return self.means.max(axis=1) * self.horizon

    def regret(self, actions) -> np.ndarray:
        """Cumulative regret of played arms, shape (tasks, steps): the best mean minus the chosen arm's, summed."""
        actions = np.asarray(actions, dtype=np.int64)
        rows = np.arange(len(self.means))[:, None]
        return np.cumsum(self.means.max(axis=1, keepdims=True) - self.means[rows, actions], axis=1)

    @staticmethod
    def task_marks(task) -> dict:
        """A bandit has no hidden cells: {}."""
        return {}
