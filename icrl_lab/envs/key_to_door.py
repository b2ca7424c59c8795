"""Dark Key-to-Door: pick up an invisible key, then reach an invisible door.

As in AD and AD^eps: a 9x9 grid with Dark Room's five actions, a random start cell (never the key),
+1 the first time the agent reaches the key, +1 on reaching the door while holding the key, which ends
the episode; otherwise the episode is cut at 40 steps. The most an episode can return is 2. The
observation is the agent's cell only: whether it holds the key is not observed.
"""
from __future__ import annotations

import numpy as np

from .grid import (ACTION_NAMES, DarkGridEnv, cell_id, check_cell, check_cells, check_horizon, check_integral, check_size,
                   draw_rgb, move, shortest_path_action)
from .vector import BatchedEnv


def _check_key_door(key, door, size):
    key, door = check_cell("key", key, size), check_cell("door", door, size)
    if key == door:
        raise ValueError(f"key={key} and door={door} must be different cells")
    return key, door


class DarkKeyToDoorEnv(DarkGridEnv):
    """One Key-to-Door task, with gymnasium's API. key/door None: drawn at every seeded reset."""

    def __init__(self, key=None, door=None, size: int = 9, horizon: int = 40, render_mode: str | None = None):
        super().__init__(size, horizon, render_mode)
        if (key is None) != (door is None):
            raise ValueError("key and door must be given together, or both left out to draw them at random")
        self.key, self.door = _check_key_door(key, door, self.size) if key is not None else (None, None)
        self._draw_task = key is None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        n_cells = self.size * self.size
        if self._draw_task and (seed is not None or self.key is None):
            key, door = self.np_random.choice(n_cells, size=2, replace=False)
            self.key, self.door = divmod(int(key), self.size), divmod(int(door), self.size)
        key_id = cell_id(*self.key, self.size)
        start = int(self.np_random.integers(n_cells))
        while start == key_id:
            start = int(self.np_random.integers(n_cells))
        self.row, self.col = divmod(start, self.size)
        self.has_key = False
        self.steps = 0
        return start, self._info()

    def _info(self):
        return {"key": self.key, "door": self.door, "has_key": self.has_key}

    def step(self, action):
        self._walk(action)
        reward, terminated = 0.0, False
        if (self.row, self.col) == self.key and not self.has_key:
            self.has_key, reward = True, 1.0
        elif (self.row, self.col) == self.door and self.has_key:
            reward, terminated = 1.0, True
        truncated = self.steps >= self.horizon and not terminated
        return cell_id(self.row, self.col, self.size), reward, terminated, truncated, self._info()

    def render(self):
        if self.render_mode == "rgb_array":
            marks = {"door": self.door} if self.has_key else {"key": self.key, "door": self.door}
            return draw_rgb(self.size, (self.row, self.col), marks)
        return None


class BatchedDarkKeyToDoor(BatchedEnv):
    """Many Key-to-Door tasks at once, as a gymnasium VectorEnv.

    tasks: (key_row, key_col, door_row, door_col) of every row, shape (n, 4); None (with num_envs)
    draws each row's key and door (different cells) at the first reset and at every seeded full reset.
    autoreset_mode is gymnasium's (see icrl_lab.envs.vector).
    """

    num_actions = len(ACTION_NAMES)
    fixed_length_episodes = False
    render_modes = ("rgb_array",)

    def __init__(self, tasks=None, size: int = 9, horizon: int = 40, num_envs: int | None = None,
                 autoreset_mode="NextStep", render_mode: str | None = None):
        self.size = check_size(size)
        self.horizon = check_horizon(horizon)
        self.num_obs = self.size * self.size
        self._init_vector(tasks, num_envs, autoreset_mode, render_mode, {"size": size, "horizon": horizon})

    def check_tasks(self, tasks) -> np.ndarray:
        tasks = np.asarray(check_integral("tasks", tasks), dtype=np.int64)
        if tasks.ndim != 2 or tasks.shape[1] != 4:
            raise ValueError(f"tasks must have shape (n, 4) of (key_row, key_col, door_row, door_col), got {tasks.shape}")
        check_cells("keys", tasks[:, :2], self.size)
        check_cells("doors", tasks[:, 2:], self.size)
        if np.any(np.all(tasks[:, :2] == tasks[:, 2:], axis=1)):
            raise ValueError("every task needs its key and its door on different cells")
        return tasks

    def _set_tasks(self, tasks):
        self._tasks = tasks
        self.keys, self.doors = tasks[:, :2], tasks[:, 2:]
        self.key_cells = cell_id(self.keys[:, 0], self.keys[:, 1], self.size)

    def _draw_tasks(self, n):
        key = self.np_random.integers(self.num_obs, size=n)
        door = self.np_random.integers(self.num_obs - 1, size=n)
        door += door >= key  # any cell but the key's
        return np.concatenate([np.stack(np.divmod(key, self.size), 1), np.stack(np.divmod(door, self.size), 1)], axis=1)

    def reset_rows(self, mask=None, seed=None) -> np.ndarray:
        """Reset every row (mask None) or the masked rows to a random start that is not the key."""
        self._begin_reset(mask, seed)
        if mask is None:
            self.row = np.zeros(self.num_envs, dtype=np.int64)
            self.col = np.zeros(self.num_envs, dtype=np.int64)
            self.has_key = np.zeros(self.num_envs, dtype=bool)
            self.steps = np.zeros(self.num_envs, dtype=np.int64)
            mask = np.ones(self.num_envs, dtype=bool)
        rows = np.flatnonzero(mask)
        key_ids = self.key_cells[rows]
        start = self.np_random.integers(self.num_obs, size=len(rows))
        while np.any(redraw := start == key_ids):
            start[redraw] = self.np_random.integers(self.num_obs, size=int(redraw.sum()))
        self.row[rows], self.col[rows] = np.divmod(start, self.size)
        self.has_key[rows], self.steps[rows] = False, 0
        return cell_id(self.row, self.col, self.size)

    def step_arrays(self, actions):
        """Step every row: (observations, rewards, terminated, truncated), with no autoreset."""
        self.row, self.col = move(self.row, self.col, np.asarray(actions), self.size)
        self.steps += 1
        at_key = (self.row == self.keys[:, 0]) & (self.col == self.keys[:, 1])
        at_door = (self.row == self.doors[:, 0]) & (self.col == self.doors[:, 1])
        picked = at_key & ~self.has_key
        terminated = at_door & self.has_key
        self.has_key |= picked
        rewards = (picked | terminated).astype(np.float32)
        truncated = (self.steps >= self.horizon) & ~terminated
        return cell_id(self.row, self.col, self.size), rewards, terminated, truncated

    def optimal_actions(self) -> np.ndarray:
        """Scripted optimal policy: shortest path to the key, then to the door."""
        target = np.where(self.has_key[:, None], self.doors, self.keys)
        return shortest_path_action(self.row, self.col, target[:, 0], target[:, 1])

    @staticmethod
    def task_marks(task) -> dict:
        """The hidden cells of a task (a (key_row, key_col, door_row, door_col) row): its key and its door."""
        task = [int(v) for v in task]
        return {"key": tuple(task[:2]), "door": tuple(task[2:])}

    def _frame(self, i):
        marks = self.task_marks(self.tasks[i])
        if self.has_key[i]:
            del marks["key"]
        return draw_rgb(self.size, (int(self.row[i]), int(self.col[i])), marks)
