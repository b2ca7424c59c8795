"""Dark Room: find an invisible goal cell on a grid, knowing only your own cell and your reward.

As defined for AD^eps (Zisman et al., 2024): a 9x9 grid, five actions (noop, up, right, down, left),
every episode starts at the centre, reward 1 on every step the agent stands on the goal after moving,
no termination, 20 steps an episode. The goal is the task, and it is never observed.
"""
from __future__ import annotations

import numpy as np

from .grid import (ACTION_NAMES, DarkGridEnv, cell_id, check_cell, check_cells, check_horizon, check_size, draw_rgb, move,
                   shortest_path_action)
from .vector import BatchedEnv


class DarkRoomEnv(DarkGridEnv):
    """One Dark Room task, with gymnasium's API.

    goal: the hidden (row, col); None draws one uniformly at every seeded reset (and keeps it otherwise).
    start: the (row, col) every episode starts from; None means the centre cell.
    terminate_on_goal: end the episode on the first reward (the 'Hard' variant).
    """

    def __init__(self, goal=None, size: int = 9, horizon: int = 20, start=None,
                 terminate_on_goal: bool = False, render_mode: str | None = None):
        super().__init__(size, horizon, render_mode)
        self.start = check_cell("start", start, self.size) if start is not None else (self.size // 2, self.size // 2)
        self.goal = check_cell("goal", goal, self.size) if goal is not None else None
        self._draw_goal = goal is None
        self.terminate_on_goal = bool(terminate_on_goal)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self._draw_goal and (seed is not None or self.goal is None):
            cell = int(self.np_random.integers(self.size * self.size))
            self.goal = divmod(cell, self.size)
        self.row, self.col = self.start
        self.steps = 0
        return cell_id(self.row, self.col, self.size), {"goal": self.goal}

    def step(self, action):
        self._walk(action)
        reward = 1.0 if (self.row, self.col) == self.goal else 0.0
        terminated = self.terminate_on_goal and reward > 0
        truncated = self.steps >= self.horizon and not terminated
        return cell_id(self.row, self.col, self.size), reward, terminated, truncated, {"goal": self.goal}

    def render(self):
        if self.render_mode == "rgb_array":
            return draw_rgb(self.size, (self.row, self.col), {"goal": self.goal})
        return None


class BatchedDarkRoom(BatchedEnv):
    """Many Dark Room tasks stepped at once on arrays, one row per task, as a gymnasium VectorEnv.

    goals: the hidden (row, col) of every row, shape (n, 2); None (with num_envs) draws each row's
    goal uniformly at the first reset and at every seeded full reset. The other arguments are those of
    DarkRoomEnv; autoreset_mode is gymnasium's (see icrl_lab.envs.vector).

    The agent's position is kept as a cell id, and both the moves and the optimal policy are looked
    up in small tables built once (cells x actions, and goals x cells: size**4 bytes), which makes a
    step a few array operations however many tasks there are.
    """

    num_actions = len(ACTION_NAMES)
    render_modes = ("rgb_array",)

    def __init__(self, goals=None, size: int = 9, horizon: int = 20, start=None, terminate_on_goal: bool = False,
                 num_envs: int | None = None, autoreset_mode="NextStep", render_mode: str | None = None):
        self.size = check_size(size)
        self.horizon = check_horizon(horizon)
        self.start = check_cell("start", start, self.size) if start is not None else (self.size // 2, self.size // 2)
        self.terminate_on_goal = bool(terminate_on_goal)
        self.num_obs = self.size * self.size
        # Fixed-length episodes that always start in the same place are independent of each other.
        self.fixed_length_episodes = not self.terminate_on_goal
        self.start_cell = cell_id(*self.start, self.size)
        row, col = np.divmod(np.arange(self.num_obs), self.size)
        next_row, next_col = move(row[:, None], col[:, None], np.arange(self.num_actions)[None, :], self.size)
        self._next_cell = cell_id(next_row, next_col, self.size).ravel()  # index: cell * num_actions + action
        self._optimal = shortest_path_action(row[None, :], col[None, :], row[:, None], col[:, None]).astype(np.int8).ravel()
        self._optimal_now = None
        settings = {"size": size, "horizon": horizon, "start": start, "terminate_on_goal": terminate_on_goal}
        self._init_vector(goals, num_envs, autoreset_mode, render_mode, settings)

    def check_tasks(self, goals) -> np.ndarray:
        return check_cells("goals", goals, self.size)

    def _set_tasks(self, goals):
        # Only the goal cells are kept (tasks rebuilds the pairs): collection makes envs of ~10^6 rows.
        self.goal_cells = cell_id(goals[:, 0], goals[:, 1], self.size)
        self._goal_offset = self.goal_cells * self.num_obs  # index into _optimal: goal * num_obs + cell

    def _tasks_array(self):
        return np.stack(np.divmod(self.goal_cells, self.size), axis=1)

    def _draw_tasks(self, n):
        return np.stack(np.divmod(self.np_random.integers(self.num_obs, size=n), self.size), axis=1)

    def reset_rows(self, mask=None, seed=None) -> np.ndarray:
        """Reset every row (mask None) or the rows where mask is True; return all observations."""
        self._begin_reset(mask, seed)
        # New arrays rather than in-place writes, so observations already handed out never change.
        if mask is None:
            self.cell = np.full(self.num_envs, self.start_cell)
            self.steps = np.zeros(self.num_envs, dtype=np.int64)
        else:
            self.cell = np.where(mask, self.start_cell, self.cell)
            self.steps = np.where(mask, 0, self.steps)
        self._optimal_now = None
        return self.cell

    def step_arrays(self, actions):
        """Step every row: (observations, rewards, terminated, truncated), with no autoreset."""
        self.cell = self._next_cell[self.cell * self.num_actions + actions]
        self._optimal_now = None
        self.steps += 1
        on_goal = self.cell == self.goal_cells
        rewards = on_goal.astype(np.float32)
        terminated = on_goal if self.terminate_on_goal else np.zeros(self.num_envs, dtype=bool)
        truncated = (self.steps >= self.horizon) & ~terminated
        return self.cell, rewards, terminated, truncated

    def optimal_actions(self) -> np.ndarray:
        """The scripted optimal policy: vertical moves first, then horizontal, then noop on the goal."""
        if self._optimal_now is None:  # asked for by both a demonstrator and the recorder each step
            self._optimal_now = self._optimal[self._goal_offset + self.cell]
        return self._optimal_now

    @staticmethod
    def task_marks(task) -> dict:
        """The hidden cell of a task (a goal row), as draw_rgb and plots.draw_grid_path take it."""
        return {"goal": (int(task[0]), int(task[1]))}

    def _frame(self, i):
        return draw_rgb(self.size, divmod(int(self.cell[i]), self.size), self.task_marks(self.tasks[i]))
