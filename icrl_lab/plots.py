"""Figures (and a small table helper) for the notebooks: grid worlds with an agent's path, learning curves of histories, attention,
and the whole figures the widgets redraw (`*_figure`: each returns a new matplotlib figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .curricula import demonstrator_return
from .envs.grid import COLOURS
from .play import episode_cells, grid_size, task_marks
from .sources import optimal_returns


def draw_grid_path(size: int, path, goal=None, key=None, door=None, ax=None, title: str | None = None,
                   rewarded=None, legend: bool = True):
    """Draw a size x size grid, the marked cells, and a path of cell ids (or (row, col) pairs) as arrows.

    rewarded: cells (ids or (row, col)) where a reward was earned, starred. legend: name what each mark
    is (goal, key, door, start, end, rewarded) below the grid."""
    ax = ax or plt.subplots(figsize=(3.2, 3.2))[1]
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_xticks(np.arange(-0.5, size, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, size, 1), minor=True)
    ax.grid(which="minor", color="0.75", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_aspect("equal")
    for name, cell in (("goal", goal), ("key", key), ("door", door)):
        if cell is not None:
            ax.add_patch(plt.Rectangle((cell[1] - 0.45, cell[0] - 0.45), 0.9, 0.9,
                                       color=np.array(COLOURS[name]) / 255, label=name))
    path = np.asarray(path)
    cells = np.stack(np.divmod(path, size), axis=1) if path.ndim == 1 else path
    if len(cells):
        # Small jitter so that a path going back and forth stays readable.
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=cells.shape)
        xy = cells[:, ::-1] + jitter
        ax.plot(xy[:, 0], xy[:, 1], color=np.array(COLOURS["agent"]) / 255, linewidth=1.2, alpha=0.8)
        ax.scatter(*xy[0], color="black", s=30, zorder=3, label="start")
        ax.scatter(*xy[-1], color=np.array(COLOURS["agent"]) / 255, s=30, zorder=3, marker="s", label="end")
    if rewarded is not None and len(rewarded):
        marks = np.asarray(rewarded)
        marks = np.stack(np.divmod(marks, size), axis=1) if marks.ndim == 1 else marks
        ax.scatter(marks[:, 1], marks[:, 0], marker="*", s=140, color="gold", edgecolor="black", linewidth=0.6,
                   zorder=4, label="rewarded")
    if legend and ax.get_legend_handles_labels()[0]:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncols=min(len(labels), 3),
                  fontsize=7, frameon=False, handlelength=1.2, columnspacing=0.8)
    if title:
        ax.set_title(title)
    return ax


def reference_lines(ax, reference: dict):
    """Horizontal reference lines (name -> value), each in its own style and named in the legend, with the
    y axis stretched so that none sits on the frame."""
    styles = iter([("--", "0.3"), (":", "tab:red"), ("-.", "tab:green"), ("--", "tab:purple")])
    for name, value in reference.items():
        style, colour = next(styles)
        ax.axhline(value, linestyle=style, color=colour, linewidth=1.2, label=name)
    if reference:
        low, high = ax.get_ylim()
        top = max(reference.values())
        ax.set_ylim(low, max(high, top + 0.08 * (top - low)))


def outside_legend(ax, **kwargs):
    """The legend to the right of the axes, where it hides no curve and no reference line."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)


def table(summary: dict, digits: int = 3) -> pd.Series:
    """A summary (name -> number) as a column: whole numbers printed as integers (a count stored as a
    float too), other floats rounded to `digits`."""
    def shown(value):
        if isinstance(value, (float, np.floating)):
            return int(value) if float(value).is_integer() else round(float(value), digits)
        return int(value) if isinstance(value, (int, np.integer)) else value
    return pd.Series({name: shown(value) for name, value in summary.items()}, dtype=object)


# Readable names of the recipes (icrl_lab.recipes) for figures and tables.
RECIPE_LABELS = {"dark_room_adeps_whole_history": "AD on AD^eps data, whole history in context",
                 "dark_room_adeps": "AD on AD^eps data", "dark_room_q_learning": "AD on Q-learning histories",
                 "bandit_dpt": "DPT on bandits", "key_to_door_adeps": "AD on AD^eps data (Key-to-Door)"}


def learning_curves(histories, ax=None, label: str | None = None, reference: dict | None = None):
    """Mean episode return (band: 1.96 standard errors over histories) against episode number.

    reference: horizontal lines to draw, e.g. {"optimal": 16.5}.
    """
    returns = histories.episode_returns()
    frame = pd.DataFrame(returns).melt(var_name="episode", value_name="return").dropna()
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    sns.lineplot(frame, x="episode", y="return", errorbar=("se", 1.96), ax=ax, label=label)
    reference_lines(ax, reference or {})
    ax.set_xlabel("episode in the history")
    ax.set_ylabel("return")
    if ax.get_legend_handles_labels()[0]:
        outside_legend(ax)
    return ax


AGENT_LABELS = {"model": "the model (trained)", "memory_baseline": "no model: random until rewarded, then return",
                "random_weights": "the model with random weights"}


def protocol_curves(frames: dict, best_in_data: float, optimal: float, ax=None):
    """In-context return per episode of each agent of a protocol evaluation (`evaluate.evaluate_protocol`'s
    result["frames"]: agent -> frame of task, episode, return), averaged within tasks first; bands: 95%
    bootstrap intervals over tasks. The best policy in the data and the optimum as reference lines."""
    ax = ax or plt.subplots(figsize=(7.5, 3.4))[1]
    for (name, frame), colour in zip(frames.items(), sns.color_palette()):
        per_task = frame.groupby(["task", "episode"], as_index=False)["return"].mean()
        sns.lineplot(per_task, x="episode", y="return", errorbar=("ci", 95), ax=ax, color=colour,
                     label=AGENT_LABELS.get(name, name), linestyle="-" if name == "model" else "--")
    reference_lines(ax, {"optimal": optimal, "best policy in the data": best_in_data})
    ax.set_xlabel("in-context episode")
    ax.set_ylabel("return")
    outside_legend(ax)
    ax.figure.tight_layout()
    return ax


def first_reward_episodes(table: pd.DataFrame, episodes: int, ax=None):
    """How soon each agent first finds the goal: one dot per rollout (table: columns agent and
    first_reward_episode, as `evaluate.rollout_table` gives per agent). Rollouts never rewarded sit on
    the dashed line at the number of episodes played."""
    ax = ax or plt.subplots(figsize=(6.5, 2.8))[1]
    order = [name for name in AGENT_LABELS if name in set(table["agent"])]
    shown = table.assign(agent=table["agent"].map(lambda name: AGENT_LABELS.get(name, name)))
    sns.stripplot(shown, x="first_reward_episode", y="agent", order=[AGENT_LABELS[name] for name in order],
                  alpha=0.5, jitter=0.25, ax=ax)
    ax.axvline(episodes, linestyle="--", color="0.4", linewidth=1, label="never rewarded")
    ax.set_xlabel("episode of the first reward (per rollout)")
    ax.set_ylabel("")
    ax.legend(fontsize=8, loc="lower right")
    ax.figure.tight_layout()
    return ax


def regret_curves(curves: dict, ax=None):
    """Mean cumulative regret against step for each named (tasks x steps) array, with 1.96 SE bands."""
    ax = ax or plt.subplots(figsize=(5.5, 3.2))[1]
    for name, regret in curves.items():
        regret = np.asarray(regret, dtype=float)
        mean = regret.mean(axis=0)
        band = 1.96 * regret.std(axis=0) / np.sqrt(len(regret))
        steps = np.arange(1, regret.shape[1] + 1)
        ax.plot(steps, mean, label=name)
        ax.fill_between(steps, mean - band, mean + band, alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel("cumulative regret")
    ax.legend(fontsize=8)
    return ax


def attention_map(weights, ax=None, title: str | None = None, episode_length: int | None = None):
    """One head's step-to-step attention (queries x keys), with episode boundaries marked."""
    weights = np.asarray(weights)
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    ax.imshow(weights, cmap="magma", aspect="auto", interpolation="nearest")
    if episode_length:
        for boundary in range(episode_length, weights.shape[0], episode_length):
            ax.axhline(boundary - 0.5, color="white", linewidth=0.5, alpha=0.6)
            ax.axvline(boundary - 0.5, color="white", linewidth=0.5, alpha=0.6)
    ax.set_xlabel("attended step (key)")
    ax.set_ylabel("step (query)")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def loss_curve(log, ax=None, label: str | None = None):
    """Training loss against update, from the log that `train.train` returns (or a checkpoint's record)."""
    frame = pd.DataFrame(log)
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    ax.plot(frame["update"], frame["loss"], label=label)
    ax.set_xlabel("update")
    ax.set_ylabel("cross-entropy loss")
    if label:
        ax.legend(fontsize=8)
    return ax


def schedule_curves(schedules: dict, num_steps: int, ax=None):
    """Epsilon against step of the history for each named schedule (icrl_lab.schedules objects)."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    for name, schedule in schedules.items():
        ax.plot(schedule.values(num_steps), label=name)
    ax.set_xlabel("step of the history")
    ax.set_ylabel("epsilon (demonstrator's noise)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    return ax


def window_noise(schedule, history_steps: dict, window_steps: int = 80, at: float = 0.3, ax=None):
    """The demonstrator's epsilon inside one training window, for histories of different lengths under one
    schedule: each named history length is read over `window_steps` steps starting `at` (a fraction) of the
    way through the history. A long history's noise is flat within a window; a short one's visibly falls."""
    if not 0.0 <= at < 1.0:
        raise ValueError(f"at={at!r} is not allowed: it is a fraction of the history in [0, 1)")
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    for name, num_steps in history_steps.items():
        if num_steps < window_steps:
            raise ValueError(f"history_steps[{name!r}]={num_steps} is shorter than window_steps={window_steps}")
        start = min(int(at * num_steps), num_steps - window_steps)
        ax.plot(np.arange(window_steps), schedule.values(num_steps)[start:start + window_steps], label=name)
    ax.set_title(f"epsilon inside one {window_steps}-step window, {at:.0%} into the history", fontsize=9)
    ax.set_xlabel("step in the window")
    ax.set_ylabel("epsilon (demonstrator's noise)")
    ax.set_ylim(-0.02, 1.02)
    outside_legend(ax)
    return ax


def return_against_epsilon(epsilons, returns, floor: float | None = None, target: float | None = None, ax=None):
    """The epsilon-greedy demonstrator's mean return against its epsilon, with the calibrated floor and
    the return it was calibrated to (max_perf x optimal) marked."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    ax.plot(epsilons, returns, marker="o", markersize=3)
    if target is not None:
        ax.axhline(target, linestyle="--", color="0.4", linewidth=1, label="max_perf x optimal return")
    if floor is not None:
        ax.axvline(floor, linestyle=":", color="tab:red", linewidth=1.2, label=f"calibrated floor {floor:.3f}")
    ax.set_xlabel("epsilon")
    ax.set_ylabel("mean return")
    ax.legend(fontsize=8)
    return ax


def history_image(histories, index: int = 0, ax=None, title: str | None = None):
    """One learning history as a picture: a row per episode, a column per step, lit where a reward came."""
    ends = np.flatnonzero(histories.dones[index]) + 1
    episodes = np.split(histories.rewards[index], ends[:-1] if len(ends) else [])
    image = np.full((len(episodes), max(len(e) for e in episodes)), np.nan)
    for row, rewards in enumerate(episodes):
        image[row, :len(rewards)] = rewards
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    ax.imshow(image, cmap="viridis", aspect="auto", interpolation="nearest", vmin=0, vmax=max(1.0, np.nanmax(image)))
    ax.set_xlabel("step in the episode")
    ax.set_ylabel("episode")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def attention_row(weights, rewarded=None, ax=None, step: int | None = None):
    """One query step's attention over the steps before it, bars of rewarded steps highlighted."""
    weights = np.asarray(weights)
    ax = ax or plt.subplots(figsize=(5, 2.5))[1]
    colours = np.where(np.asarray(rewarded, dtype=bool)[:len(weights)], "tab:orange", "tab:blue") \
        if rewarded is not None else "tab:blue"
    ax.bar(np.arange(len(weights)), weights, width=1.0, color=colours)
    ax.set_xlabel("attended step (orange: its token carries a reward)" if rewarded is not None else "attended step")
    ax.set_ylabel("attention")
    if step is not None:
        ax.set_title(f"what step {step} looks at", fontsize=9)
    return ax


def cell_values(values, ax=None, title: str | None = None, fmt: str = ".0f"):
    """A value per grid cell (size x size array, e.g. the return of each goal cell), written in the cells."""
    values = np.asarray(values, dtype=float)
    ax = ax or plt.subplots(figsize=(3.6, 3.2))[1]
    sns.heatmap(values, annot=True, fmt=fmt, annot_kws={"fontsize": 7}, cmap="viridis", cbar=False, square=True,
                xticklabels=False, yticklabels=False, ax=ax)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def clip_attention(weights, quantile: float = 0.99):
    """Attention weights clipped at their `quantile` (of the non-zero ones), for display: the first steps,
    which can only attend to a few keys, would otherwise wash out the colours of the rest."""
    weights = np.asarray(weights)
    return np.minimum(weights, np.quantile(weights[weights > 0], quantile))


def attention_grid(maps, episode_length: int | None = None):
    """Every layer's and head's attention map of one history, maps shaped (layers, heads, steps, steps)."""
    maps = np.asarray(maps)
    layers, heads = maps.shape[:2]
    figure, axes = plt.subplots(layers, heads, figsize=(2.4 * heads, 2.4 * layers), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            attention_map(clip_attention(maps[layer, head]), ax=axes[layer, head],
                          title=f"layer {layer}, head {head}", episode_length=episode_length)
            axes[layer, head].set_xlabel("")
            axes[layer, head].set_ylabel("")
    figure.supxlabel("attended step (key)")
    figure.supylabel("step (query)")
    figure.tight_layout()
    return figure


def per_head(frame: pd.DataFrame, value: str, x: str = "head", ax=None, reference: float | None = None):
    """A per-layer, per-head figure (e.g. from icrl_lab.probe): bars of `value` by head, one colour per
    layer; with x another column (such as episodes_back), lines instead."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    if x == "head":
        sns.barplot(frame, x="head", y=value, hue="layer", ax=ax)
    else:
        sns.lineplot(frame, x=x, y=value, hue="layer", style="head", marker="o", ax=ax)
        ax.set_xticks(sorted(frame[x].unique()))
    if reference is not None:
        ax.axhline(reference, linestyle="--", color="0.4", linewidth=1)
    ax.legend(fontsize=7, ncols=2)
    return ax


def dark_room_game_figure(game, reveal: bool = False):
    """A `play.DarkRoomGame`'s path so far in the dark room; with reveal, the goal too."""
    figure, ax = plt.subplots(figsize=(3.2, 3.6))
    draw_grid_path(game.size, game.cells, goal=game.goal if reveal else None, ax=ax, rewarded=game.rewarded_cells,
                   title="the room, revealed" if reveal else "what you know: your path, your rewards")
    if not reveal:
        ax.set_facecolor("0.15")
    return figure


def rollout_figure(played, frame, index: int, episode: int):
    """One task of an in-context evaluation: the path of one episode, and that task's return per episode.

    played, frame: what `evaluate.in_context_rollout` returns."""
    family = played.metadata["env_family"]
    cells, rewards = episode_cells(played, index, episode)
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), gridspec_kw={"width_ratios": [1, 1.6]})
    rewarded = [cell for cell, reward in zip(cells[1:], rewards) if reward > 0]
    draw_grid_path(grid_size(played), cells, ax=left, title=f"task {index}, episode {episode}: return {sum(rewards):g}",
                   rewarded=rewarded, **task_marks(family, played.tasks[index]))
    returns = frame[frame["task"] == index].sort_values("episode")
    mean = frame.groupby("episode")["return"].mean()
    right.plot(mean.index, mean.values, color="0.6", label="mean over tasks")
    right.plot(returns["episode"], returns["return"], color="tab:blue", label="this task")
    right.scatter([episode], returns.loc[returns["episode"] == episode, "return"], color="tab:red", zorder=3)
    right.set_xlabel("in-context episode")
    right.set_ylabel("return")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


def curriculum_figure(histories):
    """The noise a curriculum's demonstrator follows, and the learning curve of the data it made, with the
    optimal return and the best policy in the data (the demonstrator at its floor) as reference lines."""
    source, family = histories.metadata["source"], histories.metadata["env_family"]
    tasks = np.unique(histories.tasks, axis=0)
    reference = {"optimal": float(optimal_returns(family, tasks).mean()),
                 "best policy in the data": demonstrator_return(family, tasks, source["floor"])}
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.2), gridspec_kw={"width_ratios": [1, 1.3]})
    left.plot(histories.epsilon[0])
    left.set_xlabel("step of the history")
    left.set_ylabel("epsilon")
    left.set_title(f"{source['schedule']}, floor {source['floor']:.3f}", fontsize=9)
    learning_curves(histories, ax=right, reference=reference)
    right.set_title(f"the data's learning curve (max_perf {source['max_perf']:g})", fontsize=9)
    figure.tight_layout()
    return figure


def attention_figure(maps, prev_rewards, layer: int, head: int, step: int, episode_length: int | None = None):
    """One head's attention map with the chosen query step marked, and what that step attends to.

    maps: (layers, heads, steps, steps) of one history; prev_rewards: the reward each step's token carries."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1, 1.5]})
    attention_map(clip_attention(maps[layer, head]), ax=left, title=f"layer {layer}, head {head}",
                  episode_length=episode_length)
    left.axhline(step, color="tab:cyan", linewidth=1)
    attention_row(maps[layer, head, step, :step + 1], np.asarray(prev_rewards) > 0, ax=right, step=step)
    figure.tight_layout()
    return figure


# --- probing (icrl_lab.probe) -----------------------------------------------------------------------

def _mark_history(ax, labels: dict, row: int, steps: int):
    """Episode boundaries (grey lines), rewarded steps (orange ticks) and steps on the goal (green ticks)
    along the key axis of `ax`; labels: `probe.step_labels`."""
    episode = labels["episode"][row, :steps]
    for boundary in np.flatnonzero(np.diff(episode)) + 1:
        ax.axvline(boundary - 0.5, color="0.5", linewidth=0.8, linestyle="--")
    transform = ax.get_xaxis_transform()
    rewarded = np.flatnonzero(labels["reward"][row, :steps] > 0)
    goal = np.flatnonzero(labels["on_goal"][row, :steps])
    ax.scatter(rewarded, np.full(len(rewarded), 1.02), marker="v", s=14, color="tab:orange", transform=transform,
               clip_on=False, label="token carries a reward")
    ax.scatter(goal, np.full(len(goal), -0.06), marker="^", s=14, color="tab:green", transform=transform,
               clip_on=False, label="on the goal cell")


def attention_over_history(maps, labels: dict, row: int, query: int, index: int = 0):
    """What every head attends to from one query step, over the whole history before it: one panel per
    head (rows: layers), episode boundaries dashed, keys whose token carries a reward marked in orange on
    top, keys standing on the goal in green below.

    maps: (histories, layers, heads, steps, steps) from `probe.attention_maps`; index: the history's row in
    maps; labels: `probe.step_labels` of the histories; row: the history's row in labels."""
    maps = np.asarray(maps)
    _, layers, heads, steps, _ = maps.shape
    figure, axes = plt.subplots(layers * heads, 1, figsize=(9, 0.9 * layers * heads + 0.8), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        layer, head = divmod(i, heads)
        ax.bar(np.arange(query + 1), maps[index, layer, head, query, :query + 1], width=1.0, color="tab:blue")
        ax.set_ylim(0, max(0.05, 1.1 * maps[index, layer, head, query, :query + 1].max()))
        ax.set_ylabel(f"L{layer}H{head}", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        _mark_history(ax, labels, row, query + 1)
    axes[-1, 0].set_xlabel("attended step (key)")
    axes[0, 0].set_title(f"attention of step {query} (episode {labels['episode'][row, query]}) over the history",
                         fontsize=9)
    handles, names = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, names, fontsize=7, loc="upper right")
    figure.tight_layout()
    return figure


def head_type_heatmap(types: pd.DataFrame, value: str = "lift_recency", ax=None):
    """Heads (rows) by kind of key (columns) from `probe.head_types`: the lift over the recency-matched
    baseline by default (1: no more than the head's taste for recent steps explains)."""
    table = types.assign(head_name=lambda f: "L" + f["layer"].astype(str) + "H" + f["head"].astype(str)) \
        .pivot(index="head_name", columns="feature", values=value)
    ax = ax or plt.subplots(figsize=(1.2 * table.shape[1] + 1.5, 0.4 * table.shape[0] + 1))[1]
    sns.heatmap(table, annot=True, fmt=".2f", cmap="vlag", center=1.0 if "lift" in value else None, cbar=False,
                annot_kws={"fontsize": 8}, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(value.replace("_", " "), fontsize=9)
    return ax


def ablation_bars(effects: pd.DataFrame, metric: str = "return", ax=None):
    """Change of `metric` when each part is removed (from `probe.ablation_effects`), with 95% bootstrap
    intervals, one colour per decoding mode; the intact model is the zero line."""
    table = effects[(effects["metric"] == metric) & (effects["part"].astype(str) != "none")].copy()
    table["part"] = table["part"].astype(str)
    parts = list(dict.fromkeys(table.sort_values("change")["part"]))
    modes = list(dict.fromkeys(table["mode"]))
    ax = ax or plt.subplots(figsize=(6, 0.32 * len(parts) * len(modes) + 1.2))[1]
    height = 0.8 / len(modes)
    for i, (mode, colour) in enumerate(zip(modes, sns.color_palette())):
        rows = table[table["mode"] == mode].set_index("part").reindex(parts)
        y = np.arange(len(parts)) + (i - (len(modes) - 1) / 2) * height
        ax.barh(y, rows["change"], height=height, color=colour, label=mode,
                xerr=[rows["change"] - rows["low"], rows["high"] - rows["change"]], error_kw={"linewidth": 0.8})
    ax.set_yticks(np.arange(len(parts)), parts, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_xlabel(f"change of {metric.replace('_', ' ')} when removed (95% CI)")
    ax.legend(fontsize=8, title="decoding", title_fontsize=8)
    ax.figure.tight_layout()
    return ax


def intervention_bars(summary: pd.DataFrame, measures=("return", "steps_on_goal", "steps_on_rewarded_cell")):
    """The next episode after each context intervention (from `probe.context_interventions`): the mean of
    each measure with its 95% bootstrap interval."""
    figure, axes = plt.subplots(1, len(measures), figsize=(3.3 * len(measures), 3.0), sharey=True, squeeze=False)
    for ax, measure in zip(axes[0], measures):
        rows = summary[summary["measure"] == measure]
        y = np.arange(len(rows))
        ax.barh(y, rows["mean"], xerr=[rows["mean"] - rows["low"], rows["high"] - rows["mean"]], color="tab:blue",
                error_kw={"linewidth": 0.8})
        ax.set_yticks(y, rows["intervention"], fontsize=8)
        ax.set_title(measure.replace("_", " "), fontsize=9)
    axes[0, 0].invert_yaxis()
    figure.supxlabel("next episode after the edited context (95% CI)", fontsize=9)
    figure.tight_layout()
    return figure


def probe_accuracy(results: pd.DataFrame):
    """Linear-probe scores by depth (from `probe.probe_layers`), one panel per target: the trained model's
    stream against chance, the same probe on shuffled labels, and a random-weights model."""
    targets = list(dict.fromkeys(results["target"]))
    figure, axes = plt.subplots(1, len(targets), figsize=(3.0 * len(targets), 2.9), squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = results[results["target"] == target]
        ax.plot(rows["layer"], rows["score"], marker="o", label="trained model")
        if "random_model" in rows:
            ax.plot(rows["layer"], rows["random_model"], marker="s", linestyle=":", color="tab:purple", label="random weights")
        ax.plot(rows["layer"], rows["shuffled"], marker="x", linestyle="--", color="0.5", label="shuffled labels")
        ax.axhline(rows["chance"].iloc[0], color="tab:red", linewidth=1, label="chance")
        ax.set_title(target, fontsize=9)
        ax.set_xticks(rows["layer"])
        ax.set_xlabel("depth (0: embeddings)")
        ax.set_ylabel(rows["metric"].iloc[0], fontsize=8)
        ax.set_ylim(0, 1.02)
    axes[0, -1].legend(fontsize=7)
    figure.tight_layout()
    return figure


def coverage_curves(curves: pd.DataFrame, ax=None):
    """Distinct cells reached against step, frozen at the first reward (from `probe.compare_exploration`),
    one line per policy (band: 1.96 standard errors); dotted: the share of histories still searching."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    twin = ax.twinx()
    for (policy, rows), colour in zip(curves.groupby("policy", sort=False), sns.color_palette()):
        ax.plot(rows["step"], rows["coverage"], color=colour, label=policy)
        ax.fill_between(rows["step"], rows["coverage"] - 1.96 * rows["coverage_se"],
                        rows["coverage"] + 1.96 * rows["coverage_se"], color=colour, alpha=0.2)
        twin.plot(rows["step"], rows["searching"], color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("step of the in-context stream")
    ax.set_ylabel("cells reached before the first reward")
    twin.set_ylabel("share still searching (dotted)")
    twin.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="center right")
    ax.figure.tight_layout()
    return ax


def attention_on_grid(maps, labels: dict, size: int, index: int, row: int, layer: int, head: int, step: int,
                      goal=None):
    """The attention explorer's picture: left, the grid with the attention one head pays from `step` summed
    per cell of the attended steps (darker: more), the path so far and the goal; right, the same attention
    over the history, episode boundaries and rewarded steps marked (see `attention_over_history`)."""
    weights = np.asarray(maps)[index, layer, head, step, :step + 1]
    per_cell = np.bincount(labels["cell"][row, :step + 1], weights=weights, minlength=size * size).reshape(size, size)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 2]})
    left.imshow(per_cell, cmap="Blues", vmin=0, vmax=max(per_cell.max(), 1e-6))
    episode = labels["episode"][row, step]
    current = labels["cell"][row, :step + 1][labels["episode"][row, :step + 1] == episode]
    draw_grid_path(size, current, goal=None, ax=left)
    if goal is not None:
        left.add_patch(plt.Rectangle((goal[1] - 0.45, goal[0] - 0.45), 0.9, 0.9, fill=False, linewidth=2,
                                     edgecolor=np.array(COLOURS["goal"]) / 255))
    for cell in np.unique(labels["cell"][row, :step + 1]):
        share = per_cell.flat[cell]
        if share >= 0.05:
            left.text(cell % size, cell // size, f"{share:.2f}", ha="center", va="center", fontsize=6, color="tab:red")
    left.set_title(f"L{layer}H{head}, step {step}: attention per cell\n(path: this episode; green box: goal)", fontsize=8)
    right.bar(np.arange(step + 1), weights, width=1.0, color="tab:blue")
    _mark_history(right, labels, row, step + 1)
    right.set_xlabel("attended step (key)")
    right.set_ylabel("attention")
    right.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return figure
