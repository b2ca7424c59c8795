"""Interactive front ends for the notebooks (ipywidgets), each a thin layer over plain code.

The plain parts (`DarkRoomGame`, `play_episode`, `episode_cells`, `curriculum_preview` and the
`*_figure` functions) hold all the logic and are tested without a browser; the `*_widget` functions
only wire buttons and sliders to them and redraw.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from . import plots
from .curricula import collect_noise_distillation, demonstrator_return
from .envs import ACTION_NAMES, DarkRoomEnv, dark_room_goals, make_batched
from .envs.grid import move
from .schedules import SCHEDULES, make_schedule
from .sources import EpsilonGreedyDemonstrator, optimal_returns


def _show(output: widgets.Output, figure):
    """Replace what `output` shows by `figure` (closed afterwards, so figures do not pile up in memory).

    The Output widget's own methods are used rather than its `with` block, which captures the kernel's
    output streams and is fragile in headless kernels (papermill, nbval)."""
    output.clear_output(wait=True)
    output.append_display_data(figure)
    plt.close(figure)


def task_marks(family: str, task) -> dict:
    """The hidden cells of a grid task, as draw_grid_path takes them: a goal, or a key and a door."""
    task = [int(v) for v in task]
    if family == "DarkKeyToDoor":
        return {"key": tuple(task[:2]), "door": tuple(task[2:])}
    return {"goal": tuple(task)}


# --- Dark Room player -------------------------------------------------------------------------------

class DarkRoomGame:
    """Dark Room played by hand, episode after episode in the same room, seeing only what the agent
    sees: its own cell and its rewards. The goal stays hidden until the figure is asked to reveal it.

    goal: the hidden (row, col); None draws one at random (from `seed`), as does `new_room`.
    """

    def __init__(self, goal=None, seed: int = 0, size: int = 9, horizon: int = 20):
        self.rng = np.random.default_rng(seed)
        self.size, self.horizon = size, horizon
        self.new_room(goal)

    def new_room(self, goal=None):
        """A new room (a new hidden goal, random unless given); forgets the returns of the last room."""
        goal = tuple(goal) if goal is not None else tuple(int(v) for v in self.rng.integers(self.size, size=2))
        self.env = DarkRoomEnv(goal=goal, size=self.size, horizon=self.horizon)
        self.episode_returns = []
        self.new_episode()

    def new_episode(self):
        """Start again from the centre of the same room; the returns of the finished episodes are kept."""
        cell, _ = self.env.reset()
        self.cells, self.rewards = [cell], []

    @property
    def goal(self) -> tuple:
        return self.env.goal

    @property
    def done(self) -> bool:
        return len(self.rewards) >= self.horizon

    def act(self, action) -> float:
        """Take an action (its id or its name: noop, up, right, down, left); return the reward it earned."""
        if isinstance(action, str):
            if action not in ACTION_NAMES:
                raise ValueError(f"action={action!r} is not one of {ACTION_NAMES}")
            action = ACTION_NAMES.index(action)
        if self.done:
            raise ValueError("this episode is over: start a new episode (or a new room) to go on")
        cell, reward, _, _, _ = self.env.step(action)
        self.cells.append(cell)
        self.rewards.append(reward)
        if self.done:
            self.episode_returns.append(sum(self.rewards))
        return reward

    def status(self) -> str:
        """What the player knows: the step, the last reward, this episode's return and the earlier ones."""
        last = f"{self.rewards[-1]:g}" if self.rewards else "-"
        earlier = self.episode_returns[:-1] if self.done else self.episode_returns
        text = (f"episode {len(earlier) + 1} · step {len(self.rewards)} of {self.horizon} · last reward {last} · "
                f"return {sum(self.rewards):g}")
        if earlier:
            text += " · earlier returns: " + ", ".join(f"{r:g}" for r in earlier)
        return text + (" · episode over" if self.done else "")

    def figure(self, reveal: bool = False):
        """Your path so far in the dark room; with reveal, the goal too."""
        figure, ax = plt.subplots(figsize=(3.2, 3.2))
        plots.draw_grid_path(self.size, self.cells, goal=self.goal if reveal else None, ax=ax,
                             title="the room, revealed" if reveal else "what you know: your own path")
        if not reveal:
            ax.set_facecolor("0.15")
        return figure


def dark_room_player(goal=None, seed: int = 0) -> widgets.Widget:
    """Play Dark Room with buttons: you see your path and your rewards, never the goal (unless you reveal it)."""
    game = DarkRoomGame(goal, seed)
    status = widgets.HTML(layout=widgets.Layout(min_height="2em"))
    picture = widgets.Output()
    reveal = widgets.ToggleButton(description="reveal the goal", value=False)

    def refresh(*_):
        status.value = f"<b>{game.status()}</b>"
        _show(picture, game.figure(reveal.value))

    def move(button):
        if not game.done:
            game.act(button.description)
        refresh()

    def button(name, handler):
        b = widgets.Button(description=name, layout=widgets.Layout(width="80px"))
        b.on_click(handler)
        return b

    blank = widgets.Box(layout=widgets.Layout(width="80px"))
    pad = widgets.VBox([
        widgets.HBox([blank, button("up", move), blank]),
        widgets.HBox([button("left", move), button("noop", move), button("right", move)]),
        widgets.HBox([blank, button("down", move), blank]),
    ])
    again = button("new episode", lambda _: (game.new_episode(), refresh()))
    other = button("new room", lambda _: (game.new_room(), refresh()))
    again.layout.width = other.layout.width = "120px"
    reveal.observe(refresh, names="value")
    refresh()
    return widgets.VBox([status, widgets.HBox([pad, widgets.VBox([again, other, reveal])]), picture])


def play_episode(family: str, task, epsilon: float, seed: int = 0, **env_kwargs):
    """One episode of the epsilon-greedy demonstrator on one task (epsilon 0: optimal, 1: random).
    Returns (cells visited, start and end included; rewards of each step)."""
    env = make_batched(family, np.asarray([task]), **env_kwargs)
    policy = EpsilonGreedyDemonstrator(env, epsilon, seed=seed)
    observation = env.reset(seed=seed)
    cells, rewards = [int(observation[0])], []
    for step in range(env.horizon):
        observation, reward, terminated, truncated = env.step(policy.act(observation, step))
        cells.append(int(observation[0]))
        rewards.append(float(reward[0]))
        if terminated[0] or truncated[0]:
            break
    return cells, rewards


# --- in-context rollout viewer ----------------------------------------------------------------------

def grid_size(histories) -> int:
    """The side of the grid the histories were played on (from their metadata)."""
    metadata = histories.metadata
    return make_batched(metadata["env_family"], histories.tasks[:1], **metadata.get("env_kwargs", {})).size


def episode_cells(histories, index: int, episode: int):
    """Cells visited in one episode of one history (start and end included) and the rewards of its steps."""
    size = grid_size(histories)
    ends = np.flatnonzero(histories.dones[index])
    if not 0 <= episode < len(ends):
        raise ValueError(f"episode={episode} is not allowed: history {index} has {len(ends)} complete episodes")
    start = ends[episode - 1] + 1 if episode else 0
    steps = slice(start, ends[episode] + 1)
    cells = [int(c) for c in histories.observations[index, steps]]
    # The last cell is where the last action led; it is not stored, so move there.
    row, col = move(cells[-1] // size, cells[-1] % size, int(histories.actions[index, ends[episode]]), size)
    return cells + [int(row * size + col)], [float(r) for r in histories.rewards[index, steps]]


def rollout_figure(played, frame, index: int, episode: int):
    """One task of an in-context evaluation: the path of one episode, and that task's return per episode."""
    family = played.metadata["env_family"]
    cells, rewards = episode_cells(played, index, episode)
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), gridspec_kw={"width_ratios": [1, 1.6]})
    plots.draw_grid_path(grid_size(played), cells, ax=left, title=f"episode {episode}: return {sum(rewards):g}",
                         **task_marks(family, played.tasks[index]))
    returns = frame[frame["task"] == index].sort_values("episode")
    mean = frame.groupby("episode")["return"].mean()
    right.plot(mean.index, mean.values, color="0.6", label="mean over tasks")
    right.plot(returns["episode"], returns["return"], color="tab:blue", label="this task")
    right.scatter([episode], returns.loc[returns["episode"] == episode, "return"], color="tab:red", zorder=3)
    right.set_xlabel("in-context episode")
    right.set_ylabel("return")
    right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def rollout_viewer(played, frame) -> widgets.Widget:
    """Step through an in-context evaluation episode by episode: pick a task, then move through its episodes.

    played, frame: what `evaluate.in_context_rollout` returns."""
    family = played.metadata["env_family"]
    labels = [(f"task {i}: " + ", ".join(f"{k} {v}" for k, v in task_marks(family, task).items()), i)
              for i, task in enumerate(played.tasks)]
    task = widgets.Dropdown(options=labels, value=0, description="task")
    episode = widgets.IntSlider(value=0, min=0, max=int(frame["episode"].max()), description="episode",
                                continuous_update=False)
    back, forward = widgets.Button(description="previous episode"), widgets.Button(description="next episode")
    picture = widgets.Output()

    def refresh(*_):
        _show(picture, rollout_figure(played, frame, task.value, episode.value))

    back.on_click(lambda _: setattr(episode, "value", max(episode.min, episode.value - 1)))
    forward.on_click(lambda _: setattr(episode, "value", min(episode.max, episode.value + 1)))
    task.observe(refresh, names="value")
    episode.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([task, episode]), widgets.HBox([back, forward]), picture])


# --- curriculum explorer ----------------------------------------------------------------------------

def curriculum_preview(schedule: str = "linear", max_perf: float = 0.5, family: str = "DarkRoom", tasks=None,
                       num_steps: int = 1000, histories_per_task: int = 1, seed: int = 0):
    """AD^eps histories for a schedule (by name) and a max_perf, on the Dark Room training goals by default."""
    tasks = dark_room_goals("train") if tasks is None else tasks
    return collect_noise_distillation(family, tasks, num_steps, max_perf=max_perf, schedule=make_schedule(schedule),
                                      histories_per_task=histories_per_task, seed=seed)


def curriculum_figure(histories):
    """The noise a curriculum's demonstrator follows, and the learning curve of the data it made, with the
    optimal return and the best policy in the data (the demonstrator at its floor) as reference lines."""
    source, family = histories.metadata["source"], histories.metadata["env_family"]
    tasks = np.unique(histories.tasks, axis=0)
    reference = {"optimal": float(optimal_returns(family, tasks).mean()),
                 "best policy in the data": demonstrator_return(family, tasks, source["floor"])}
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(histories.epsilon[0])
    left.set_xlabel("step of the history")
    left.set_ylabel("epsilon")
    left.set_title(f"{source['schedule']}, floor {source['floor']:.3f}", fontsize=9)
    plots.learning_curves(histories, ax=right, reference=reference)
    right.set_title(f"the data's learning curve (max_perf {source['max_perf']:g})", fontsize=9)
    figure.tight_layout()
    return figure


def curriculum_explorer(num_steps: int = 1000, seed: int = 0) -> widgets.Widget:
    """Change the noise schedule and max_perf and see the learning curve of the AD^eps data they make."""
    schedule = widgets.Dropdown(options=sorted(SCHEDULES), value="linear", description="schedule")
    max_perf = widgets.FloatSlider(value=0.5, min=0.2, max=1.0, step=0.05, description="max_perf",
                                   continuous_update=False)
    message = widgets.HTML()
    picture = widgets.Output()

    def refresh(*_):
        message.value = "collecting ..."
        data = curriculum_preview(schedule.value, max_perf.value, num_steps=num_steps, seed=seed)
        summary = data.summary()
        message.value = (f"first episode's mean return {summary['mean_return_first_episode']:.2f}, "
                         f"last {summary['mean_return_last_episode']:.2f}")
        _show(picture, curriculum_figure(data))

    schedule.observe(refresh, names="value")
    max_perf.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([schedule, max_perf]), message, picture])


# --- attention explorer -----------------------------------------------------------------------------

def attention_figure(maps, prev_rewards, layer: int, head: int, step: int, episode_length: int | None = None):
    """One head's attention map with the chosen query step marked, and what that step attends to.

    maps: (layers, heads, steps, steps) of one history; prev_rewards: the reward each step's token carries."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1, 1.5]})
    plots.attention_map(plots.clip_attention(maps[layer, head]), ax=left, title=f"layer {layer}, head {head}", episode_length=episode_length)
    left.axhline(step, color="tab:cyan", linewidth=1)
    plots.attention_row(maps[layer, head, step, :step + 1], np.asarray(prev_rewards) > 0, ax=right, step=step)
    figure.tight_layout()
    return figure


def attention_explorer(maps, prev_rewards, index: int = 0, episode_length: int | None = None) -> widgets.Widget:
    """Pick a layer, a head and a time step, and see where that step's attention goes.

    maps: (histories, layers, heads, steps, steps) from `probe.attention_maps(model, histories)`;
    prev_rewards: (histories, steps), the reward each step's token carries."""
    _, layers, heads, steps, _ = maps.shape
    layer = widgets.IntSlider(value=layers - 1, min=0, max=layers - 1, description="layer", continuous_update=False)
    head = widgets.IntSlider(value=0, min=0, max=heads - 1, description="head", continuous_update=False)
    step = widgets.IntSlider(value=steps - 1, min=0, max=steps - 1, description="time step", continuous_update=False)
    picture = widgets.Output()

    def refresh(*_):
        _show(picture, attention_figure(maps[index], prev_rewards[index], layer.value, head.value, step.value, episode_length))

    for slider in (layer, head, step):
        slider.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([layer, head]), step, picture])
