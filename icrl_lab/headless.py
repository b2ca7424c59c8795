"""Headless-AD (Sinii et al., 2024): Algorithm Distillation without an action head.

AD's output layer has one logit per action id, so a trained model is tied to one action space: a
bandit with more arms, or a Dark Room whose action ids mean other moves, is out of its reach. Headless-AD
removes that head. Every learning history gets its own random action embeddings (orthonormal where the
embedding size allows), drawn afresh each time the history is read, so an action id carries no meaning
of its own: what an action does must be read from the context. The model

- reads a previous action as its embedding (and the previous reward as reward x that embedding, so
  that what each action earned stays linear in the token, as in `ICRLTransformer`),
- is told the available actions at every step: the mean of their embeddings is added to each token,
- predicts an action *embedding*; an action's logit is the dot product of the prediction with that
  action's embedding, so any number of actions can be scored, and
- is trained with a contrastive (InfoNCE) loss: cross-entropy of those logits, divided by the config's
  `loss_temperature` (the paper's tau), over the available actions, the history's next action being the
  positive.

Acting samples from the softmax of the undivided dot products, as the paper's code does: a model trained
with loss_temperature tau acts at temperature 1/tau relative to the distribution it learned. That is part
of the model (a training setting recorded in its config), not a decoding rule chosen afterwards.

The backbone is the same sliding-window transformer (`Block`, `KVCache`) as AD's.

Variable-arm bandit data: a bandit has nothing to observe (its observation is always 0), so
`stack_bandit_histories` writes each step's number of available arms into the observation, and a
config with `arms_in_observation=True` reads the action set size from there. This keeps the data in the
ordinary `Histories` format and training in `icrl_lab.train.train`.

`HeadlessAD.bind(num_actions, rows)` fixes one embedding draw per row for acting; the bound model has
the interface of `ICRLTransformer`, so `icrl_lab.evaluate.in_context_rollout` runs it unchanged.
`ActionRelabelled` wraps any such model so that, row by row, its action ids mean other environment
actions (a per-task permutation): the test that a fixed action head fails and Headless-AD passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .histories import Histories, join_histories
from .models import CONFIGS, ADConfig, Block, ICRLTransformer, KVCache, add_position_embedding


@dataclass
class HeadlessADConfig(ADConfig):
    """Headless-AD. num_actions: the most actions a training history has (and the id marking "no previous
    action" in training windows); at inference any number of actions can be bound."""

    action_dim: int = 64              # size of the random action embeddings
    arms_in_observation: bool = False  # observations hold the number of available actions (variable-arm bandits)
    loss_temperature: float = 1.0      # tau: training divides the logits by it, acting does not (see the module text)

    @property
    def observation_ids(self) -> int:
        """With arms_in_observation, an observation is an action count, 1 .. num_actions."""
        return self.num_actions + 1 if self.arms_in_observation else self.num_obs

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.action_dim, int) or self.action_dim < 2:
            raise ValueError(f"action_dim={self.action_dim!r} is not allowed: it must be an integer >= 2")
        if self.tokens_per_step != 1:
            raise ValueError("tokens_per_step must be 1 for Headless-AD")
        if self.target not in ("actions", "optimal_actions"):  # its contrastive loss scores action ids
            raise ValueError(f"target={self.target!r} is not allowed for Headless-AD: it must be 'actions' or "
                             f"'optimal_actions'")
        tau = self.loss_temperature
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"loss_temperature={tau!r} is not allowed: it must be a finite number > 0")

    @property
    def kind(self) -> str:
        return "headless_ad"

    def build(self) -> "HeadlessAD":
        return HeadlessAD(self)


CONFIGS["headless_ad"] = HeadlessADConfig


def draw_action_embeddings(rows: int, num_actions: int, dim: int, generator: torch.Generator | None = None,
                           device=None) -> torch.Tensor:
    """Random unit-norm action embeddings, shape (rows, num_actions, dim), a fresh draw for every row:
    orthonormal (a random rotation's columns) when num_actions <= dim, else independent random directions."""
    gaussian = torch.randn(rows, dim, num_actions, generator=generator).to(device)
    if num_actions <= dim:
        q, r = torch.linalg.qr(gaussian)
        # Sign-fix so that the draw is uniform over orthonormal frames (Haar), not biased by QR's convention.
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        return q.transpose(1, 2).contiguous()
    return F.normalize(gaussian, dim=1).transpose(1, 2).contiguous()


def info_nce(predicted: torch.Tensor, embeddings: torch.Tensor, available: torch.Tensor,
             targets: torch.Tensor | None = None):
    """Logits of every action (dot product of the predicted embedding with the action's embedding;
    -inf where an action is not available), and with targets the InfoNCE loss: cross-entropy of the
    target action against all available ones.

    predicted (B, T, D); embeddings (B, K, D); available (B, K) bool; targets (B, T) action ids.
    """
    logits = torch.einsum("btd,bkd->btk", predicted, embeddings.to(predicted.dtype))
    logits = logits.masked_fill(~available[:, None, :], float("-inf"))
    if targets is None:
        return logits
    return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


class HeadlessAD(nn.Module):
    """AD's transformer with random per-history action embeddings in and an embedding (not logits) out."""

    def __init__(self, config: HeadlessADConfig):
        super().__init__()
        self.config = config
        d, a = config.d_model, config.action_dim
        factors = config.obs_factors or (config.num_obs,)
        self.obs_embeddings = nn.ModuleList(nn.Embedding(f, d) for f in factors)
        self.register_buffer("obs_radix", torch.tensor([math.prod(factors[i + 1:]) for i in range(len(factors))]),
                             persistent=False)
        self.obs_factor_sizes = factors
        self.action_in = nn.Linear(a, d, bias=False)   # the previous action's embedding
        self.reward_in = nn.Linear(a, d, bias=False)   # previous reward x previous action's embedding
        self.reward_bias = nn.Linear(1, d, bias=False)  # the previous reward itself
        self.no_action = nn.Parameter(torch.zeros(d))  # the first step of an episode
        self.action_set = nn.Linear(a, d)              # mean embedding of the available actions
        self.dropout = nn.Dropout(config.dropout)
        add_position_embedding(self, config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, a)
        self.apply(ICRLTransformer._init_weights)

    run_blocks = ICRLTransformer.run_blocks  # the same blocks, positions and key/value cache as AD

    def action_counts(self, observations: torch.Tensor) -> torch.Tensor:
        """How many actions each row has available, shape (B,)."""
        if self.config.arms_in_observation:
            return observations[:, 0].long()
        return torch.full(observations.shape[:1], self.config.num_actions, device=observations.device)

    def embed(self, observations, prev_actions, prev_rewards, embeddings, available):
        batch, steps = observations.shape
        counts = available.sum(-1)
        if self.config.arms_in_observation:
            obs = 0.0
        else:
            digits = (observations[..., None] // self.obs_radix) % torch.tensor(self.obs_factor_sizes, device=observations.device)
            obs = sum(embedding(digits[..., i]) for i, embedding in enumerate(self.obs_embeddings))
        started = prev_actions >= counts[:, None]  # the marker id (any id past the available ones): no previous action
        index = torch.where(started, 0, prev_actions)
        previous = torch.gather(embeddings, 1, index[..., None].expand(-1, -1, embeddings.shape[-1]))
        previous = previous * (~started)[..., None].to(previous.dtype)
        reward = prev_rewards[..., None].to(previous.dtype)
        action_set = (embeddings * available[..., None]).sum(1) / counts[:, None].clamp(min=1)
        return (obs + self.action_in(previous) + self.reward_in(reward * previous) + self.reward_bias(reward)
                + started[..., None] * self.no_action + self.action_set(action_set)[:, None, :])

    def forward(self, observations, prev_actions, prev_rewards, embeddings, cache: KVCache | None = None,
                return_attention: bool = False):
        """Logits over each row's actions for every step, (B, T, K), -inf past a row's available actions.

        embeddings: (B, K, action_dim), the actions of each row (rows with fewer actions than K
        have their count in the observations, arms_in_observation=True)."""
        counts = self.action_counts(observations)
        available = torch.arange(embeddings.shape[1], device=embeddings.device)[None, :] < counts[:, None]
        x, attention = self.run_blocks(self.dropout(self.embed(observations, prev_actions, prev_rewards, embeddings,
                                                               available)), cache, return_attention)
        logits = info_nce(self.head(self.norm(x)), embeddings, available)
        return (logits, attention) if return_attention else logits

    def new_cache(self, batch_size: int, chunk_steps: int = 1) -> KVCache:
        parameter = next(self.parameters())
        return KVCache(self.config, batch_size, chunk_steps, parameter.device, parameter.dtype)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """InfoNCE over each row's available actions, with a fresh embedding draw for every row."""
        observations = batch["observations"]
        width = int(self.action_counts(observations).max()) if self.config.arms_in_observation else self.config.num_actions
        embeddings = draw_action_embeddings(len(observations), width, self.config.action_dim, generator,
                                            device=observations.device)
        counts = self.action_counts(observations)
        available = torch.arange(width, device=observations.device)[None, :] < counts[:, None]
        x = self.dropout(self.embed(observations, batch["prev_actions"], batch["prev_rewards"], embeddings, available))
        positions = torch.arange(x.shape[1], device=x.device)
        for block in self.blocks:
            x, _ = block(x, positions)
        predicted = self.head(self.norm(x)) / self.config.loss_temperature
        _, loss = info_nce(predicted, embeddings, available, batch[self.config.target])
        return loss

    def bind(self, num_actions: int, rows: int, seed: int = 0) -> "BoundHeadlessAD":
        """This model with `num_actions` actions and one embedding draw per row, to act with."""
        return BoundHeadlessAD(self, num_actions, rows, seed)


class BoundHeadlessAD(nn.Module):
    """A Headless-AD model with its action embeddings drawn once per row: the interface of `ICRLTransformer`
    (config.num_actions, forward(observations, prev_actions, prev_rewards, cache), new_cache)."""

    def __init__(self, model: HeadlessAD, num_actions: int, rows: int, seed: int = 0):
        super().__init__()
        if not isinstance(num_actions, (int, np.integer)) or num_actions < 2:
            raise ValueError(f"num_actions={num_actions!r} is not allowed: it must be an integer >= 2")
        self.model, self.rows = model, rows
        self.config = replace(model.config, num_actions=int(num_actions))
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("embeddings", draw_action_embeddings(rows, int(num_actions), model.config.action_dim,
                                                                  generator, device=device))

    def forward(self, observations, prev_actions, prev_rewards, cache=None, return_attention=False):
        if self.model.config.arms_in_observation:
            observations = torch.full_like(observations, self.config.num_actions)
        return self.model(observations, prev_actions, prev_rewards, self.embeddings, cache, return_attention)

    def new_cache(self, batch_size: int, chunk_steps: int = 1) -> KVCache:
        if batch_size != self.rows:
            raise ValueError(f"this model was bound for {self.rows} rows, not {batch_size}: bind it again")
        return self.model.new_cache(batch_size, chunk_steps)


class ActionRelabelled(nn.Module):
    """A model whose action ids mean other environment actions, row by row.

    permutations[row, label] is the environment action that the model's action `label` performs in
    that row. Wrapped this way, a model acts in an environment whose actions are permuted per task:
    it reads its own labels for the previous actions and its logits are returned per environment action.
    """

    def __init__(self, model, permutations):
        super().__init__()
        self.model, self.config = model, model.config
        permutations = torch.as_tensor(np.asarray(permutations), dtype=torch.long)
        self.register_buffer("to_env", permutations)
        self.register_buffer("to_label", torch.argsort(permutations, dim=1))

    def forward(self, observations, prev_actions, prev_rewards, cache=None):
        k = self.config.num_actions
        rows = torch.arange(len(prev_actions), device=prev_actions.device)[:, None]
        labels = torch.where(prev_actions >= k, prev_actions, self.to_label[rows, prev_actions.clamp(max=k - 1)])
        logits = self.model(observations, labels, prev_rewards, cache=cache)
        # The logit of environment action j is the model's logit of label to_label[j].
        return torch.gather(logits, 2, self.to_label[:, None, :].expand(-1, logits.shape[1], -1))

    def new_cache(self, batch_size: int, chunk_steps: int = 1):
        return self.model.new_cache(batch_size, chunk_steps)


def action_permutations(rows: int, num_actions: int, seed: int = 0) -> np.ndarray:
    """One random permutation of the actions per row, shape (rows, num_actions)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(num_actions) for _ in range(rows)])


def stack_bandit_histories(datasets: list[Histories]) -> Histories:
    """Bandit histories with different numbers of arms as one dataset for Headless-AD.

    Each step's observation becomes its history's number of arms (a bandit has nothing else to observe;
    `HeadlessADConfig(arms_in_observation=True)` reads the action set from it), and the tasks (arm
    means) are padded with NaN to the largest number of arms. All datasets must have the same length.
    """
    if not datasets:
        raise ValueError("datasets is empty: give at least one bandit dataset")
    steps = {data.num_steps for data in datasets}
    if len(steps) != 1:
        raise ValueError(f"the datasets have different lengths {sorted(steps)}: collect them with one num_steps")
    width = max(data.tasks.shape[1] for data in datasets)
    keep_optimal = all(d.optimal_actions is not None for d in datasets)
    parts = [Histories(np.full(d.observations.shape, d.tasks.shape[1], dtype=np.int16), d.actions.astype(np.int16),
                       d.rewards, d.dones, np.pad(d.tasks.astype(np.float64), ((0, 0), (0, width - d.tasks.shape[1])),
                                                  constant_values=np.nan),
                       optimal_actions=d.optimal_actions if keep_optimal else None) for d in datasets]
    metadata = {**datasets[0].metadata, "arms": [int(d.tasks.shape[1]) for d in datasets],
                "observations": "number of arms", "parts": [d.metadata.get("command") for d in datasets]}
    return join_histories(parts, metadata)


def relabel_actions(histories: Histories, permutations: np.ndarray) -> Histories:
    """The same histories as an agent would record them if action `label` of history h performed the
    environment action permutations[h, label]: every action id a becomes argsort(permutations[h])[a]."""
    to_label = np.argsort(permutations, axis=1)
    rows = np.arange(histories.num_histories)[:, None]
    actions = to_label[rows, histories.actions.astype(np.int64)].astype(histories.actions.dtype)
    optimal = None if histories.optimal_actions is None else \
        to_label[rows, histories.optimal_actions.astype(np.int64)].astype(histories.optimal_actions.dtype)
    return Histories(histories.observations, actions, histories.rewards, histories.dones, histories.tasks,
                     epsilon=histories.epsilon, optimal_actions=optimal,
                     metadata={**histories.metadata, "actions_relabelled": True})
