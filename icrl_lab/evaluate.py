"""In-context evaluation: a trained model acts on many held-out tasks at once, its context carried
across episodes, with no weight updates. Improvement over episodes is in-context learning.

One loop (`play`) runs any agent on a batched environment: the model (`ModelAgent`, one token per task
and step thanks to the key/value cache) and the controls that every headline stands beside:

- `MemoryAgent`, no model at all: uniformly random moves until a reward is seen, then straight back to
  the rewarded cells (the goal; the key, then the door). What a model adds is what it does beyond this.
- a model with random weights (the same architecture, untrained);
- the best policy in the training data, and the optimal policy.

A `Protocol` fixes how a paper evaluates: `adeps` (Zisman et al., 2024) acts greedily, carries the
context across the paper's number of episodes on the held-out tasks and reports the mean return of the
last 10; `dpt` (Lee et al., 2023) samples from the softmax and reports cumulative regret. Figures come
with 95% bootstrap confidence intervals over tasks (`bootstrap_ci`), and `compare` says whether two
agents differ on the same tasks. Any other decoding is an ablation (`decoding_ablation`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from .curricula import demonstrator_return
from .envs import FAMILIES, make_batched
from .envs.grid import shortest_path_action
from .histories import Histories, Provenance, array_sha256, episode_of_step, previous_actions_and_rewards
from .sources import collect_rl_histories, optimal_returns

DECODINGS = ("greedy", "sample", "greedy_when_rewarded")


def choose_actions(logits: torch.Tensor, decoding: str, temperature: float = 1.0, generator=None,
                   rewarded_in_context: np.ndarray | None = None) -> np.ndarray:
    """Actions from a (batch, actions) array of logits.

    greedy: the argmax. sample: a draw from softmax(logits / temperature). greedy_when_rewarded: a
    hand-written rule on top of the model (an ablation, never a headline): sample while no reward lies
    in the context window, act greedily while one does.
    """
    greedy = logits.argmax(-1).cpu().numpy()
    if decoding == "greedy":
        return greedy
    sampled = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0].cpu().numpy()
    return sampled if decoding == "sample" else np.where(rewarded_in_context, greedy, sampled)


class ModelAgent:
    """A sequence model acting in context: one token per step, read from its key/value cache.

    context: steps already in each row's context (Histories ending at an episode boundary, one row per
    environment), read into the cache first, so that the agent acts on after them (probing edits them)."""

    def __init__(self, model, num_envs: int, decoding: str = "greedy", temperature: float = 1.0, seed: int = 0,
                 context: Histories | None = None):
        if decoding not in DECODINGS:
            raise ValueError(f"decoding={decoding!r} is not one of {DECODINGS}")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature} is not allowed: it must be > 0")
        self.model, self.decoding, self.temperature = model.eval(), decoding, temperature
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        marker = model.config.num_actions  # the extra action id of an episode's first step
        self.marker = marker
        self.prev_actions, self.prev_rewards = np.full(num_envs, marker), np.zeros(num_envs, dtype=np.float32)
        self.last_rewarded, self.step = np.full(num_envs, -(10**9)), 0
        if context is None or context.num_steps == 0:
            self.cache = model.new_cache(num_envs)
        else:
            self.cache = model.new_cache(num_envs, chunk_steps=context.num_steps)
            self._read(context)

    @torch.no_grad()
    def _read(self, context: Histories):
        prev_actions, prev_rewards = previous_actions_and_rewards(context, self.marker)
        self.model(*(torch.as_tensor(a, device=self.device) for a in
                     (context.observations.astype(np.int64), prev_actions, prev_rewards)), cache=self.cache)
        self.prev_actions = np.where(context.dones[:, -1], self.marker, context.actions[:, -1].astype(np.int64))
        self.prev_rewards = context.rewards[:, -1].astype(np.float32)
        rewarded = context.rewards > 0
        self.step = context.num_steps
        self.last_rewarded = np.where(rewarded.any(axis=1), self.step - 1 - np.argmax(rewarded[:, ::-1], axis=1), -(10**9))

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        inputs = (torch.as_tensor(a, device=self.device)[:, None]
                  for a in (observations, self.prev_actions, self.prev_rewards))
        logits = self.model(*inputs, cache=self.cache)[:, -1].float()
        rewarded_in_context = self.last_rewarded >= self.step - self.model.config.window_steps
        return choose_actions(logits, self.decoding, self.temperature, self.generator, rewarded_in_context)

    def observe(self, actions, rewards, done, next_observations):
        # The final step's reward enters the next token too (see histories.previous_actions_and_rewards).
        self.prev_actions = np.where(done, self.marker, actions)
        self.prev_rewards = rewards.astype(np.float32)
        self.last_rewarded = np.where(rewards > 0, self.step, self.last_rewarded)
        self.step += 1


class MemoryAgent:
    """The no-model control: uniformly random moves until rewarded, then straight back to what was found.

    Dark Room: once a reward is seen, walk to that cell and stay. Key-to-Door: the first rewarded cell is
    the key, a later one the door; walk to the key unless this episode has already picked it up, then to
    the door once it is known, exploring at random otherwise. It only uses rewards it observed.
    """

    def __init__(self, env, seed: int = 0):
        self.env, self.rng, self.size = env, np.random.default_rng(seed), env.size
        self.found = np.full((env.num_envs, 2), -1)  # cell ids of the first and the second rewarded cell
        self.holding_first = np.zeros(env.num_envs, dtype=bool)  # this episode has been rewarded at found[:, 0]
        self.two_targets = len(env.task_marks(env.tasks[0])) == 2  # Key-to-Door: a key, then a door

    def act(self, observations: np.ndarray) -> np.ndarray:
        actions = self.rng.integers(self.env.num_actions, size=self.env.num_envs)
        first, second = self.found[:, 0], self.found[:, 1]
        target = np.where(self.two_targets & self.holding_first, second, first)
        known = target >= 0
        row, col = np.divmod(observations, self.size)
        target_row, target_col = np.divmod(np.maximum(target, 0), self.size)
        return np.where(known, shortest_path_action(row, col, target_row, target_col), actions)

    def observe(self, actions, rewards, done, next_observations):
        rewarded = rewards > 0
        new_first = rewarded & (self.found[:, 0] < 0)
        self.found[new_first, 0] = next_observations[new_first]
        at_first = rewarded & (next_observations == self.found[:, 0])
        self.holding_first |= at_first
        new_second = rewarded & ~at_first & (self.found[:, 1] < 0)
        self.found[new_second, 1] = next_observations[new_second]
        self.holding_first &= ~done


class RandomAgent:
    """Uniformly random actions (the exploration yardstick)."""

    def __init__(self, env, seed: int = 0):
        self.env, self.rng = env, np.random.default_rng(seed)

    def act(self, observations):
        return self.rng.integers(self.env.num_actions, size=self.env.num_envs)

    def observe(self, actions, rewards, done, next_observations):
        pass


def play(env, agent, episodes: int, seed: int = 0, metadata: dict | None = None):
    """Run `agent` on every task of the batched `env` for `episodes` episodes, resetting each task as its
    episode ends. Returns (frame with columns task, episode, return; Histories of what it did, with
    `metadata`)."""
    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} is not allowed: it must be an integer >= 1")
    n = env.num_envs
    obs = env.reset_rows(seed=seed)
    completed, running_return = np.zeros(n, dtype=np.int64), np.zeros(n)
    rows, steps = [], []
    while completed.min() < episodes:
        actions = agent.act(obs)
        next_obs, rewards, terminated, truncated = env.step_arrays(actions)
        done = terminated | truncated
        agent.observe(actions, rewards, done, next_obs)
        steps.append((obs, actions, rewards, done))
        running_return += rewards
        for task in np.flatnonzero(done & (completed < episodes)):
            rows.append((task, completed[task], running_return[task]))
        completed += done
        running_return[done] = 0.0
        obs = env.reset_rows(done) if done.any() else next_obs
    frame = pd.DataFrame(rows, columns=["task", "episode", "return"])
    observations, actions, rewards, dones = (np.stack(a, axis=1) for a in zip(*steps))
    played = Histories(observations, actions, rewards.astype(np.float32), dones, env.tasks,
                       metadata=metadata or {})
    return frame, played


def in_context_rollout(model, family: str, tasks, episodes: int, env_kwargs: dict | None = None,
                       mode: str = "greedy", temperature: float = 1.0, seed: int = 0):
    """Run `model` in context on every task for `episodes` episodes; mode is a decoding (`choose_actions`).

    Returns (frame, histories): frame has columns task, episode, return; histories holds what the
    model did, step by step, as a Histories dataset (for plots, the rollout viewer, probing).
    """
    env = make_batched(family, np.asarray(tasks), **(env_kwargs or {}))
    agent = ModelAgent(model, env.num_envs, mode, temperature, seed)
    return play(env, agent, episodes, seed, metadata={"env_family": family, "env_kwargs": env_kwargs or {},
                                                      "source": {"name": "model", "mode": mode, "temperature": temperature}})


def in_context_figures(model, family: str, tasks, episodes: int, mode: str = "greedy", rollouts: int = 1,
                       seed: int = 0, last: int = 10, env_kwargs: dict | None = None) -> dict:
    """A quick in-context score, without controls or intervals (validation during training): the mean
    return of the first episode and of the last `last`, and the median episode of the first reward
    (`episodes` where a rollout is never rewarded), over the rollouts of `rollout_table`."""
    frame, played = in_context_rollout(model, family, np.repeat(np.asarray(tasks), rollouts, axis=0), episodes,
                                       env_kwargs, mode=mode, seed=seed)
    table = rollout_table(frame, played, rollouts, last)
    return {"first": float(table["first"].mean()), f"last{last}": float(table[f"last{last}"].mean()),
            "first_reward_episode": float(table["first_reward_episode"].median())}


# --- statistics ---------------------------------------------------------------------------------------

def bootstrap_ci(values, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-task (or per-unit) values and its percentile bootstrap interval;
    NaNs are left out, and no values at all give NaNs."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"bootstrap_ci needs a 1-d array of per-task values, got shape {values.shape}")
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    means = values[np.random.default_rng(seed).integers(len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(values.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def interquartile_mean(values) -> float:
    """The mean of the middle 50% of values (robust to a few outlying tasks)."""
    values = np.sort(np.asarray(values, dtype=float))
    quarter = len(values) // 4
    return float(values[quarter:len(values) - quarter].mean())


def compare(a, b, resamples: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of two agents' per-task values on the same tasks: the mean difference a - b,
    its 95% bootstrap interval, and whether that interval excludes 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"compare needs values of the same tasks: shapes {a.shape} and {b.shape} differ")
    mean, low, high = bootstrap_ci(a - b, resamples, seed)
    return {"difference": mean, "ci": [low, high], "differs": bool(low > 0 or high < 0)}


def with_ci(values, seed: int = 0) -> dict:
    mean, low, high = bootstrap_ci(values, seed=seed)
    return {"mean": mean, "ci": [low, high], "iqm": interquartile_mean(values)}


# --- per-rollout figures --------------------------------------------------------------------------------

def rollout_table(frame: pd.DataFrame, played: Histories, rollouts_per_task: int, last: int = 10) -> pd.DataFrame:
    """One row per rollout: task, rollout, first-episode and last-`last` returns, the episode of its first
    reward and the distinct cells it visited before it (all its cells if never rewarded; the episode is
    then the number played, a censored value)."""
    returns = frame.pivot(index="task", columns="episode", values="return").sort_index()
    episodes = returns.shape[1]
    rewarded = played.rewards > 0
    first_step = np.where(rewarded.any(axis=1), rewarded.argmax(axis=1), played.num_steps)
    episode_of = episode_of_step(played.dones)
    first_episode = np.array([episode_of[row, step] if step < played.num_steps else episodes
                              for row, step in enumerate(first_step)])
    cells_before = np.array([len(np.unique(played.observations[row, :step + 1])) for row, step in enumerate(first_step)])
    rows = np.arange(played.num_histories)
    return pd.DataFrame({"task": rows // rollouts_per_task, "rollout": rows % rollouts_per_task,
                         "first": returns[0].to_numpy(), f"last{last}": returns.iloc[:, -last:].mean(axis=1).to_numpy(),
                         "first_reward_episode": first_episode, "cells_before_first_reward": cells_before})


def per_task(table: pd.DataFrame) -> pd.DataFrame:
    """Rollouts (and training seeds) averaged within each task: the unit the bootstrap resamples."""
    return table.drop(columns=[c for c in ("rollout", "seed") if c in table]).groupby("task").mean()


# --- protocols ------------------------------------------------------------------------------------------

# Episodes each paper evaluates in context (AD^eps: Dark Room config 100, Key-to-Door 1000).
PAPER_EPISODES = {"DarkRoom": 100, "DarkKeyToDoor": 1000}


@dataclass(frozen=True)
class Protocol:
    """How a paper evaluates in context. episodes None: the paper's number for the family."""

    name: str
    decoding: str
    temperature: float = 1.0
    episodes: int | None = None
    rollouts_per_task: int = 4
    last: int = 10
    num_tasks: int = 200           # bandits: tasks drawn for the test split
    description: str = ""

    def __post_init__(self):
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding={self.decoding!r} is not one of {DECODINGS}")
        for name in ("rollouts_per_task", "last", "num_tasks"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: it must be an integer >= 1")
        if self.episodes is not None and (not isinstance(self.episodes, int) or self.episodes < 1):
            raise ValueError(f"episodes={self.episodes!r} is not allowed: it must be an integer >= 1 (or None)")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} is not allowed: it must be > 0")

    def episodes_for(self, family: str) -> int:
        return self.episodes or PAPER_EPISODES.get(family, 1)


PROTOCOLS = {
    "adeps": Protocol("adeps", "greedy", description=(
        "AD^eps (Zisman et al., 2024): greedy actions (the official code's dist.mode), the context carried "
        "across the paper's number of episodes on the held-out tasks; headline: mean return of the last 10")),
    "dpt": Protocol("dpt", "sample", episodes=1, rollouts_per_task=1, description=(
        "DPT (Lee et al., 2023): online, actions sampled from the softmax at temperature 1; headline: "
        "cumulative regret at the horizon against Thompson sampling and UCB1")),
}


def get_protocol(name: str, **overrides) -> Protocol:
    """A named protocol; overrides (decoding, temperature, episodes, ...) make it an ablation."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol={name!r} is not one of {sorted(PROTOCOLS)}")
    return replace(PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})


def best_in_data_return(data_metadata: dict, family: str, tasks, env_kwargs: dict | None = None,
                        training_returns: np.ndarray | None = None) -> float:
    """The return of the best policy in the training data, on these tasks.

    For AD^eps data: the demonstrator at its floor (expected return, by simulation). For an RL
    algorithm's histories: the mean return of their last episodes (`training_returns`).
    """
    source = data_metadata.get("source", {})
    if source.get("name") == "noise_distillation":
        return demonstrator_return(family, tasks, source["floor"], episodes_per_task=256, seed=1, **(env_kwargs or {}))
    if training_returns is None:
        raise ValueError("best_in_data_return needs training_returns for data not made by a noise curriculum")
    return float(np.nanmean(training_returns))


def summarize(frame: pd.DataFrame, optimal_return: float, best_in_data: float, last: int = 10) -> dict:
    """The mean in-context curve's headline figures (no intervals: see `evaluate_protocol`)."""
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
    return make_batched("BernoulliBandit", means).regret(actions)


def baseline_regret(algorithm: str, means: np.ndarray, horizon: int, seed: int = 0) -> np.ndarray:
    """Cumulative regret of UCB1, Thompson sampling or a uniformly random policy on the same bandit tasks."""
    data = collect_rl_histories("BernoulliBandit", means, algorithm, horizon, seed=seed, env_kwargs={"horizon": horizon})
    return bandit_regret(data.actions.astype(np.int64), means)


def random_weights_like(model, seed: int = 0):
    """The same architecture, untrained: the control that shows what training added."""
    torch.manual_seed(seed)
    return model.config.build().to(next(model.parameters()).device).eval()


def _grid_tables(models: list, source: Provenance, tasks, protocol: Protocol, seed: int) -> dict:
    """Per-rollout tables of every trained model (one per training seed), the random-weights model and
    the no-model control, all on the same tasks and environment seeds."""
    family, env_kwargs = source.env_family, source.env_kwargs
    episodes, rollouts = protocol.episodes_for(family), protocol.rollouts_per_task
    repeated = np.repeat(np.asarray(tasks), rollouts, axis=0)

    def run(agent_for):
        env = make_batched(family, repeated, **env_kwargs)
        frame, played = play(env, agent_for(env), episodes, seed)
        table = rollout_table(frame, played, rollouts, protocol.last)
        return table, frame.assign(task=frame["task"] // rollouts)

    tables, frames = {}, {}
    trained = []
    for index, model in enumerate(models):
        table, frame = run(lambda env: ModelAgent(model, env.num_envs, protocol.decoding, protocol.temperature, seed))
        trained.append(table.assign(seed=index))
        frames.setdefault("model", []).append(frame.assign(seed=index))
    tables["model"] = pd.concat(trained, ignore_index=True)
    tables["random_weights"], frames["random_weights"] = run(
        lambda env: ModelAgent(random_weights_like(models[0], seed), env.num_envs, protocol.decoding, protocol.temperature, seed))
    tables["memory_baseline"], frames["memory_baseline"] = run(lambda env: MemoryAgent(env, seed))
    frames["model"] = pd.concat(frames["model"], ignore_index=True)
    return tables, frames


def task_digest(family: str, env_kwargs: dict | None, tasks) -> str:
    """A short name of the exact tasks an evaluation played (family, environment settings and task array),
    so that two saved evaluations pair up only where they played the same tasks."""
    text = f"{family}{json.dumps(env_kwargs or {}, sort_keys=True)}{array_sha256(np.asarray(tasks))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluate_protocol(models, record: dict, tasks, protocol: Protocol | str = "adeps", seed: int = 0) -> tuple[dict, dict]:
    """A protocol's figures for one or more trained models (training seeds) of the same recipe, beside
    the controls on the same tasks and seeds, with 95% bootstrap intervals over tasks.

    Returns (figures, result). Grid worlds: figures hold, per agent, the first and last-10 returns, the
    ratio to the best policy in the data and the exploration diagnostics, plus paired comparisons of the
    model with each control; result holds the per-rollout tables and the return frames (for figures).
    Bandits: regret at the horizon of the model, Thompson sampling, UCB1, uniformly random arms and the
    random-weights model; result holds the regret curves. Both: result["per_task"] holds, per agent, the
    per-task values the intervals resample (see `task_values`).
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    models = models if isinstance(models, (list, tuple)) else [models]
    source = Provenance.of(record)
    family, env_kwargs = source.env_family, source.env_kwargs
    tasks = np.asarray(tasks)
    header = {"protocol": protocol.name, "decoding": protocol.decoding, "temperature": protocol.temperature,
              "training_seeds": len(models), "tasks": len(tasks), "task_digest": task_digest(family, env_kwargs, tasks),
              "evaluation_seed": seed}
    if FAMILIES[family][1].metric == "regret":
        curves = {}
        for index, model in enumerate(models):
            _, played = in_context_rollout(model, family, tasks, 1, env_kwargs, protocol.decoding, protocol.temperature, seed)
            curves.setdefault("model", []).append(bandit_regret(played.actions.astype(np.int64), tasks))
        curves["model"] = np.mean(curves["model"], axis=0)  # per task, averaged over training seeds
        horizon = curves["model"].shape[1]
        _, played = in_context_rollout(random_weights_like(models[0], seed), family, tasks, 1, env_kwargs,
                                       protocol.decoding, protocol.temperature, seed)
        curves["random weights"] = bandit_regret(played.actions.astype(np.int64), tasks)
        for name, algorithm in (("Thompson sampling", "thompson"), ("UCB1", "ucb1"), ("uniformly random", "random")):
            curves[name] = baseline_regret(algorithm, tasks, horizon, seed)
        final = {name: curve[:, -1] for name, curve in curves.items()}
        figures = {**header, "horizon": horizon,
                   "regret": {name: with_ci(values, seed) for name, values in final.items()},
                   "model_minus_thompson": compare(final["model"], final["Thompson sampling"], seed=seed),
                   "regret_to_thompson": float(final["model"].mean() / final["Thompson sampling"].mean())}
        return figures, {"curves": curves, "per_task": {name: pd.DataFrame({"regret": values}).rename_axis("task")
                                                         for name, values in final.items()}}
    tables, frames = _grid_tables(models, source, tasks, protocol, seed)
    best = best_in_data_return(source.data, family, tasks, env_kwargs, training_returns=source.data_last_episode_return)
    optimal = float(optimal_returns(family, tasks, **env_kwargs).mean())
    last = f"last{protocol.last}"
    by_task = {name: per_task(table) for name, table in tables.items()}
    agents = {}
    for name, values in by_task.items():
        agents[name] = {"first": with_ci(values["first"], seed), last: with_ci(values[last], seed),
                        "ratio_to_best_in_data": float(values[last].mean() / best) if best > 0 else float("nan"),
                        "median_first_reward_episode": float(tables[name]["first_reward_episode"].median()),
                        "median_cells_before_first_reward": float(tables[name]["cells_before_first_reward"].median())}
    figures = {**header, "episodes": protocol.episodes_for(family), "rollouts_per_task": protocol.rollouts_per_task,
               "agents": agents, "best_in_data_return": float(best), "optimal_return": optimal,
               "model_minus": {name: compare(by_task["model"][last], by_task[name][last], seed=seed)
                               for name in ("memory_baseline", "random_weights")},
               "first_reward_episode_model_minus_memory_baseline": compare(
                   by_task["model"]["first_reward_episode"], by_task["memory_baseline"]["first_reward_episode"],
                   seed=seed)}
    return figures, {"tables": tables, "frames": frames, "per_task": by_task}


def task_values(result: dict) -> pd.DataFrame:
    """The per-task values behind an evaluation's intervals, one row per agent and task (rollouts and
    training seeds averaged): grid worlds their returns and exploration figures, bandits the regret at
    the horizon, as `evaluate_protocol` computed them. `recipes.compare_evaluations` pairs two saved
    tables task by task."""
    return pd.concat(result["per_task"], names=["agent"]).reset_index()


def headline(figures: dict) -> dict:
    """The few numbers a table row needs, from `evaluate_protocol`'s figures."""
    if "regret" in figures:
        model = figures["regret"]["model"]
        return {"regret": model["mean"], "regret_ci": model["ci"],
                "thompson_regret": figures["regret"]["Thompson sampling"]["mean"],
                "ucb_regret": figures["regret"]["UCB1"]["mean"], "regret_to_thompson": figures["regret_to_thompson"]}
    model, baseline = figures["agents"]["model"], figures["agents"]["memory_baseline"]
    last = next(key for key in model if key.startswith("last"))
    return {"first": model["first"]["mean"], last: model[last]["mean"], f"{last}_ci": model[last]["ci"],
            "ratio_to_best_in_data": model["ratio_to_best_in_data"],
            "memory_baseline": baseline[last]["mean"], "random_weights": figures["agents"]["random_weights"][last]["mean"],
            "best_in_data": figures["best_in_data_return"], "optimal": figures["optimal_return"]}


def decoding_ablation(model, record: dict, tasks, settings=(("sample", 1.0), ("greedy_when_rewarded", 1.5)),
                      protocol: Protocol | str = "adeps", seed: int = 0, **overrides) -> pd.DataFrame:
    """The same evaluation under other decodings: a labelled ablation table beside a protocol's headline.
    overrides: other protocol settings for every row (e.g. fewer episodes)."""
    protocol = get_protocol(protocol, **overrides) if isinstance(protocol, str) else replace(protocol, **overrides)
    rows = []
    for decoding, temperature in ((protocol.decoding, protocol.temperature), *settings):
        figures, _ = evaluate_protocol(model, record, tasks, replace(protocol, decoding=decoding, temperature=temperature), seed)
        rows.append({"decoding": decoding, "temperature": temperature, **headline(figures),
                     "protocol headline": (decoding, temperature) == (protocol.decoding, protocol.temperature)})
    return pd.DataFrame(rows)

