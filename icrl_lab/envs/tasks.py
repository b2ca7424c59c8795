"""Task sets: the papers' train / held-out splits, and random bandit tasks.

Each function returns a task array in the layout its batched environment takes.
"""
from __future__ import annotations

import numpy as np

from .grid import check_size

SPLITS = ("train", "test", "all")
# Held out of the training split, for choosing among checkpoints without looking at the test tasks:
# "validation" is a fixed share of the training tasks (8 of Dark Room's 65 goals, 50 of Key-to-Door's 1000)
# and "fit" the rest, the tasks a recipe that chooses on validation collects its histories on.
TRAINING_SUBSETS = ("fit", "validation")
VALIDATION_SHARE = {"DarkRoom": 8 / 65, "DarkKeyToDoor": 50 / 1000}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    return split


def dark_room_goals(split: str = "train", size: int = 9, seed: int = 42, n_train: int | None = None) -> np.ndarray:
    """Goal cells (row, col), shape (n, 2). All cells are permuted with `seed`; AD^eps's 9x9 split is 65 / 16."""
    _check_split(split)
    n_cells = check_size(size) ** 2
    n_train = round(n_cells * 65 / 81) if n_train is None else n_train
    if not 1 <= n_train < n_cells:
        raise ValueError(f"n_train={n_train} is not allowed: it must be between 1 and {n_cells - 1} for a {size}x{size} grid")
    order = np.random.default_rng(seed).permutation(n_cells)
    cells = {"train": order[:n_train], "test": order[n_train:], "all": np.arange(n_cells)}[split]
    return np.stack(np.divmod(cells, size), axis=1)


def key_to_door_tasks(split: str = "train", size: int = 9, seed: int = 42,
                      n_train: int = 1000, n_test: int = 50) -> np.ndarray:
    """(key_row, key_col, door_row, door_col) tasks, shape (n, 4): ordered key != door pairs permuted with `seed`."""
    _check_split(split)
    n_cells = check_size(size) ** 2
    key, door = np.divmod(np.arange(n_cells * n_cells), n_cells)
    pairs = np.stack([key, door], axis=1)[key != door]
    if n_train < 1 or n_test < 1 or n_train + n_test > len(pairs):
        raise ValueError(f"n_train={n_train}, n_test={n_test}: both must be >= 1 and together at most {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    chosen = {"train": order[:n_train], "test": order[n_train:n_train + n_test], "all": np.arange(len(pairs))}[split]
    key, door = pairs[chosen, 0], pairs[chosen, 1]
    return np.concatenate([np.stack(np.divmod(key, size), 1), np.stack(np.divmod(door, size), 1)], axis=1)


def bandit_tasks(n: int, k: int = 5, seed: int = 0) -> np.ndarray:
    """Arm means drawn uniformly in [0, 1], shape (n, k), as in DPT."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: ask for at least 1 task")
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k={k!r} is not allowed: a bandit needs k >= 2 arms")
    return np.random.default_rng(seed).random((n, k))


def task_split(family: str, split: str = "train", num_tasks: int = 100, seed: int = 0, size: int = 9) -> np.ndarray:
    """The tasks of a family's split: the papers' splits for the grids (`size` for Dark Room), and for
    bandits `num_tasks` arm-mean vectors drawn with seed + 0 (train), + 1 (test) or + 2 (all).
    "fit" and "validation" divide a grid's training split (TRAINING_SUBSETS); for bandits they are fresh
    draws (seed + 3, + 4)."""
    if split not in SPLITS + TRAINING_SUBSETS:
        raise ValueError(f"split={split!r} is not one of {SPLITS + TRAINING_SUBSETS}")
    if split in TRAINING_SUBSETS and family in VALIDATION_SHARE:
        train = task_split(family, "train", size=size)
        order = np.random.default_rng(7).permutation(len(train))
        count = max(1, round(len(train) * VALIDATION_SHARE[family]))
        return train[order[:count]] if split == "validation" else train[order[count:]]
    if family == "DarkRoom":
        return dark_room_goals(split, size=size)
    if family == "DarkKeyToDoor":
        return key_to_door_tasks(split)
    if family == "BernoulliBandit":
        return bandit_tasks(num_tasks, seed=seed + (SPLITS + TRAINING_SUBSETS).index(split))
    raise ValueError(f"family={family!r} is not one of 'DarkRoom', 'DarkKeyToDoor', 'BernoulliBandit'")
