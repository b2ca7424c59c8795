"""What the batched environments share: gymnasium's VectorEnv API over a fast array core.

Each batched environment steps many tasks at once, one row per task, and has two faces:

* the array core the package's own loops call, with no per-step checks, infos or autoreset:

      reset_rows(mask=None, seed=None) -> observations     reset every row, or the rows where mask is True
      step_arrays(actions) -> (observations, rewards, terminated, truncated)
      optimal_actions() -> actions                          the scripted optimal policy (grid worlds)

* gymnasium's ``VectorEnv`` API on top of it, for any code written against gymnasium:
  ``reset(seed=, options=) -> (observations, infos)``, ``options={"reset_mask": mask}`` resetting only
  some rows, and ``step(actions) -> (observations, rewards, terminated, truncated, infos)`` with the
  autoreset mode declared in ``metadata["autoreset_mode"]`` (next-step by default, as gymnasium's own
  vector environments; 'same_step' and 'disabled' on request).

Tasks are given as an array (one row per task), or left out with ``num_envs`` given: then each row's
task is drawn from the environment's random generator at the first reset and at every seeded full
reset, and kept otherwise, as the single environments draw theirs. So
``gymnasium.make_vec("icrl_lab/DarkRoom-v0", num_envs=65, goals=goals)`` plays the given goals and
``gymnasium.make_vec("icrl_lab/DarkRoom-v0", num_envs=8)`` plays 8 goals drawn from the reset seed.
"""
from __future__ import annotations

import functools
import operator

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

AUTORESET_MODES = {mode.value: mode for mode in AutoresetMode}


def check_autoreset_mode(mode) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        raise ValueError(f"autoreset_mode={mode!r} is not one of {sorted(AUTORESET_MODES)}") from None


class BatchedEnv(gym.vector.VectorEnv):
    """Base of the batched environments. A subclass sets `num_actions`, `num_obs` and `render_modes`,
    and implements `check_tasks`, `_set_tasks`, `_draw_tasks`, `reset_rows`, `step_arrays` and
    `task_marks` (and `_frame` to render; `_tasks_array` if `_set_tasks` keeps no `_tasks`)."""

    render_modes: tuple = ()
    metric = "return"  # what an evaluation reports: each episode's return ("regret" for bandits)

    def _init_vector(self, tasks, num_envs, autoreset_mode, render_mode, settings: dict):
        """Shared construction: the tasks (or how many to draw), spaces, metadata and render mode."""
        self._settings = settings  # the keyword arguments besides the tasks, to build a copy
        self._draws_tasks = tasks is None
        if tasks is None:
            if num_envs is None:
                raise ValueError("give the tasks, or num_envs to draw that many at every seeded reset")
            if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
                raise ValueError(f"num_envs={num_envs!r} is not allowed: it must be an integer >= 1")
            self.num_envs = int(num_envs)
        else:
            tasks = self.check_tasks(tasks)
            if num_envs is not None and num_envs != len(tasks):
                raise ValueError(f"num_envs={num_envs!r} but {len(tasks)} tasks are given: pass num_envs={len(tasks)} "
                                 "(one environment per task)")
            self.num_envs = len(tasks)
            self._set_tasks(tasks)
        self._has_tasks = not self._draws_tasks
        if render_mode not in (None, *self.render_modes):
            raise ValueError(f"render_mode={render_mode!r} is not supported: use one of {[None, *self.render_modes]}")
        self.render_mode = render_mode
        self.metadata = {"autoreset_mode": check_autoreset_mode(autoreset_mode),
                         "render_modes": list(self.render_modes)}
        self.single_observation_space = gym.spaces.Discrete(self.num_obs)
        self.single_action_space = gym.spaces.Discrete(self.num_actions)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    # The batched spaces hold arrays of num_envs entries: built when first asked for, as the
    # package's own loops (hundreds of thousands of rows) never ask.
    @functools.cached_property
    def observation_space(self) -> gym.Space:
        return batch_space(self.single_observation_space, self.num_envs)

    @functools.cached_property
    def action_space(self) -> gym.Space:
        return batch_space(self.single_action_space, self.num_envs)

    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]

    @property
    def tasks(self) -> np.ndarray:
        """The task of every row, in the layout the constructor takes."""
        if not self._has_tasks:
            raise RuntimeError("the tasks are drawn at the first reset: call reset() first")
        return self._tasks_array()

    def _tasks_array(self) -> np.ndarray:
        return self._tasks

    def _seed(self, seed):
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(operator.index(seed))

    def _begin_reset(self, mask, seed):
        """Reseed; on a full reset also draw the tasks if they are drawn (every seeded one, and the first)."""
        self._seed(seed)
        if mask is None:
            if self._draws_tasks and (seed is not None or not self._has_tasks):
                self._set_tasks(self.check_tasks(self._draw_tasks(self.num_envs)))
                self._has_tasks = True
        elif not self._has_tasks:
            raise RuntimeError("reset every environment once before resetting some of them")

    # --- gymnasium's VectorEnv API --------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every environment, or with options={"reset_mask": mask} those where mask is True.
        Returns (observations, infos)."""
        mask = None
        if options and "reset_mask" in options:
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a numpy bool array of shape ({self.num_envs},), "
                                 f"got {mask!r}")
            if not mask.any():
                raise ValueError("options['reset_mask'] must be True for at least one environment")
        observations = self.reset_rows(mask, seed=seed)
        if mask is None:
            self._autoreset = np.zeros(self.num_envs, dtype=bool)
        else:
            self._autoreset = self._autoreset & ~mask
        return observations, {}

    def step(self, actions):
        """Step every environment: (observations, rewards, terminated, truncated, infos).

        next_step autoreset: an environment whose episode ended on the last step is reset now instead of
        stepped (reward 0, not terminated or truncated). same_step: it is reset within the step that ends
        its episode, the last observation given in infos["final_obs"]. disabled: reset it yourself with
        reset(options={"reset_mask": ...}) before stepping it again.
        """
        actions = np.asarray(actions)
        if (actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu"
                or (self.num_envs and (actions.min() < 0 or actions.max() >= self.num_actions))):
            raise ValueError(f"actions must be {self.num_envs} integers in 0..{self.num_actions - 1}, got {actions!r}")
        mode = self.autoreset_mode
        if mode == AutoresetMode.DISABLED and self._autoreset.any():
            raise ValueError(f"environments {np.flatnonzero(self._autoreset).tolist()} have ended their episodes: "
                             "reset them with reset(options={'reset_mask': mask}) before stepping them again")
        observations, rewards, terminated, truncated = self.step_arrays(actions)
        infos = {}
        if mode == AutoresetMode.NEXT_STEP:
            if self._autoreset.any():
                restarted = self._autoreset
                observations = self.reset_rows(restarted)
                rewards = np.where(restarted, 0, rewards).astype(rewards.dtype)
                terminated, truncated = terminated & ~restarted, truncated & ~restarted
        elif mode == AutoresetMode.SAME_STEP:
            done = terminated | truncated
            if done.any():
                final_obs = np.full(self.num_envs, None, dtype=object)
                final_obs[done] = list(observations[done])
                infos = {"final_obs": final_obs, "_final_obs": done, "final_info": {}, "_final_info": done.copy()}
                observations = self.reset_rows(done)
            return observations, rewards, terminated, truncated, infos
        self._autoreset = terminated | truncated
        return observations, rewards, terminated, truncated, infos

    def render(self):
        """One RGB picture per environment (render_mode 'rgb_array'), or None."""
        if self.render_mode == "rgb_array":
            return tuple(self._frame(i) for i in range(self.num_envs))
        return None

    # --- what a family knows about its tasks ----------------------------------------------------------

    def optimal_returns(self, seed: int = 0) -> np.ndarray:
        """Each task's return under the scripted optimal policy: one episode of every task, played on
        a fresh copy of this environment (its own state is left as it is)."""
        env = type(self)(self.tasks, **self._settings)
        env.reset_rows(seed=seed)
        total = np.zeros(env.num_envs)
        running = np.ones(env.num_envs, dtype=bool)
        while running.any():
            _, rewards, terminated, truncated = env.step_arrays(env.optimal_actions())
            total += rewards * running
            running &= ~(terminated | truncated)
        return total
