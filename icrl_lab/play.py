"""Playing the grid worlds outside training: by hand (`DarkRoomGame`), by the epsilon-greedy
demonstrator (`play_episode`), and replaying one stored episode cell by cell (`episode_cells`);
`curriculum_preview` makes a small AD^eps data set from a schedule's name.

Plain functions and state only: the figures of these are in `plots`, the buttons and sliders over
them in `widgets`.
"""
from __future__ import annotations

import numpy as np

from .curricula import collect_noise_distillation
from .envs import ACTION_NAMES, FAMILIES, DarkRoomEnv, dark_room_goals, make_batched
from .envs.grid import move
from .schedules import make_schedule
from .sources import EpsilonGreedyDemonstrator


def task_marks(family: str, task) -> dict:
    """The hidden cells of a grid task, as draw_grid_path takes them: a goal, or a key and a door."""
    return FAMILIES[family][1].task_marks(task)


class DarkRoomGame:
    """Dark Room played by hand, episode after episode in the same room, seeing only what the agent
    sees: its own cell and its rewards. The goal stays hidden (`plots.dark_room_game_figure` reveals it
    on request).

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
        self.episode_returns, self.rewards = [], []
        self.new_episode()

    def new_episode(self):
        """Start again from the centre of the same room; the returns of the finished episodes are kept.

        An episode left before its last step is not counted: `discarded` then says which one, after how
        many steps and with what return, until the next action."""
        rewards = getattr(self, "rewards", [])
        self.discarded = None
        if rewards and not self.done:
            self.discarded = (len(self.episode_returns) + 1, len(rewards), sum(rewards))
        cell, _ = self.env.reset()
        self.cells, self.rewards = [cell], []

    @property
    def rewarded_cells(self) -> list:
        """The cells this episode's rewards were earned in (a cell once per visit that paid)."""
        return [cell for cell, reward in zip(self.cells[1:], self.rewards) if reward > 0]

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
        self.discarded = None
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
        if self.discarded:
            number, steps, total = self.discarded
            text += (f" · episode {number} was left after {steps} of {self.horizon} steps (return {total:g}) "
                     "and is not counted")
        return text + (" · episode over: press new episode" if self.done else "")


def play_episode(family: str, task, epsilon: float, seed: int = 0, **env_kwargs):
    """One episode of the epsilon-greedy demonstrator on one task (epsilon 0: optimal, 1: random).
    Returns (cells visited, start and end included; rewards of each step)."""
    env = make_batched(family, np.asarray([task]), **env_kwargs)
    policy = EpsilonGreedyDemonstrator(env, epsilon, seed=seed)
    observation = env.reset_rows(seed=seed)
    cells, rewards = [int(observation[0])], []
    for step in range(env.horizon):
        observation, reward, terminated, truncated = env.step_arrays(policy.act(observation, step))
        cells.append(int(observation[0]))
        rewards.append(float(reward[0]))
        if terminated[0] or truncated[0]:
            break
    return cells, rewards


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


def curriculum_preview(schedule: str = "linear", max_perf: float = 0.5, family: str = "DarkRoom", tasks=None,
                       num_steps: int = 1000, histories_per_task: int = 1, seed: int = 0):
    """AD^eps histories for a schedule (by name) and a max_perf, on the Dark Room training goals by default."""
    tasks = dark_room_goals("train") if tasks is None else tasks
    return collect_noise_distillation(family, tasks, num_steps, max_perf=max_perf, schedule=make_schedule(schedule),
                                      histories_per_task=histories_per_task, seed=seed)
