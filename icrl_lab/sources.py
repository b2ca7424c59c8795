"""Where learning histories come from: policies and learning algorithms acting in batched environments.

Every source is a small object with two methods, so one loop (`rollout`) can run any of them on many
tasks at once:

    act(observations, step) -> actions          choose an action for every task
    observe(obs, actions, rewards, next_obs, terminated)   learn from the transition (optional)

Scripted demonstrators act epsilon-greedily around the environment's optimal policy; tabular
Q-learning, UCB1 and Thompson sampling learn, so their histories improve over episodes.

Every collector (`collect_rl_histories` here; the AD^eps curricula in `icrl_lab.curricula`) is built
from the same public pieces, all in this module: `check_positive` for its arguments, `rollout`, which
plays a source and records the step arrays of `Histories`, `episode_returns` and `optimal_returns` to
measure a policy, and `call_repr` and `collection_metadata` to record where the data came from.
"""
from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from . import __version__
from .envs import make_batched
from .histories import Histories
from .schedules import LinearSchedule


def _compact_int(upper: int):
    return np.int16 if upper < 2**15 else np.int32


def rollout(env, policy, num_steps: int, seed: int | None = None) -> dict[str, np.ndarray | None]:
    """Run `policy` in the batched `env` for `num_steps` steps, resetting each task when its episode ends.

    Returns what it recorded as the step arrays of `Histories`, by name, one row per row of `env`:
    observations, actions, rewards, dones and optimal_actions (None where the environment has no
    optimal policy). The collector adds the rest: ``Histories(**steps, tasks=..., metadata=...)``.
    """
    obs = env.reset_rows(seed=seed)
    rows = env.num_envs
    int_obs, int_act = _compact_int(env.num_obs), _compact_int(env.num_actions + 1)
    # Filled step by step as (steps, tasks), transposed once at the end.
    observations = np.empty((num_steps, rows), dtype=int_obs)
    actions = np.empty((num_steps, rows), dtype=int_act)
    rewards = np.empty((num_steps, rows), dtype=np.float32)
    dones = np.empty((num_steps, rows), dtype=bool)
    has_optimal = hasattr(env, "optimal_actions")
    optimal = np.empty((num_steps, rows), dtype=int_act) if has_optimal else None
    learns = hasattr(policy, "observe")
    for t in range(num_steps):
        observations[t] = obs
        if has_optimal:
            optimal[t] = env.optimal_actions()
        action = policy.act(obs, t)
        next_obs, reward, terminated, truncated = env.step_arrays(action)
        if learns:
            policy.observe(obs, action, reward, next_obs, terminated)
        done = terminated | truncated
        actions[t], rewards[t], dones[t] = action, reward, done
        obs = env.reset_rows(done) if done.any() else next_obs
    steps = {"observations": observations, "actions": actions, "rewards": rewards, "dones": dones,
             "optimal_actions": optimal}
    return {name: None if array is None else array.T.copy() for name, array in steps.items()}


def episode_returns(env, policy, seed: int | None = None) -> np.ndarray:
    """Play exactly one episode in every task of `env`; return each task's return."""
    obs = env.reset_rows(seed=seed)
    total = np.zeros(env.num_envs)
    running = np.ones(env.num_envs, dtype=bool)
    t = 0
    while running.any():
        obs, reward, terminated, truncated = env.step_arrays(policy.act(obs, t))
        total += reward * running
        running &= ~(terminated | truncated)
        t += 1
    return total


class EpsilonGreedyDemonstrator:
    """The environment's optimal policy with noise: with probability epsilon a uniformly random action
    (all actions, noop included), else the optimal one.

    epsilon: one number for every task and step, or an array of shape (steps, tasks) whose row t holds
    each task's noise at step t (step-major, so that each step reads one contiguous row).
    """

    def __init__(self, env, epsilon, seed: int | None = None):
        self.env = env
        self.epsilon = np.asarray(epsilon, dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def act(self, obs, step):
        eps = self.epsilon[step] if self.epsilon.ndim == 2 else self.epsilon
        u = self.rng.random(self.env.num_envs, dtype=np.float32)
        explore = u < eps
        # Given u < eps, u / eps is uniform on [0, 1): one draw decides both whether and how to explore.
        random_actions = (u / np.maximum(eps, 1e-12) * self.env.num_actions).astype(np.int64)
        return np.where(explore, random_actions, self.env.optimal_actions())


class RandomPolicy:
    """Acts at random: uniformly, or (concentration given) from one Dirichlet-drawn action
    distribution per task, as DPT's bandit contexts are made."""

    def __init__(self, num_envs: int, num_actions: int, concentration: float | None = None, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        if concentration is None:
            self.probs = np.full((num_envs, num_actions), 1.0 / num_actions)
        else:
            if (isinstance(concentration, bool) or not isinstance(concentration, numbers.Real)
                    or not (math.isfinite(concentration) and concentration > 0)):
                raise ValueError(f"concentration={concentration!r} is not allowed: it must be a finite number > 0 "
                                 f"(1.0 draws action distributions uniformly; below 1 they favour one action)")
            self.probs = self.rng.dirichlet(np.full(num_actions, concentration), size=num_envs)
        self.cumulative = np.cumsum(self.probs, axis=1)

    def act(self, obs, step):
        u = self.rng.random((len(self.probs), 1))
        return np.minimum((u > self.cumulative).sum(axis=1), self.probs.shape[1] - 1)


class QLearning:
    """Tabular Q-learning, one table per task, with epsilon-greedy exploration.

    exploration: a schedule (see icrl_lab.schedules) mapping history progress in [0, 1] to
    epsilon; num_steps tells it how long the history is.
    """

    def __init__(self, num_envs: int, num_obs: int, num_actions: int, num_steps: int, exploration,
                 learning_rate: float = 0.5, discount: float = 0.9, seed: int | None = None):
        if not isinstance(learning_rate, numbers.Real) or not 0 < learning_rate <= 1:
            raise ValueError(f"learning_rate={learning_rate!r} is not allowed: it must be in (0, 1]")
        if not isinstance(discount, numbers.Real) or not 0 <= discount < 1:
            raise ValueError(f"discount={discount} is not allowed: it must be in [0, 1)")
        self.q = np.zeros((num_envs, num_obs, num_actions))
        self.epsilon = exploration.values(num_steps)
        self.learning_rate, self.discount = learning_rate, discount
        self.rng = np.random.default_rng(seed)
        self.rows = np.arange(num_envs)

    def act(self, obs, step):
        q = self.q[self.rows, obs]
        # Random tie-breaking, so that an untrained table does not always pick action 0.
        greedy = np.argmax(q + 1e-9 * self.rng.random(q.shape), axis=1)
        explore = self.rng.random(len(obs)) < self.epsilon[step]
        return np.where(explore, self.rng.integers(q.shape[1], size=len(obs)), greedy)

    def observe(self, obs, actions, rewards, next_obs, terminated):
        bootstrap = self.q[self.rows, next_obs].max(axis=1) * ~terminated
        target = rewards + self.discount * bootstrap
        self.q[self.rows, obs, actions] += self.learning_rate * (target - self.q[self.rows, obs, actions])


class UCB1:
    """Upper confidence bound for bandits: play each arm once, then argmax of mean + c * sqrt(2 ln t / n)."""

    def __init__(self, num_envs: int, num_actions: int, c: float = 1.0):
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not (math.isfinite(c) and c >= 0):
            raise ValueError(f"c={c!r} is not allowed: UCB1's exploration weight must be a finite number >= 0")
        self.counts = np.zeros((num_envs, num_actions))
        self.sums = np.zeros((num_envs, num_actions))
        self.c = c
        self.rows = np.arange(num_envs)

    def act(self, obs, step):
        if step < self.counts.shape[1]:
            return np.full(len(self.rows), step)
        means = self.sums / self.counts
        bonus = self.c * np.sqrt(2 * np.log(self.counts.sum(axis=1, keepdims=True)) / self.counts)
        return np.argmax(means + bonus, axis=1)

    def observe(self, obs, actions, rewards, next_obs, terminated):
        self.counts[self.rows, actions] += 1
        self.sums[self.rows, actions] += rewards


class ThompsonSampling:
    """Thompson sampling for Bernoulli bandits with a Beta(1, 1) prior on every arm."""

    def __init__(self, num_envs: int, num_actions: int, seed: int | None = None):
        self.successes = np.ones((num_envs, num_actions))
        self.failures = np.ones((num_envs, num_actions))
        self.rng = np.random.default_rng(seed)
        self.rows = np.arange(num_envs)

    def act(self, obs, step):
        return np.argmax(self.rng.beta(self.successes, self.failures), axis=1)

    def observe(self, obs, actions, rewards, next_obs, terminated):
        self.successes[self.rows, actions] += rewards
        self.failures[self.rows, actions] += 1 - rewards


POLICIES = {"q_learning": QLearning, "ucb1": UCB1, "thompson": ThompsonSampling, "random": RandomPolicy}


def optimal_returns(family: str, tasks, seed: int = 0, **env_kwargs) -> np.ndarray:
    """Each task's return under the optimal policy (expected return for bandits)."""
    return make_batched(family, tasks, **env_kwargs).optimal_returns(seed=seed)


def check_positive(name: str, value) -> int:
    """A count given to a collector (steps, histories, episodes), refused unless an integer >= 1."""
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: it must be an integer >= 1")
    return int(value)


MAX_SEED = 2**32 - 1


def check_seed(seed, name: str = "seed") -> int:
    """A random seed, refused unless an integer in [0, MAX_SEED] (what every generator here accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name}={seed!r} is not allowed: it must be an integer from 0 to {MAX_SEED}")
    return int(seed)


def check_episode_fits(num_steps: int, env, family: str) -> None:
    """Refuse histories shorter than one episode: they would hold no return to learn from or measure."""
    if num_steps < env.horizon:
        raise ValueError(f"num_steps={num_steps} is shorter than one {family} episode ({env.horizon} steps): "
                         f"give num_steps >= {env.horizon} (a multiple of it gives whole episodes), or a shorter "
                         f"horizon in env_kwargs")


def call_repr(function: str, **arguments) -> str:
    """How a collection call is recorded in a dataset's metadata (task arrays by their size only)."""
    shown = {k: (f"<{np.shape(v)[0]} tasks>" if k == "tasks" else v) for k, v in arguments.items()}
    return f"icrl_lab.{function}(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def collection_metadata(family: str, env_kwargs: dict, source: dict, seed, command: str) -> dict:
    """What a collected dataset records of its making: the `metadata` of the format in icrl_lab.histories."""
    return {"env_family": family, "env_kwargs": env_kwargs, "source": source, "seed": seed,
            "icrl_lab_version": __version__, "command": command}


def collect_rl_histories(family: str, tasks, algorithm: str, num_steps: int, histories_per_task: int = 1,
                         seed: int = 0, env_kwargs: dict | None = None, command: str | None = None,
                         **algorithm_kwargs) -> Histories:
    """Learning histories of an RL algorithm, `histories_per_task` per task, all learning at once.

    algorithm: 'q_learning' (grid worlds), 'ucb1' or 'thompson' (bandits), 'random'.
    command: what to record as the call that made the data (the command line, from the CLI).
    """
    command = command or call_repr("sources.collect_rl_histories", family=family, tasks=tasks, algorithm=algorithm,
                                   num_steps=num_steps, histories_per_task=histories_per_task, seed=seed,
                                   env_kwargs=env_kwargs, **algorithm_kwargs)
    env_kwargs = dict(env_kwargs or {})
    num_steps = check_positive("num_steps", num_steps)
    check_seed(seed)
    if algorithm not in POLICIES:
        raise ValueError(f"algorithm={algorithm!r} is not one of 'q_learning', 'ucb1', 'thompson', 'random'")
    allowed = set(inspect.signature(POLICIES[algorithm]).parameters) - {"num_envs", "num_obs", "num_actions",
                                                                         "num_steps", "seed"}
    unknown = sorted(set(algorithm_kwargs) - allowed)
    if unknown:
        raise ValueError(f"{unknown} are not options of {algorithm}: it takes {sorted(allowed) or 'none'}")
    if len(np.asarray(tasks)) == 0:
        raise ValueError("tasks is empty: give at least one task to collect histories for")
    tasks = np.repeat(np.asarray(tasks), check_positive("histories_per_task", histories_per_task), axis=0)
    env = make_batched(family, tasks, **env_kwargs)
    check_episode_fits(num_steps, env, family)
    n, obs, acts = env.num_envs, env.num_obs, env.num_actions
    rng = np.random.default_rng(seed)
    policy_seed, env_seed = (int(s) for s in rng.integers(2**31, size=2))
    if algorithm == "q_learning":
        exploration = algorithm_kwargs.pop("exploration", LinearSchedule(start=1.0, floor=0.05, floor_at=0.5))
        policy = QLearning(n, obs, acts, num_steps, exploration, seed=policy_seed, **algorithm_kwargs)
        algorithm_kwargs["exploration"] = exploration.describe()
    elif algorithm == "ucb1":
        policy = UCB1(n, acts, **algorithm_kwargs)
    elif algorithm == "thompson":
        policy = ThompsonSampling(n, acts, seed=policy_seed, **algorithm_kwargs)
    else:
        policy = RandomPolicy(n, acts, seed=policy_seed, **algorithm_kwargs)
    steps = rollout(env, policy, num_steps, seed=env_seed)
    source = {"name": algorithm, **algorithm_kwargs}
    return Histories(**steps, tasks=tasks, metadata=collection_metadata(family, env_kwargs, source, seed, command))
