"""What a perfect fit of AD^eps Key-to-Door data would do: the Bayes-optimal prediction of its demonstrator.

The Key-to-Door demonstrator knows the task, a (key, door) pair: it heads for the key until it holds it,
then for the door, taking a random action with probability epsilon. Windows of the kit's recipe are cut
anywhere in long histories along which epsilon falls, so a window's epsilon is unknown, as at the paper's
pace in Dark Room (`bayes.UnknownNoiseBayesAgent`): the posterior is over (epsilon, key, door). Whether the
demonstrator holds the key is not observed; under each hypothesis it is known (the key's cell visited in
this episode), so each hypothesis says which way the demonstrator heads and which rewards it earns.

Two approximations, stated: epsilon is taken as constant within a window (in the recipe's 800-step
histories it falls by about 0.05 across a 160-step window); and for the oldest episode in a sliding window,
begun before it, whether the key was held comes from that episode's start, which the window no longer shows
(an episode is at most 40 steps, so every other episode, the current one included, lies wholly inside).
"""
from __future__ import annotations

import numpy as np

from ..envs import make_batched
from ..histories import within_last
from .bayes import (along_histories, check_decoding, checked_levels, decide, demonstrator_moves, landed_cells,
                    normalized, play_fit)


def mark_reached(reached: np.ndarray, next_cells: np.ndarray, done) -> None:
    """Update (envs, cells) `reached`, the cells each env has moved onto in its episode (on a key's cell, that
    key is held): add the cell just moved onto; an episode that has ended starts the next with none."""
    reached[np.arange(len(next_cells)), next_cells] = True
    reached[np.asarray(done, dtype=bool)] = False


class KeyToDoorBayesAgent:
    """Acts on the posterior predictive of an epsilon-greedy Key-to-Door demonstrator from the last
    `window_steps - 1` steps and the current cell, greedily or by sampling.

    epsilons, weights: the levels epsilon may take and their prior (`bayes.epsilon_levels`)."""

    def __init__(self, env, epsilons, weights, window_steps: int, decoding: str = "greedy", seed: int = 0):
        check_decoding(decoding)
        epsilons, weights = checked_levels(epsilons, weights)
        self.env, self.decoding, self.rng, self.window = env, decoding, np.random.default_rng(seed), window_steps
        self.epsilons, self.log_weights = epsilons, np.log(weights)
        # Per level, the log-probability of an action that heads for the target and of one that does not.
        actions = env.num_actions
        self.log_towards = np.log(epsilons / actions + 1 - epsilons)[:, None, None]
        self.log_astray = np.log(epsilons / actions)[:, None, None]
        self.moves = demonstrator_moves(env.size)  # (cells, targets)
        cells = env.num_obs
        self.same_cell = np.eye(cells, dtype=bool)  # hypotheses with the key on the door's cell are never true
        # Sums over the window, kept as it slides: each step's log-likelihood per (epsilon, key, door), and how
        # many rewards (seen or not) each (key, door) fails to explain (any one rules the pair out).
        self.log_likelihood = np.zeros((env.num_envs, len(epsilons), cells, cells))
        self.unexplained = np.zeros((env.num_envs, cells, cells), dtype=np.int64)
        self.holds_key = np.zeros((env.num_envs, cells), dtype=bool)  # per key cell: visited in this episode
        self.past = []  # per step: what `step_evidence` needs to recompute it when the window drops it

    def headings(self, cells: np.ndarray, holds_key: np.ndarray) -> np.ndarray:
        """(envs, keys, doors): the demonstrator's move from each env's cell under each (key, door)."""
        towards = self.moves[cells]  # (envs, targets)
        return np.where(holds_key[:, :, None], towards[:, None, :], towards[:, :, None])

    def step_evidence(self, cells, actions, holds_key, rewards, next_cells):
        """One step's log-likelihood (envs, epsilons, keys, doors) and unexplained rewards (envs, keys, doors)."""
        heads = self.headings(cells, holds_key) == actions[:, None, None]
        log_likelihood = np.where(heads[:, None], self.log_towards, self.log_astray)
        arrived = next_cells[:, None] == np.arange(self.env.num_obs)  # (envs, cells)
        earned = (arrived & ~holds_key)[:, :, None] | (holds_key[:, :, None] & arrived[:, None, :])
        return log_likelihood, earned != (rewards > 0)[:, None, None]

    def posterior(self) -> np.ndarray:
        """(envs, epsilons, keys, doors): the posterior given the window."""
        ruled_out = (self.unexplained > 0) | self.same_cell
        log_joint = np.where(ruled_out[:, None], -np.inf, self.log_weights[None, :, None, None] + self.log_likelihood)
        return normalized(log_joint.reshape(len(log_joint), -1)).reshape(log_joint.shape)

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        """(envs, actions): the predicted distribution of the demonstrator's next action."""
        posterior = self.posterior()
        at_random = (posterior.sum(axis=(2, 3)) @ self.epsilons)[:, None] / self.env.num_actions
        directed = np.einsum("ekcd,k->ecd", posterior, 1 - self.epsilons)
        heads = self.headings(observations, self.holds_key)
        return at_random + np.stack([(directed * (heads == action)).sum(axis=(1, 2))
                                     for action in range(self.env.num_actions)], axis=1)

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.cells = np.asarray(observations)
        return decide(self.probabilities(self.cells), self.decoding, self.rng)

    def observe(self, actions, rewards, done, next_observations):
        step = (self.cells, np.asarray(actions), self.holds_key.copy(), np.asarray(rewards), np.asarray(next_observations))
        log_likelihood, unexplained = self.step_evidence(*step)
        self.log_likelihood += log_likelihood
        self.unexplained += unexplained
        self.past.append(step)
        if len(self.past) > self.window - 1:
            log_likelihood, unexplained = self.step_evidence(*self.past.pop(0))
            self.log_likelihood -= log_likelihood
            self.unexplained -= unexplained
        mark_reached(self.holds_key, step[4], done)


def key_to_door_bayes_rollout(tasks, epsilons, weights, window_steps: int, episodes: int, decoding: str = "greedy",
                              seed: int = 0, env_kwargs: dict | None = None):
    """Play `KeyToDoorBayesAgent` on Key-to-Door `tasks` for `episodes` episodes, its context carried across
    them. Returns (frame, histories)."""
    return play_fit("DarkKeyToDoor", tasks,
                    lambda env: KeyToDoorBayesAgent(env, epsilons, weights, window_steps, decoding, seed),
                    "key_to_door_bayes_demonstrator", decoding, episodes, seed, env_kwargs)


def key_to_door_action_probabilities(histories, epsilons, weights, window_steps: int, holds_key=None) -> np.ndarray:
    """(histories, steps, actions): `KeyToDoorBayesAgent`'s prediction of each step's action from the steps
    before it in its window (the last `window_steps - 1`), along Key-to-Door `histories` as they were played:
    what a perfect fit of the recipe's data predicts there, to set beside a model's prediction on the same
    histories (`bayes.prediction_gap`, with `key_to_door_parts`). holds_key: for histories cut from longer
    ones, (histories, cells) the cells reached in the episode under way where each begins (`cells_reached`
    at the cut); by default none, as where a history begins with its episode."""
    def make_agent(env):
        agent = KeyToDoorBayesAgent(env, epsilons, weights, window_steps)
        if holds_key is not None:
            agent.holds_key = np.array(holds_key, dtype=bool)
        return agent
    return along_histories("DarkKeyToDoor", make_agent, histories)


def cells_reached(histories) -> np.ndarray:
    """(histories, steps, cells) bools: the cells each Key-to-Door history has moved onto in its episode before
    each step, which is what `KeyToDoorBayesAgent` takes to say whether a key on that cell is held. Cut a history
    at a step, and its fit starts from this state there (`key_to_door_action_probabilities(holds_key=...)`)."""
    env = make_batched("DarkKeyToDoor", histories.tasks[:1], **histories.metadata.get("env_kwargs", {}))
    next_cells = landed_cells(histories, env.size)
    reached = np.zeros(histories.observations.shape + (env.num_obs,), dtype=bool)
    state = np.zeros((histories.num_histories, env.num_obs), dtype=bool)
    for step in range(histories.num_steps):
        reached[:, step] = state
        mark_reached(state, next_cells[:, step], histories.dones[:, step])
    return reached


def key_to_door_parts(histories, window_steps: int) -> dict:
    """(histories, steps) masks of what each step of Key-to-Door `histories` is for: seeking the key (no reward
    yet in its episode); seeking the door while the window before it (the last `window_steps - 1` steps) shows no
    door opened, so the door must be searched for; seeking it while the window shows one; and all steps."""
    rewards, dones = histories.rewards > 0, histories.dones.astype(bool)
    earned = np.cumsum(rewards, axis=1) - rewards  # rewards before each step, in the whole history
    starts = np.concatenate([np.ones_like(dones[:, :1]), dones[:, :-1]], axis=1)
    first_of_episode = np.maximum.accumulate(np.where(starts, np.arange(dones.shape[1]), 0), axis=1)
    holds_key = (earned - np.take_along_axis(earned, first_of_episode, axis=1)) > 0
    opened = rewards & holds_key
    opened_before = np.concatenate([np.zeros_like(opened[:, :1]), opened[:, :-1]], axis=1)  # opened at the step before
    door_in_window = within_last(opened_before, window_steps - 1)  # a door opened in the last window_steps - 1 steps
    return {"seeking_key": ~holds_key, "seeking_door_none_in_window": holds_key & ~door_in_window,
            "seeking_door_one_in_window": holds_key & door_in_window, "all": np.ones_like(holds_key)}
