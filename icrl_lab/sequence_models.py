"""Other sequence learners for in-context RL, behind the transformer's interface: a GRU and a diagonal
state-space model (S4D-style, in plain PyTorch).

Both read the same one-token-per-step stream as `ICRLTransformer` (observation, previous action,
previous reward x a vector per previous action) and predict the next action, so the same data, the same
`icrl_lab.train.train` loop and the same `icrl_lab.evaluate.in_context_rollout` serve all three:

    config.build()                       the model
    model.loss(batch)                    cross-entropy against the config's target
    model(obs, prev_actions, prev_rewards, cache=state)   logits; with a state, the next steps of a stream
    model.new_cache(batch_size)          an empty recurrent state (the analogue of a KV cache)
    save_model / load_model              as for the transformer

What differs is memory. A transformer attends to its last `window_steps` steps, and one decoding step
costs time that grows with how many it holds; a recurrent model carries a fixed-size state, so a step
costs the same however long the stream. The state must compress the whole history, though, and the
model is trained on windows of `window_steps` steps that start from an empty state.

The state-space layer (Gu et al.'s S4D, diagonal): per channel h and complex state n,
s_t = a ⊙ s_{t-1} + b ⊙ u_t and y_t = 2 Re(c · s_t) + d u_t, with a = exp(dt A) (A with negative real
part, S4D-Lin initialisation) and b = (a - 1) / A (zero-order hold). A whole sequence is the causal
convolution of u with the kernel K_l = 2 Re(c b a^l), computed with an FFT; a single step updates s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models import CONFIGS, TARGETS, ICRLTransformer, add_step_embeddings, training_target


@dataclass
class RecurrentConfig:
    """What the recurrent learners share with ADConfig: token sizes, width, depth, target. window_steps is
    the length of the training windows (the rollouts' "reward in context" rule reads it too)."""

    num_obs: int
    num_actions: int
    obs_factors: tuple = ()
    window_steps: int = 80
    d_model: int = 64
    n_layer: int = 2
    dropout: float = 0.0
    target: str = "actions"
    tokens_per_step: int = 1  # one token per step, as the transformer's default
    previous_action_input: bool = True  # the shared embed reads it (see ADConfig)

    @property
    def observation_ids(self) -> int:
        return self.num_obs

    def __post_init__(self):
        self.obs_factors = tuple(int(f) for f in self.obs_factors)
        checks = [("num_obs", self.num_obs >= 1, ">= 1"), ("num_actions", self.num_actions >= 2, ">= 2"),
                  ("window_steps", self.window_steps >= 1, ">= 1"), ("d_model", self.d_model >= 1, ">= 1"),
                  ("n_layer", self.n_layer >= 1, ">= 1"), ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                  ("tokens_per_step", self.tokens_per_step == 1, "1"),
                  ("previous_action_input", isinstance(self.previous_action_input, bool), "True or False"),
                  ("obs_factors", not self.obs_factors or math.prod(self.obs_factors) == self.num_obs,
                   f"digits whose product is num_obs={self.num_obs}"),
                  ("target", self.target in TARGETS, f"one of {TARGETS}")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: it must be {allowed}")


@dataclass
class GRUConfig(RecurrentConfig):
    """A stack of GRU layers over the step tokens."""

    @property
    def kind(self) -> str:
        return "gru"

    def build(self) -> "GRUPolicy":
        return GRUPolicy(self)


@dataclass
class SSMConfig(RecurrentConfig):
    """A stack of diagonal state-space layers (S4D-Lin initialisation), each followed by a gated MLP."""

    state_size: int = 32       # complex states per channel
    dt_min: float = 0.01       # range of the initial step sizes (log-uniform): memories of about 1/dt steps
    dt_max: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.state_size, int) or self.state_size < 1:
            raise ValueError(f"state_size={self.state_size!r} is not allowed: it must be an integer >= 1")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"dt_min={self.dt_min}, dt_max={self.dt_max}: need 0 < dt_min <= dt_max")

    @property
    def kind(self) -> str:
        return "ssm"

    def build(self) -> "SSMPolicy":
        return SSMPolicy(self)


CONFIGS.update({"gru": GRUConfig, "ssm": SSMConfig})


class RecurrentState:
    """The state a recurrent model carries from step to step (its 'cache'): one tensor per layer."""

    def __init__(self, layers: list):
        self.layers = layers
        self.length = 0  # steps seen so far


class RecurrentPolicy(nn.Module):
    """The token embedding and output head shared by the recurrent learners (the transformer's own)."""

    def __init__(self, config: RecurrentConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        add_step_embeddings(self, config)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.num_actions)

    embed = ICRLTransformer.embed  # the same tokens as the transformer's (one per step)

    def forward(self, observations, prev_actions, prev_rewards, cache: RecurrentState | None = None):
        """Action logits for every step, (batch, steps, num_actions); with a state, continue its stream."""
        x = self.dropout(self.embed(observations, prev_actions, prev_rewards))
        x = self.layers_forward(x, cache)
        if cache is not None:
            cache.length += x.shape[1]
        return self.head(self.norm(x))

    def loss(self, batch: dict) -> torch.Tensor:
        logits = self(batch["observations"], batch["prev_actions"], batch["prev_rewards"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), training_target(batch, self.config))


class GRUPolicy(RecurrentPolicy):
    def __init__(self, config: GRUConfig):
        super().__init__(config)
        self.gru = nn.GRU(config.d_model, config.d_model, config.n_layer, batch_first=True,
                          dropout=config.dropout if config.n_layer > 1 else 0.0)
        for module in (*self.obs_embeddings, self.action_embedding, self.reward_embedding, self.head):
            ICRLTransformer._init_weights(module)

    def layers_forward(self, x, cache):
        if cache is None:
            return self.gru(x)[0]
        y, cache.layers[0] = self.gru(x, cache.layers[0])
        return y

    def new_cache(self, batch_size: int, chunk_steps: int = 1) -> RecurrentState:
        parameter = next(self.parameters())
        return RecurrentState([torch.zeros(self.config.n_layer, batch_size, self.config.d_model,
                                           device=parameter.device, dtype=parameter.dtype)])


class DiagonalSSM(nn.Module):
    """One S4D layer over `channels` independent channels, with `state_size` complex states each."""

    def __init__(self, channels: int, state_size: int, dt_min: float, dt_max: float):
        super().__init__()
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_neg_real = nn.Parameter(torch.full((channels, state_size), math.log(0.5)))  # Re A = -0.5
        self.imag = nn.Parameter(math.pi * torch.arange(state_size).float().expand(channels, -1).clone())  # S4D-Lin
        self.c = nn.Parameter(torch.randn(channels, state_size, 2) * math.sqrt(0.5))
        self.d = nn.Parameter(torch.randn(channels))

    def discrete(self):
        """(dt A, a, b, c), each (channels, state_size) complex."""
        A = torch.complex(-torch.exp(self.log_neg_real), self.imag)
        dtA = A * torch.exp(self.log_dt)[:, None]
        a = torch.exp(dtA)
        return dtA, a, (a - 1) / A, torch.view_as_complex(self.c)

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """u (B, T, H) real -> y (B, T, H); with a state (B, H, N) complex, step through u and return it updated."""
        dtA, a, b, c = self.discrete()
        if state is None:
            length = u.shape[1]
            powers = torch.exp(dtA[..., None] * torch.arange(length, device=u.device))  # a^l, (H, N, T)
            kernel = 2 * torch.einsum("hn,hnl->hl", c * b, powers).real
            n = 2 * length
            y = torch.fft.irfft(torch.fft.rfft(u.transpose(1, 2).float(), n) * torch.fft.rfft(kernel, n), n)[..., :length]
            return (y.transpose(1, 2) + u * self.d).to(u.dtype), None
        outputs = []
        for t in range(u.shape[1]):
            state = a * state + b * u[:, t, :, None]
            outputs.append(2 * (c * state).sum(-1).real + self.d * u[:, t])
        return torch.stack(outputs, 1), state


class SSMBlock(nn.Module):
    def __init__(self, config: SSMConfig):
        super().__init__()
        d = config.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ssm = DiagonalSSM(d, config.state_size, config.dt_min, config.dt_max)
        self.mix = nn.Linear(d, 2 * d)  # gated linear unit across channels
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(config.dropout))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, state=None):
        y, state = self.ssm(self.norm1(x), state)
        x = x + self.dropout(F.glu(self.mix(F.gelu(y)), dim=-1))
        return x + self.mlp(self.norm2(x)), state


class SSMPolicy(RecurrentPolicy):
    def __init__(self, config: SSMConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList(SSMBlock(config) for _ in range(config.n_layer))
        for module in (*self.obs_embeddings, self.action_embedding, self.reward_embedding, self.head):
            ICRLTransformer._init_weights(module)

    def layers_forward(self, x, cache):
        for i, block in enumerate(self.blocks):
            x, state = block(x, None if cache is None else cache.layers[i])
            if cache is not None:
                cache.layers[i] = state
        return x

    def new_cache(self, batch_size: int, chunk_steps: int = 1) -> RecurrentState:
        device = next(self.parameters()).device
        shape = (batch_size, self.config.d_model, self.config.state_size)
        return RecurrentState([torch.zeros(shape, dtype=torch.complex64, device=device) for _ in self.blocks])
