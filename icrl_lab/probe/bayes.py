"""What a perfect fit of AD^eps Dark Room data would do: the Bayes-optimal prediction of its demonstrator.

AD trained on AD^eps histories learns to predict the next action of a demonstrator that knows the goal
and acts epsilon-greedily, epsilon falling along the history. The lowest loss any model can reach is the
posterior predictive: weigh every goal by how well it explains the context (the rewards seen and not seen,
and the demonstrator's moves, each more likely when it heads toward that goal) and mix the demonstrator's
action distributions under those weights. `BayesDemonstratorAgent` acts on that prediction, greedily (the
adeps protocol) or by sampling, with the window a model has, so that what a trained model does in context
can be set beside what its training loss rewards.

Two assumptions, stated: the goal's prior is uniform over the room's cells (a model that generalizes to
unseen goals, rather than one that knows its training goals; `goal_prior` makes the other one, the best
prediction of the training data itself, with its goals' cells as the prior), and the demonstrator's
epsilon at each position of the window is the schedule's at that step of a history, as for a window that
starts where its history starts (the whole-history recipe's windows do; at test the window slides, and a
model that reads positions as the history's steps takes its last 400 steps for a history from its start,
as this agent does).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..envs import make_batched
from ..envs.grid import cell_id, move, shortest_path_action
from ..evaluate import DECODINGS, in_context_rollout, play
from ..histories import model_inputs


def demonstrator_moves(size: int) -> np.ndarray:
    """(cells, goals): the scripted demonstrator's move from each cell toward each goal."""
    row, col = np.divmod(np.arange(size * size), size)
    return shortest_path_action(row[:, None], col[:, None], row[None, :], col[None, :])


def action_likelihood(moves, cells, actions, epsilon, num_actions: int) -> np.ndarray:
    """(..., goals): the probability of each step's action under each goal, the demonstrator moving toward
    it with probability 1 - epsilon and uniformly at random otherwise."""
    towards = moves[cells] == actions[..., None]
    return epsilon[..., None] / num_actions + (1 - epsilon[..., None]) * towards


def rewards_explained(next_cells, rewards, num_goals: int) -> np.ndarray:
    """(..., goals): whether each goal explains each step's reward, seen exactly on the steps that end on it."""
    return (next_cells[..., None] == np.arange(num_goals)) == (rewards[..., None] > 0)


def goal_prior(goals, size: int, elsewhere: float = 1e-6) -> np.ndarray:
    """(cells,): a prior over goal cells, uniform over `goals` ((n, 2) rows and columns, e.g. the training
    goals) with the share `elsewhere` spread over every cell, so that a goal outside them can still be
    found (with nothing elsewhere, a reward there would rule out every goal)."""
    goals = np.asarray(goals)
    if not 0 < elsewhere <= 1:
        raise ValueError(f"elsewhere={elsewhere!r} is not allowed: it must be in (0, 1] (some mass on every cell)")
    prior = np.full(size * size, elsewhere / (size * size))
    np.add.at(prior, goals[:, 0] * size + goals[:, 1], (1 - elsewhere) / len(goals))
    return prior


def log_prior(prior, num_cells: int) -> np.ndarray:
    """The log of a goal prior over `num_cells` cells (uniform when None), refusing one that is not a distribution
    with mass on every cell."""
    if prior is None:
        return np.zeros(num_cells)
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (num_cells,) or not (prior > 0).all() or not np.isclose(prior.sum(), 1):
        raise ValueError(f"goal_prior must hold {num_cells} positive probabilities summing to 1, one per cell "
                         f"(make one with goal_prior(goals, size)); got shape {prior.shape}")
    return np.log(prior)


def normalized(log_weights: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis from unnormalized log-weights (-inf for ruled-out goals)."""
    weights = np.exp(log_weights - log_weights.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def draw_actions(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action drawn from each distribution of a (..., actions) array of probabilities."""
    drawn = (probabilities.cumsum(axis=-1) < rng.random(probabilities.shape[:-1] + (1,))).sum(axis=-1)
    return drawn.clip(max=probabilities.shape[-1] - 1)


def check_decoding(decoding: str) -> None:
    if decoding not in ("greedy", "sample"):
        raise ValueError(f"decoding={decoding!r} is not allowed here: it must be 'greedy' or 'sample' "
                         f"(the model's other decodings, {DECODINGS}, are rules on top of its prediction)")


def checked_levels(epsilons, weights) -> tuple[np.ndarray, np.ndarray]:
    """The levels a window's unknown epsilon may take and their prior, as float arrays, refusing any that are not
    levels in (0, 1] with positive probabilities summing to 1 (`epsilon_levels` makes them). A level of 0 is
    refused: one move off the demonstrator's path would rule a hypothesis out for good, and a sliding window
    could not forget it (give a small level such as 1e-3 instead)."""
    epsilons, weights = np.asarray(epsilons, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if epsilons.ndim != 1 or weights.shape != epsilons.shape or not ((epsilons > 0) & (epsilons <= 1)).all() \
            or not (weights > 0).all() or not np.isclose(weights.sum(), 1):
        raise ValueError(f"epsilons must be levels in (0, 1] and weights positive probabilities summing to 1, "
                         f"one per level (make them with epsilon_levels, from a floor above 0); got "
                         f"{epsilons.tolist()} and {weights.tolist()}")
    return epsilons, weights


def decide(probabilities: np.ndarray, decoding: str, rng: np.random.Generator) -> np.ndarray:
    """One action per row of (envs, actions) probabilities: the most probable (exact ties, as from the centre
    of an empty room, broken at random) or one drawn."""
    if decoding == "sample":
        return draw_actions(probabilities, rng)
    best = probabilities >= probabilities.max(axis=1, keepdims=True) - 1e-12
    return np.argmax(best * rng.random(best.shape), axis=1)


class BayesDemonstratorAgent:
    """Acts on the posterior predictive of an epsilon-greedy demonstrator of the Dark Room's scripted optimal
    policy, from the last `window_steps - 1` steps and the current cell (a model's window).

    epsilon: the demonstrator's epsilon at each position of a window (at least `window_steps` values).
    goal_prior: probabilities over the room's cells (`goal_prior`); None: uniform.
    decoding: "greedy" (the most probable action; exact ties, as from the centre of an empty room, broken at
    random) or "sample"."""

    def __init__(self, env, epsilon, window_steps: int, decoding: str = "greedy", seed: int = 0, goal_prior=None):
        check_decoding(decoding)
        epsilon = np.asarray(epsilon, dtype=np.float64)
        if epsilon.ndim != 1 or len(epsilon) < window_steps or not ((epsilon >= 0) & (epsilon <= 1)).all():
            raise ValueError(f"epsilon must hold at least window_steps={window_steps} values in [0, 1], one per "
                             f"position of the window; got shape {epsilon.shape}")
        self.env, self.decoding, self.rng = env, decoding, np.random.default_rng(seed)
        self.epsilon, self.window = epsilon[:window_steps], window_steps
        self.moves = demonstrator_moves(env.size)
        self.log_prior = log_prior(goal_prior, env.num_obs)
        self.past = []  # per step: (cells, actions, rewards, next cells), each (num_envs,)

    def log_posterior(self) -> np.ndarray:
        """(num_envs, cells): the log posterior over goal cells given the window's steps (unnormalized)."""
        if not self.past:
            return np.broadcast_to(self.log_prior, (self.env.num_envs, self.env.num_obs))
        # Summed afresh at every step: once the window slides, each step's position, and so its epsilon, moves.
        cells, actions, rewards, next_cells = (np.stack(a, axis=1) for a in zip(*self.past))  # (envs, steps)
        epsilon = np.broadcast_to(self.epsilon[:cells.shape[1]], cells.shape)
        likelihood = action_likelihood(self.moves, cells, actions, epsilon, self.env.num_actions)
        explained = rewards_explained(next_cells, rewards, self.env.num_obs)
        return self.log_prior + np.where(explained, np.log(likelihood), -np.inf).sum(axis=1)

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        """(num_envs, actions): the predicted distribution of the demonstrator's next action."""
        posterior = normalized(self.log_posterior())
        epsilon = self.epsilon[len(self.past)]
        towards = self.moves[observations][..., None] == np.arange(self.env.num_actions)  # (envs, goals, actions)
        return epsilon / self.env.num_actions + (1 - epsilon) * np.einsum("eg,ega->ea", posterior, towards)

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.cells = np.asarray(observations)  # where these actions are taken, for observe
        return decide(self.probabilities(observations), self.decoding, self.rng)

    def observe(self, actions, rewards, done, next_observations):
        self.past.append((self.cells, np.asarray(actions), np.asarray(rewards), np.asarray(next_observations)))
        if len(self.past) > self.window - 1:
            self.past.pop(0)


def play_fit(family: str, tasks, make_agent, name: str, decoding: str, episodes: int, seed: int,
             env_kwargs: dict | None):
    """Play the agent that `make_agent` builds for a batched `family` environment of `tasks` for `episodes`
    episodes, its context carried across them, recording it as the source `name`. Returns (frame, histories)."""
    env = make_batched(family, np.asarray(tasks), **(env_kwargs or {}))
    return play(env, make_agent(env), episodes, seed,
                metadata={"env_family": family, "env_kwargs": env_kwargs or {}, "source": {"name": name, "mode": decoding}})


def bayes_rollout(tasks, epsilon, window_steps: int, episodes: int, decoding: str = "greedy", seed: int = 0,
                  env_kwargs: dict | None = None, goal_prior=None):
    """Play the Bayes-optimal predictor on Dark Room `tasks` for `episodes` episodes, its context carried
    across them (as `evaluate.in_context_rollout` plays a model). Returns (frame, histories)."""
    return play_fit("DarkRoom", tasks, lambda env: BayesDemonstratorAgent(env, epsilon, window_steps, decoding, seed,
                                                                      goal_prior),
                    "bayes_demonstrator", decoding, episodes, seed, env_kwargs)


class UnknownNoiseBayesAgent:
    """A perfect fit of windows cut anywhere in long AD^eps histories (the paper's pace, where epsilon falls so
    slowly that it is all but constant within a window): a window's epsilon is unknown, so the posterior is over
    (epsilon, goal) pairs, epsilon on a grid of `epsilons` with prior `weights` (`epsilon_levels`: as often as
    the schedule spends at each level), the goal uniform. Acts on the posterior predictive of the last
    `window_steps - 1` steps and the current cell, greedily or by sampling. A context of consistent moves makes
    a low epsilon likely, and with it the moves' evidence of the goal: acting greedily, the agent takes its
    own moves for a nearly greedy demonstrator's."""

    def __init__(self, env, epsilons, weights, window_steps: int, decoding: str = "greedy", seed: int = 0):
        check_decoding(decoding)
        epsilons, weights = checked_levels(epsilons, weights)
        self.env, self.decoding, self.rng, self.window = env, decoding, np.random.default_rng(seed), window_steps
        self.epsilons, self.log_weights = epsilons, np.log(weights)
        self.moves = demonstrator_moves(env.size)
        shape = (env.num_envs, len(epsilons), env.num_obs)
        # Sums over the window, kept as it slides: each step's log-likelihood per (epsilon, goal), and how many
        # of its rewards (seen or not) each goal fails to explain (any one rules the goal out).
        self.log_likelihood, self.unexplained = np.zeros(shape), np.zeros(shape[::2], dtype=np.int64)
        self.past = []

    def posterior(self) -> np.ndarray:
        """(envs, epsilons, goals): the posterior over (epsilon, goal) pairs given the window."""
        log_joint = np.where(self.unexplained[:, None, :] > 0, -np.inf, self.log_weights[None, :, None] + self.log_likelihood)
        return normalized(log_joint.reshape(len(log_joint), -1)).reshape(log_joint.shape)

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        """(envs, actions): the predicted distribution of the demonstrator's next action."""
        posterior = self.posterior()
        towards = self.moves[observations][..., None] == np.arange(self.env.num_actions)  # (envs, goals, actions)
        at_random = (posterior.sum(axis=2) @ self.epsilons)[:, None] / self.env.num_actions
        return at_random + np.einsum("ekg,k,ega->ea", posterior, 1 - self.epsilons, towards)

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.cells = np.asarray(observations)
        return decide(self.probabilities(observations), self.decoding, self.rng)

    def observe(self, actions, rewards, done, next_observations):
        epsilon = np.broadcast_to(self.epsilons, (len(self.cells), len(self.epsilons)))
        likelihood = action_likelihood(self.moves, self.cells[:, None], np.asarray(actions)[:, None], epsilon,
                                       self.env.num_actions)
        unexplained = ~rewards_explained(np.asarray(next_observations), np.asarray(rewards), self.env.num_obs)
        step = (np.log(likelihood), unexplained.astype(np.int64))
        self.past.append(step)
        self.log_likelihood += step[0]
        self.unexplained += step[1]
        if len(self.past) > self.window - 1:
            dropped = self.past.pop(0)
            self.log_likelihood -= dropped[0]
            self.unexplained -= dropped[1]


def epsilon_levels(schedule, num_steps: int, levels: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """(epsilons, weights): `levels` evenly spaced values from the schedule's floor to its start, each weighted by the
    share of a `num_steps`-step history whose epsilon lies nearest to it (every level kept, however rare)."""
    epsilons = np.linspace(schedule.floor, schedule.start, levels)
    spent = schedule.values(num_steps)
    counts = np.bincount(np.abs(spent[:, None] - epsilons[None, :]).argmin(axis=1), minlength=levels) + 1e-9
    return epsilons, counts / counts.sum()


def unknown_noise_bayes_rollout(tasks, epsilons, weights, window_steps: int, episodes: int, decoding: str = "greedy",
                                seed: int = 0, env_kwargs: dict | None = None):
    """Play `UnknownNoiseBayesAgent` on Dark Room `tasks` for `episodes` episodes, its context carried across
    them. Returns (frame, histories)."""
    return play_fit("DarkRoom", tasks, lambda env: UnknownNoiseBayesAgent(env, epsilons, weights, window_steps, decoding,
                                                                      seed),
                    "unknown_noise_bayes_demonstrator", decoding, episodes, seed, env_kwargs)


def unknown_noise_action_probabilities(histories, epsilons, weights, window_steps: int) -> np.ndarray:
    """(histories, steps, actions): `UnknownNoiseBayesAgent`'s prediction of each step's action from the
    steps before it in its window (the last `window_steps - 1`), along Dark Room `histories` as they were
    played: what a perfect fit of data at the paper's pace predicts there, to set beside a sliding-window
    model's prediction on the same histories."""
    return along_histories("DarkRoom", lambda env: UnknownNoiseBayesAgent(env, epsilons, weights, window_steps),
                           histories)


def landed_cells(histories, size: int) -> np.ndarray:
    """(histories, steps): the cell each recorded step's move lands on in a `size` x `size` grid, also where an
    episode ends (where the recorded next observation is already the next episode's start)."""
    cells, actions = histories.observations.astype(np.int64), histories.actions.astype(np.int64)
    return cell_id(*move(*np.divmod(cells, size), actions, size), size)


def along_histories(family: str, make_agent, histories) -> np.ndarray:
    """(histories, steps, actions): the prediction of the agent that `make_agent` builds for a batched `family`
    grid of the histories' tasks, at each step of `histories`, fed their steps as they were played rather than
    its own moves."""
    env = make_batched(family, histories.tasks, **histories.metadata.get("env_kwargs", {}))
    agent = make_agent(env)
    cells, actions = histories.observations.astype(np.int64), histories.actions.astype(np.int64)
    next_cells = landed_cells(histories, env.size)
    predicted = np.empty(cells.shape + (env.num_actions,))
    for step in range(histories.num_steps):
        predicted[:, step] = agent.probabilities(cells[:, step])
        agent.cells = cells[:, step]
        agent.observe(actions[:, step], histories.rewards[:, step], histories.dones[:, step], next_cells[:, step])
    return predicted


def bayes_action_probabilities(histories, goal_prior=None) -> np.ndarray:
    """(histories, steps, actions): the posterior predictive of each step's action given the earlier steps of
    its history (the whole history as the window, its recorded epsilon at each step): what a perfect fit
    predicts, to set beside a trained model's on the same histories. goal_prior: as for
    `BayesDemonstratorAgent`."""
    env = make_batched("DarkRoom", histories.tasks[:1], **histories.metadata.get("env_kwargs", {}))
    if histories.epsilon is None:
        raise ValueError("these histories hold no per-step epsilon: the posterior needs the demonstrator's "
                         "noise at each step (collect them with curricula.collect_noise_distillation, or give a "
                         "model's own rollout its window's epsilon with greedy_contexts)")
    cells, actions = histories.observations.astype(np.int64), histories.actions.astype(np.int64)
    next_cells = landed_cells(histories, env.size)
    moves, epsilon = demonstrator_moves(env.size), histories.epsilon.astype(np.float64)
    likelihood = action_likelihood(moves, cells, actions, epsilon, env.num_actions)
    evidence = np.where(rewards_explained(next_cells, histories.rewards, env.num_obs), np.log(likelihood), -np.inf)
    before = np.concatenate([np.zeros_like(evidence[:, :1]), np.cumsum(evidence, axis=1)[:, :-1]], axis=1)
    posterior = normalized(before + log_prior(goal_prior, env.num_obs))
    towards = np.stack([(posterior * (moves[cells] == action)).sum(axis=2) for action in range(env.num_actions)], -1)
    return epsilon[..., None] / env.num_actions + (1 - epsilon[..., None]) * towards


def bayes_action_log_probs(histories, goal_prior=None) -> np.ndarray:
    """(histories, steps): the log-probability of each recorded action under the posterior predictive
    (`bayes_action_probabilities`): the per-step loss of a perfect fit."""
    probabilities = bayes_action_probabilities(histories, goal_prior)
    return np.log(np.take_along_axis(probabilities, histories.actions.astype(np.int64)[..., None], -1)[..., 0])


def model_action_log_probs(model, histories, whole_history: bool = True) -> np.ndarray:
    """(histories, steps, actions): a model's predicted log-probabilities at every step of `histories`. A
    whole-history model reads each as one window (at most the model's window long); with whole_history=False,
    a history may be longer, each step seeing the window before it (as a sliding-window model acts)."""
    if whole_history and histories.num_steps > model.config.window_steps:
        raise ValueError(f"histories of {histories.num_steps} steps do not fit the model's window of "
                         f"{model.config.window_steps}: cut them to at most that many steps")
    with torch.no_grad():
        logits = model(*model_inputs(histories, model.config.num_actions, next(model.parameters()).device)).float()
    return torch.log_softmax(logits, -1).cpu().numpy()


def first_reward_parts(histories) -> dict:
    """(histories, steps) masks: the steps before a history's first reward (where exploring is decided),
    after it, and all."""
    before = (np.cumsum(histories.rewards, axis=1) - histories.rewards) == 0  # no reward yet in this history
    return {"before_first_reward": before, "after": ~before, "all": np.ones_like(before)}


def part_means(parts: dict, per_step: dict) -> dict:
    """Means of (histories, steps) arrays over each part's steps (`parts`: masks by name), with each part's
    share of the steps."""
    return {part: {**{name: float(values[steps].mean()) if steps.any() else float("nan")
                      for name, values in per_step.items()}, "share_of_steps": float(steps.mean())}
            for part, steps in parts.items()}


def loss_against_bayes(model, histories, goal_priors: dict | None = None) -> dict:
    """A whole-history model's loss per step on AD^eps Dark Room `histories` (one window each: at most the
    model's window long) beside perfect fits' and uniform guessing's, over the steps before a history's
    first reward (where exploring is decided) and after it: nats per step, and the steps' share.
    goal_priors: the perfect fits to put beside the model, by name, each with its goal prior (see
    `BayesDemonstratorAgent`; None: uniform); by default one, "bayes", with a uniform prior. The model
    reads the histories once, however many fits there are."""
    goal_priors = {"bayes": None} if goal_priors is None else goal_priors
    taken = sorted({"model", "uniform", "share_of_steps"} & set(goal_priors))
    if taken:
        raise ValueError(f"goal_priors names {taken}, which the model's and uniform guessing's losses and the "
                         f"steps' share are called: name the perfect fits otherwise")
    log_probs = model_action_log_probs(model, histories)
    actions = histories.actions.astype(np.int64)[..., None]
    fits = {name: -bayes_action_log_probs(histories, prior) for name, prior in goal_priors.items()}
    return part_means(first_reward_parts(histories), {"model": -np.take_along_axis(log_probs, actions, -1)[..., 0],
                                                      **fits,
                                                      "uniform": np.full(actions.shape[:2],
                                                                         np.log(model.config.num_actions))})


def greedy_contexts(model, tasks, epsilon, seed: int = 0, env_kwargs: dict | None = None):
    """The contexts a whole-history model makes for itself: its greedy rollout on Dark Room `tasks` for one
    window (episodes filling `window_steps` steps), as histories carrying `epsilon` (the demonstrator's at
    each position of the window), so that a perfect fit can be asked about the same contexts
    (`compare_with_bayes`)."""
    window = model.config.window_steps
    env = make_batched("DarkRoom", np.asarray(tasks)[:1], **(env_kwargs or {}))
    if window % env.horizon:
        raise ValueError(f"the model's window of {window} steps is not a whole number of {env.horizon}-step "
                         f"episodes: greedy_contexts plays whole episodes")
    _, played = in_context_rollout(model, "DarkRoom", tasks, window // env.horizon, env_kwargs, "greedy", seed=seed)
    return with_window_epsilon(played, epsilon)


def with_window_epsilon(histories, epsilon):
    """`histories` of one window each (an agent's own rollout), carrying the demonstrator's `epsilon` at each
    position of the window, so that a perfect fit can read them as it reads the demonstrator's."""
    epsilon = np.asarray(epsilon, dtype=np.float32)[:histories.num_steps]
    return replace(histories, epsilon=np.broadcast_to(epsilon, histories.observations.shape).copy())


def compare_with_bayes(model, histories, goal_prior=None) -> dict:
    """How a whole-history model's prediction differs from a perfect fit's on the same contexts, before a
    history's first reward and after it: the Kullback-Leibler divergence of the model's predictive from the
    fit's (nats per step) and the share of steps where the model's most probable action is one of the fit's.
    On the demonstrator's histories this is the part of the loss the model has yet to learn; on its own
    greedy contexts (`greedy_contexts`) it says whether it acts as a perfect fit would there."""
    return prediction_gap(bayes_action_probabilities(histories, goal_prior), model_action_log_probs(model, histories),
                          histories)


def prediction_gap(fit: np.ndarray, log_probs: np.ndarray, histories, parts: dict | None = None) -> dict:
    """How far a model's predicted log-probabilities are from a perfect fit's probabilities at every step of
    `histories` (both (histories, steps, actions)), by part of the steps (`parts`: masks by name; by default
    before a history's first reward and after it, `first_reward_parts`): the Kullback-Leibler divergence of
    the model's predictive from the fit's (nats per step) and the share of steps where the model's most
    probable action is one of the fit's."""
    chosen = np.take_along_axis(fit, log_probs.argmax(-1)[..., None], -1)[..., 0]
    return part_means(first_reward_parts(histories) if parts is None else parts,
                      {"kl": (fit * (np.log(fit) - log_probs)).sum(-1), "argmax_agrees": chosen >= fit.max(-1) - 1e-9})
