"""What the two dark grid worlds share: cell ids, the five moves, and an RGB picture.

A cell (row, col) of a size x size grid is observed as the single integer ``cell_id(row, col, size)``,
that is ``row * size + col``; ``divmod(cell, size)`` gives the (row, col) back.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

NOOP, UP, RIGHT, DOWN, LEFT = range(5)
ACTION_NAMES = ("noop", "up", "right", "down", "left")
# Row and column change of each action, indexed by action id.
MOVES = np.array([(0, 0), (-1, 0), (0, 1), (1, 0), (0, -1)], dtype=np.int64)


def check_size(size: int, minimum: int = 2) -> int:
    if not isinstance(size, (int, np.integer)) or size < minimum:
        raise ValueError(f"size={size!r} is not allowed: the grid needs an integer size >= {minimum}")
    return int(size)


def check_horizon(horizon: int) -> int:
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon={horizon!r} is not allowed: episodes need an integer horizon >= 1 step")
    return int(horizon)


def _integral(values) -> bool:
    """True if every value is a whole number (2 or 2.0, not 2.7, NaN or True)."""
    values = np.asarray(values)
    if values.dtype == bool or values.dtype == object and any(isinstance(v, bool) for v in values.ravel()):
        return False
    try:
        values = values.astype(np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def check_integral(name: str, values):
    """`values` (an array or nested lists), refused unless every entry is a whole number: a goal (2.7, 3)
    must not silently become (2, 3)."""
    raw = np.asarray(values)
    if raw.size and not _integral(raw):
        bad = next(v for v in raw.ravel() if not _integral([v]))
        bad = bad.item() if isinstance(bad, np.generic) else bad
        raise ValueError(f"{name} must hold whole numbers (cell rows and columns), but holds {bad!r}")
    return raw


def check_cell(name: str, cell, size: int) -> tuple[int, int]:
    """Validate a (row, col) pair of whole numbers that must lie on the grid."""
    try:
        values = tuple(cell)
        whole = len(values) == 2 and _integral(values) and not any(isinstance(v, (bool, np.bool_)) for v in values)
    except TypeError:
        whole = False
    if not whole:
        raise ValueError(f"{name}={cell!r} is not a (row, col) pair of integers") from None
    row, col = (int(v) for v in values)
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"{name}={cell!r} lies outside the {size}x{size} grid: rows and columns run from 0 to {size - 1}")
    return row, col


def check_cells(name: str, cells, size: int) -> np.ndarray:
    """Validate an array of (row, col) pairs of whole numbers, shape (n, 2)."""
    cells = np.asarray(check_integral(name, cells), dtype=np.int64)
    if cells.ndim != 2 or cells.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2) of (row, col) pairs, got shape {cells.shape}")
    if cells.size and (cells.min() < 0 or cells.max() >= size):
        raise ValueError(f"{name} has cells outside the {size}x{size} grid: rows and columns run from 0 to {size - 1}")
    return cells


class DarkGridEnv(gym.Env):
    """What the dark grid worlds share as gymnasium environments: a size x size grid observed as one
    cell id, the five moves, a horizon, and an optional RGB picture."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, size: int, horizon: int, render_mode: str | None):
        self.size = check_size(size)
        self.horizon = check_horizon(horizon)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported: use None or 'rgb_array'")
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Discrete(self.size * self.size)
        self.action_space = gym.spaces.Discrete(len(ACTION_NAMES))

    def _walk(self, action):
        """Make one move (into a wall: stay) and count the step; a step's reward and ending are each world's own."""
        if not self.action_space.contains(action):
            raise ValueError(f"action={action!r} is not one of the actions 0..{self.action_space.n - 1}")
        row, col = move(self.row, self.col, int(action), self.size)
        self.row, self.col = int(row), int(col)
        self.steps += 1


def move(row, col, action, size: int):
    """Apply actions to positions (scalars or arrays); moves into a wall leave the agent in place."""
    drow, dcol = MOVES[action, 0], MOVES[action, 1]
    return np.minimum(np.maximum(row + drow, 0), size - 1), np.minimum(np.maximum(col + dcol, 0), size - 1)


def cell_id(row, col, size: int):
    """The observed id of cells (row, col): scalars or arrays."""
    return row * size + col


# The scripted optimal move indexed by (sign of row offset + 1, sign of column offset + 1) to the target:
# vertical first, then horizontal, then noop on the target.
_TOWARDS = np.array([[UP, UP, UP], [LEFT, NOOP, RIGHT], [DOWN, DOWN, DOWN]])


def shortest_path_action(row, col, target_row, target_col):
    """The scripted optimal move towards a target: vertical first, then horizontal, then noop."""
    return _TOWARDS[np.sign(target_row - row) + 1, np.sign(target_col - col) + 1]


COLOURS = {
    "floor": (236, 236, 236), "wall": (70, 70, 70), "agent": (33, 102, 172),
    "goal": (77, 175, 74), "key": (255, 191, 0), "door": (152, 78, 163),
}


def draw_rgb(size: int, agent, marks: dict[str, tuple[int, int]], cell_px: int = 24) -> np.ndarray:
    """An RGB picture of the grid: marked cells (goal, key, door) as squares, the agent as a dot."""
    image = np.empty((size * cell_px, size * cell_px, 3), dtype=np.uint8)
    image[:] = COLOURS["floor"]
    image[::cell_px, :] = COLOURS["wall"]
    image[:, ::cell_px] = COLOURS["wall"]
    for name, (row, col) in marks.items():
        image[row * cell_px + 2:(row + 1) * cell_px - 1, col * cell_px + 2:(col + 1) * cell_px - 1] = COLOURS[name]
    yy, xx = np.mgrid[0:cell_px, 0:cell_px]
    dot = (yy - cell_px / 2) ** 2 + (xx - cell_px / 2) ** 2 <= (cell_px / 3) ** 2
    row, col = agent
    image[row * cell_px:(row + 1) * cell_px, col * cell_px:(col + 1) * cell_px][dot] = COLOURS["agent"]
    return image
