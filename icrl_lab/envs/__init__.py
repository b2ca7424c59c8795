"""Environments for in-context RL: each task family as a gymnasium environment and as a batched array form.

After ``import icrl_lab``, ``gymnasium.make("icrl_lab/DarkRoom-v0", goal=(r, c))`` and friends work.

The batched forms step many tasks at once and are what collection and evaluation use. They are
gymnasium VectorEnvs, registered as each id's vector entry point, so ``gymnasium.make_vec`` returns
them (it prefers the vector entry point unless told vectorization_mode="sync" or "async"):

    gymnasium.make_vec("icrl_lab/DarkRoom-v0", num_envs=65, goals=dark_room_goals("train"))
    gymnasium.make_vec("icrl_lab/DarkKeyToDoor-v0", num_envs=50, tasks=key_to_door_tasks("test"))
    gymnasium.make_vec("icrl_lab/BernoulliBandit-v0", num_envs=100, means=bandit_tasks(100))
    gymnasium.make_vec("icrl_lab/DarkRoom-v0", num_envs=8)   # 8 goals drawn at every seeded reset

Given tasks need num_envs equal to their number. See icrl_lab.envs.vector for the two APIs they offer.
"""
from __future__ import annotations

import gymnasium as gym

from .bandit import BatchedBernoulliBandit, BernoulliBanditEnv
from .dark_room import BatchedDarkRoom, DarkRoomEnv
from .grid import ACTION_NAMES
from .key_to_door import BatchedDarkKeyToDoor, DarkKeyToDoorEnv
from .tasks import bandit_tasks, dark_room_goals, key_to_door_tasks, task_split
from .vector import BatchedEnv

# family name -> (gymnasium environment, batched environment)
FAMILIES = {
    "DarkRoom": (DarkRoomEnv, BatchedDarkRoom),
    "DarkKeyToDoor": (DarkKeyToDoorEnv, BatchedDarkKeyToDoor),
    "BernoulliBandit": (BernoulliBanditEnv, BatchedBernoulliBandit),
}

# Registered ids: family and the keyword arguments of each variant (AD^eps paper, appendix).
VARIANTS = {
    "DarkRoom-v0": ("DarkRoom", {}),
    "DarkRoomSmall-v0": ("DarkRoom", {"size": 3, "horizon": 5}),
    "DarkRoomMedium-v0": ("DarkRoom", {"size": 5, "horizon": 20}),
    "DarkRoomHard-v0": ("DarkRoom", {"size": 17, "horizon": 20, "terminate_on_goal": True}),
    "DarkKeyToDoor-v0": ("DarkKeyToDoor", {}),
    "BernoulliBandit-v0": ("BernoulliBandit", {}),
}


def make_batched(family: str, tasks, **kwargs):
    """The batched environment of a family ('DarkRoom', 'DarkKeyToDoor', 'BernoulliBandit') over a task array."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[family][1](tasks, **kwargs)


def token_sizes(family: str, tasks, **kwargs) -> dict:
    """What a sequence model needs to know of a family's steps: how many observations and actions there
    are, and for grids the (rows, columns) digits of a cell id."""
    env = make_batched(family, tasks[:1], **kwargs)
    size = getattr(env, "size", None)
    return {"num_obs": env.num_obs, "num_actions": env.num_actions, "obs_factors": (size, size) if size else ()}


def _register():
    for env_id, (family, kwargs) in VARIANTS.items():
        if f"icrl_lab/{env_id}" not in gym.registry:
            env_class, vector_class = FAMILIES[family]
            gym.register(id=f"icrl_lab/{env_id}", entry_point=f"{env_class.__module__}:{env_class.__name__}",
                         vector_entry_point=f"{vector_class.__module__}:{vector_class.__name__}", kwargs=kwargs)


_register()

__all__ = [
    "ACTION_NAMES", "FAMILIES", "VARIANTS", "make_batched", "token_sizes", "BatchedEnv",
    "DarkRoomEnv", "BatchedDarkRoom", "DarkKeyToDoorEnv", "BatchedDarkKeyToDoor",
    "BernoulliBanditEnv", "BatchedBernoulliBandit",
    "dark_room_goals", "key_to_door_tasks", "bandit_tasks", "task_split",
]
