"""Beyond AD: experiments with Headless-AD (variable action spaces) and other sequence learners.

The evaluation side of `icrl_lab.headless` and `icrl_lab.sequence_models`: data with a varying number
of arms, regret with bootstrap confidence intervals against UCB1 and Thompson sampling, Dark Room with
actions permuted per task, and the per-step cost of acting as the context grows.
"""
from __future__ import annotations

import json
import time
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .envs import bandit_tasks
from .evaluate import bandit_regret, baseline_regret, bootstrap_ci, in_context_rollout
from .headless import ActionRelabelled, HeadlessAD, action_permutations, stack_bandit_histories
from .models import load_model
from .sources import collect_rl_histories

SHIPPED = files("icrl_lab") / "checkpoints"
CHECKPOINTS = ("bandit_headless_ad", "dark_room_headless_ad", "dark_room_gru", "dark_room_ssm",
               "bandit_thompson_ad", "bandit_thompson_gru", "bandit_thompson_ssm")


def load_checkpoint(name: str, directory=None, device=None):
    """A model of the Beyond-AD studies and its record, with the study's measured figures (results.json,
    holding the command and seed that made it) under "results"; by default the one shipped in the package."""
    path = (SHIPPED if directory is None else Path(directory)) / name
    with as_file(path) as folder:
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"no checkpoint {name!r} at {folder}: make it with the command in the module "
                                    f"docstring of benchmarks/sequence_learners.py or benchmarks/studies/headless_*.py")
        model, record = load_model(folder, device=device)
        record["results"] = json.loads((folder / "results.json").read_text())
    return model, record


def collect_variable_arm_bandits(arms, tasks_per_arm: int, horizon: int, algorithm: str = "thompson", seed: int = 0):
    """Learning histories of `algorithm` on Bernoulli bandits with each number of arms in `arms`
    (`tasks_per_arm` tasks each, uniform arm means), stacked for Headless-AD (see stack_bandit_histories)."""
    datasets = [collect_rl_histories("BernoulliBandit", bandit_tasks(tasks_per_arm, int(k), seed=seed * 1000 + int(k)),
                                     algorithm, horizon, seed=seed * 1000 + int(k), env_kwargs={"horizon": horizon})
                for k in arms]
    return stack_bandit_histories(datasets)


def model_regret(model, means: np.ndarray, horizon: int, mode: str = "sample", temperature: float = 1.0,
                 seed: int = 0) -> np.ndarray:
    """Cumulative regret curves (tasks, steps) of a model playing each bandit once; a Headless-AD model is
    bound to the bandits' number of arms first."""
    if isinstance(model, HeadlessAD):
        model = model.bind(means.shape[1], len(means), seed=seed)
    _, played = in_context_rollout(model, "BernoulliBandit", means, 1, {"horizon": horizon}, mode=mode,
                                   temperature=temperature, seed=seed)
    return bandit_regret(played.actions.astype(np.int64), means)


def regret_table(models: dict, arms, num_tasks: int = 200, horizon: int = 100, seed: int = 0, task_seed: int = 777,
                 mode: str = "sample", temperature: float = 1.0) -> tuple[pd.DataFrame, dict]:
    """Final cumulative regret of each model and of UCB1 and Thompson sampling on `num_tasks` fresh bandits
    for each number of arms: a frame with mean and 95% bootstrap interval over tasks, and the curves
    {arms: {learner: (tasks, steps) array}}."""
    rows, curves = [], {}
    for k in arms:
        means = bandit_tasks(num_tasks, int(k), seed=task_seed + int(k))
        curves[k] = {name: model_regret(model, means, horizon, mode, temperature, seed) for name, model in models.items()}
        curves[k]["Thompson sampling"] = baseline_regret("thompson", means, horizon, seed)
        curves[k]["UCB1"] = baseline_regret("ucb1", means, horizon, seed)
        for name, curve in curves[k].items():
            mean, low, high = bootstrap_ci(curve[:, -1], resamples=10_000, seed=seed)
            rows.append({"arms": int(k), "learner": name, "regret": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows), curves


def permuted_dark_room(models: dict, tasks, episodes: int = 20, seed: int = 0, mode: str = "greedy_when_rewarded",
                       temperature: float = 1.0, rollouts_per_task: int = 4) -> pd.DataFrame:
    """Each model on Dark Room as it is and with its five actions permuted per task (and rollout): a frame
    with columns model, actions ("as trained" / "permuted"), task, episode, return."""
    tasks = np.repeat(np.asarray(tasks), rollouts_per_task, axis=0)
    permutations = action_permutations(len(tasks), 5, seed=seed + 1)
    frames = []
    for name, model in models.items():
        for actions in ("as trained", "permuted"):
            acting = model.bind(5, len(tasks), seed=seed) if isinstance(model, HeadlessAD) else model
            if actions == "permuted":
                acting = ActionRelabelled(acting, permutations)
            frame, _ = in_context_rollout(acting, "DarkRoom", tasks, episodes, mode=mode, temperature=temperature, seed=seed)
            frames.append(frame.assign(model=name, actions=actions))
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def step_cost(model, context_lengths, batch_size: int = 16, repeats: int = 50) -> pd.DataFrame:
    """Seconds per decoding step (one token for `batch_size` streams) after `context_lengths` steps have
    been fed: a transformer's cache grows up to its window, a recurrent state does not."""
    config = model.config
    rows = []
    for length in context_lengths:
        # Fed in chunks of up to 50 steps: a transformer's cache holds its window plus one chunk.
        cache = model.new_cache(batch_size, chunk_steps=50)
        for start in range(0, int(length), 50):
            zeros = torch.zeros(batch_size, min(50, int(length) - start), dtype=torch.long)
            model(zeros, zeros + config.num_actions, zeros.float(), cache=cache)
        one = torch.zeros(batch_size, 1, dtype=torch.long)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model(one, one + config.num_actions, one.float(), cache=cache)
            times.append(time.perf_counter() - started)
        # The median: robust to the pauses of a machine shared with other work.
        rows.append({"context_steps": int(length), "seconds_per_step": float(np.median(times))})
    return pd.DataFrame(rows)


# Figures of the studies (matplotlib only; the notebook and the benchmark scripts share them).

def plot_regret_by_arms(curves: dict, train_arms: int | None = None):
    """One panel of cumulative-regret curves per number of arms (curves as from regret_table)."""
    import matplotlib.pyplot as plt

    from . import plots

    fig, axes = plt.subplots(1, len(curves), figsize=(3.3 * len(curves), 3.0), squeeze=False)
    for ax, (arms, named) in zip(axes[0], curves.items()):
        plots.regret_curves(named, ax=ax)
        unseen = train_arms is not None and arms > train_arms
        ax.set_title(f"{arms} arms" + (" (more than in training)" if unseen else ""), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_permuted(frame: pd.DataFrame, ax=None):
    """Mean return per in-context episode of each model, actions as trained (solid) and permuted (dashed)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5.5, 3.2))[1]
    curves = frame.groupby(["model", "actions", "episode"])["return"].mean()
    for (name, actions), curve in curves.groupby(level=[0, 1]):
        ax.plot(curve.index.get_level_values(2), curve.values, label=f"{name}, actions {actions}",
                linestyle="-" if actions == "as trained" else "--")
    ax.set_xlabel("episode in context")
    ax.set_ylabel("mean return")
    ax.legend(fontsize=7)
    return ax


def plot_step_cost(costs: dict, ax=None):
    """Milliseconds per decoding step against the number of steps already in context, per model."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5.5, 3.2))[1]
    for name, frame in costs.items():
        ax.plot(frame["context_steps"], 1000 * frame["seconds_per_step"], marker="o", label=name)
    ax.set_xlabel("steps already in context")
    ax.set_ylabel("ms per decoding step")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    return ax


def update_cost(config, batch_size: int = 64, context_steps: int = 80, repeats: int = 10, seed: int = 0) -> float:
    """Median seconds of one training update (forward, backward, AdamW step) of a fresh model built from
    `config`, on a random batch of `batch_size` windows of `context_steps` steps."""
    torch.manual_seed(seed)
    model = config.build().train()
    shape = (batch_size, context_steps)
    batch = {"observations": torch.randint(config.num_obs, shape), "prev_actions": torch.randint(config.num_actions + 1, shape),
             "prev_rewards": torch.randint(2, shape).float(), "actions": torch.randint(config.num_actions, shape)}
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.median(times[2:]))  # the first two warm up
