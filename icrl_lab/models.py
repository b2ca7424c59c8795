"""Transformers for in-context RL: Algorithm Distillation (AD) and the Decision-Pretrained Transformer (DPT).

Both read a stream of steps. Step t is one token built from what the agent knows when it must act:
its observation o_t, its previous action a_{t-1} (an extra id marks an episode's first step) and its
previous reward r_{t-1}. From the token of step t the model predicts a distribution over actions:

- AD (Laskin et al., 2022) is trained to predict the action the learning history took next, so it
  distils the algorithm (or noise curriculum) that made the history;
- DPT (Lee et al., 2023) is trained to predict the *optimal* action for the current observation from
  the transitions before it (its in-context dataset), at every prefix of the context.

One token per step (as XLand-100B's AD) rather than three (as the AD^eps code) makes sequences three
times shorter, so attention costs a ninth and the whole model about a third; attention maps are then
read directly as step-to-step maps. `tokens_per_step=3` gives the (previous action, previous reward,
observation) interleaving for comparison; its maps are summed back to steps by `attention_per_step`.

Attention is causal over a sliding window of `window_steps` steps at every layer, with rotary position
embeddings (relative positions), as in sliding-window language models. A step's cost is then fixed
however long the stream, and incremental decoding with a key/value cache (`KVCache`) gives exactly the
logits of running the whole stream at once.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ADConfig:
    """Algorithm Distillation: predict the next action of the learning history."""

    num_obs: int                 # discrete observations 0 .. num_obs - 1
    num_actions: int
    obs_factors: tuple = ()      # embed an observation's mixed-radix digits separately, e.g. (9, 9) = (row, col)
    window_steps: int = 80       # steps each token attends to (itself included)
    tokens_per_step: int = 1
    d_model: int = 64
    n_layer: int = 4
    n_head: int = 4
    dropout: float = 0.0
    attention_dropout: float = 0.0
    # In training, each query ignores each earlier key with this probability (drawn anew for every window and
    # layer, shared by the heads; its own key always stays) and the softmax spreads over the keys kept. A
    # cousin of attention dropout that the fused attention kernel runs, where attention dropout leaves it
    # (several times slower on a CPU).
    key_dropout: float = 0.0
    # A learned embedding of each step's place in the stream (0 .. window_steps - 1; every later step takes the
    # last), added to its tokens. Rotary embeddings give attention relative positions only; in a window that
    # starts where its history starts, this place says how far the curriculum has gone, as a perfect fit of
    # AD^eps data reads its epsilon from it. Meant for such windows: a window that slides over a longer stream
    # meets, past its first window_steps steps, places that training never showed it.
    absolute_positions: bool = False
    # What training predicts: the history's own next action; or, for AD^eps data, "demonstrator_policy", the
    # distribution that action was drawn from (epsilon-greedy around the recorded optimal action). Both have
    # the same best prediction given a context (the posterior predictive), the second without the noise of
    # the draw in its gradient; or "action_probabilities", a teacher's soft labels that the data carries.
    target: str = "actions"
    # False: a step's token keeps only whether an episode starts there, not which move came before it. On a
    # grid the cells of the stream show every move that moved; what is lost is which wall a move pushed
    # against, which says nothing of the goal, and which a model reading its own moves as a demonstrator's
    # can take for evidence and push on.
    previous_action_input: bool = True

    def __post_init__(self):
        self.obs_factors = tuple(int(f) for f in self.obs_factors)
        for name in ("num_obs", "num_actions", "window_steps", "tokens_per_step", "d_model", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name}={value!r} is not allowed: it must be an integer")
        if self.n_head < 1:  # checked first: the d_model check divides by it
            raise ValueError(f"n_head={self.n_head!r} is not allowed: it must be >= 1")
        checks = [
            ("num_obs", self.num_obs >= 1, ">= 1"), ("num_actions", self.num_actions >= 2, ">= 2"),
            ("window_steps", self.window_steps >= 1, ">= 1"), ("tokens_per_step", self.tokens_per_step in (1, 3), "1 or 3"),
            ("d_model", self.d_model >= 1 and self.d_model % self.n_head == 0 and (self.d_model // self.n_head) % 2 == 0,
             "a multiple of n_head whose per-head size is even (rotary embeddings rotate pairs)"),
            ("n_layer", self.n_layer >= 1, ">= 1"), ("n_head", self.n_head >= 1, ">= 1"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"), ("attention_dropout", 0 <= self.attention_dropout < 1, "in [0, 1)"),
            ("key_dropout", 0 <= self.key_dropout < 1, "in [0, 1)"),
            ("absolute_positions", isinstance(self.absolute_positions, bool), "True or False"),
            ("previous_action_input", isinstance(self.previous_action_input, bool), "True or False"),
            ("obs_factors", not self.obs_factors or math.prod(self.obs_factors) == self.num_obs,
             f"digits whose product is num_obs={self.num_obs}"),
            ("target", self.target in TARGETS, f"one of {TARGETS}"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: it must be {allowed}")

    @property
    def kind(self) -> str:
        return "ad"

    @property
    def observation_ids(self) -> int:
        """How many observation ids the model can read (0 .. observation_ids - 1)."""
        return self.num_obs

    def build(self) -> "ICRLTransformer":
        """The model this config describes (other model families' configs build their own class)."""
        return ICRLTransformer(self)


@dataclass
class DPTConfig(ADConfig):
    """Decision-Pretrained Transformer: predict the optimal action for the current observation."""

    target: str = "optimal_actions"

    @property
    def kind(self) -> str:
        return "dpt"


CONFIGS = {"ad": ADConfig, "dpt": DPTConfig}
# Kinds defined in other modules, which add their configs to CONFIGS when imported (see load_model).
VARIANT_MODULES = {"headless_ad": "icrl_lab.headless", "gru": "icrl_lab.sequence_models", "ssm": "icrl_lab.sequence_models"}


def rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding: rotate pairs of features by angles proportional to the position."""
    half = x.shape[-1] // 2
    frequencies = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * frequencies[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def window_mask(query_positions: torch.Tensor, key_positions: torch.Tensor, window: int) -> torch.Tensor:
    """True where a query may attend to a key: the key is not in its future and within `window` tokens."""
    offset = query_positions[:, None] - key_positions[None, :]
    return (offset >= 0) & (offset < window)


class KVCache:
    """Keys and values of the last tokens of every layer, for decoding a stream one step at a time.

    A ring buffer of `capacity` token slots per layer; each slot remembers its token's absolute position,
    which rotary embeddings and the window mask need. Rows of a batch advance in lockstep.
    """

    def __init__(self, config: ADConfig, batch_size: int, chunk_steps: int = 1, device=None, dtype=torch.float32):
        self.window = config.window_steps * config.tokens_per_step
        # Room for the window plus the new tokens of one call (`chunk_steps` steps at most), so that
        # writing them never overwrites a key that one of them still attends to.
        self.chunk_tokens = chunk_steps * config.tokens_per_step
        self.capacity = self.window + self.chunk_tokens
        head = config.d_model // config.n_head
        shape = (batch_size, config.n_head, self.capacity, head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.positions = torch.full((self.capacity,), -(10**9), device=device, dtype=torch.long)  # empty slots
        self.length = 0  # tokens seen so far

    def slots(self, count: int) -> torch.Tensor:
        if count > self.chunk_tokens:
            raise ValueError(f"{count} new tokens in one call but this cache takes at most {self.chunk_tokens}: "
                             f"make it with new_cache(batch_size, chunk_steps=...) large enough")
        return (torch.arange(self.length, self.length + count, device=self.positions.device)) % self.capacity


class Attention(nn.Module):
    def __init__(self, config: ADConfig):
        super().__init__()
        self.n_head, self.head = config.n_head, config.d_model // config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.attention_dropout, self.key_dropout = config.attention_dropout, config.key_dropout
        self.window = config.window_steps * config.tokens_per_step
        # Ablation hook (icrl_lab.probe.ablated): a (heads,) tensor that scales each head's output
        # before the output projection; 0 removes that head's contribution. None: every head as trained.
        self.head_mask: torch.Tensor | None = None

    def forward(self, x, positions, cache: KVCache | None = None, layer: int = 0, return_weights: bool = False):
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, self.head).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, positions), rotate(k, positions)
        if cache is not None:
            slots = cache.slots(length)
            cache.keys[layer][:, :, slots], cache.values[layer][:, :, slots] = k, v
            k, v, key_positions = cache.keys[layer], cache.values[layer], cache.positions.clone()
            key_positions[slots] = positions
        else:
            key_positions = positions
        mask = window_mask(positions, key_positions, self.window)
        if self.training and self.key_dropout:
            kept = torch.rand(batch, 1, length, len(key_positions), device=x.device) >= self.key_dropout
            mask = mask & (kept | (positions[:, None] == key_positions[None, :]))
        dropout = self.attention_dropout if self.training else 0.0
        # The fused kernel for training on whole sequences; plain matrix products when the weights are
        # wanted, and when decoding a step at a time (for one query the fused kernel is slower on CPU).
        if return_weights or cache is not None:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head)
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            y = F.dropout(weights, dropout, self.training) @ v
            weights = weights if return_weights else None
        else:
            weights = None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        if self.head_mask is not None:
            y = y * self.head_mask.to(y.dtype).view(1, -1, 1, 1)
        return self.out(y.transpose(1, 2).reshape(batch, length, -1)), weights


class Block(nn.Module):
    def __init__(self, config: ADConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attention = Attention(config)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.GELU(),
                                 nn.Linear(4 * config.d_model, config.d_model), nn.Dropout(config.dropout))
        self.dropout = nn.Dropout(config.dropout)
        self.mlp_enabled = True  # ablation hook (icrl_lab.probe.ablated): False skips the MLP

    def forward(self, x, positions, cache=None, layer=0, return_weights=False):
        attended, weights = self.attention(self.norm1(x), positions, cache, layer, return_weights)
        x = x + self.dropout(attended)
        return (x + self.mlp(self.norm2(x)) if self.mlp_enabled else x), weights


def add_step_embeddings(module: nn.Module, config) -> None:
    """The embeddings of one token per step (see ICRLTransformer.embed), as attributes of `module`, so that
    every sequence learner reads the same tokens under the same parameter names."""
    d = config.d_model
    factors = config.obs_factors or (config.num_obs,)
    module.obs_embeddings = nn.ModuleList(nn.Embedding(f, d) for f in factors)
    module.register_buffer("obs_radix", torch.tensor([math.prod(factors[i + 1:]) for i in range(len(factors))]),
                           persistent=False)
    module.obs_factor_sizes = factors
    module.action_embedding = nn.Embedding(config.num_actions + 1, d)  # last id: no previous action
    # The reward enters as r * (a vector per previous action), so that which action earned what is
    # linear in the token and one attention layer can total up rewards per action (bandits).
    module.reward_embedding = nn.Embedding(config.num_actions + 1, d)
    module.dropout = nn.Dropout(config.dropout)


def add_position_embedding(module: nn.Module, config) -> None:
    """config.absolute_positions: one learned vector per place in the window, which `run_blocks` adds."""
    module.position_embedding = nn.Embedding(config.window_steps, config.d_model) if config.absolute_positions else None


class ICRLTransformer(nn.Module):
    """The causal sliding-window transformer shared by AD and DPT (they differ in data and target)."""

    def __init__(self, config: ADConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        add_step_embeddings(self, config)
        add_position_embedding(self, config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.num_actions)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed(self, observations, prev_actions, prev_rewards) -> torch.Tensor:
        """Tokens for a (batch, steps) stream: one per step, or three (action, reward, observation)."""
        digits = (observations[..., None] // self.obs_radix) % torch.tensor(self.obs_factor_sizes, device=observations.device)
        obs = sum(embedding(digits[..., i]) for i, embedding in enumerate(self.obs_embeddings))
        if not self.config.previous_action_input:  # every move reads as the first action's id; a start stays a start
            prev_actions = torch.where(prev_actions == self.config.num_actions, prev_actions, 0)
        action = self.action_embedding(prev_actions)
        reward = prev_rewards[..., None].to(obs.dtype) * self.reward_embedding(prev_actions)
        if self.config.tokens_per_step == 1:
            return obs + action + reward
        batch, steps, d = obs.shape
        return torch.stack([action, reward, obs], dim=2).reshape(batch, 3 * steps, d)

    def forward(self, observations, prev_actions, prev_rewards, cache: KVCache | None = None,
                return_attention: bool = False):
        """Action logits for every step, shape (batch, steps, num_actions).

        With a cache, the inputs are the next steps of the stream the cache has seen so far.
        With return_attention, also every layer's weights, (batch, heads, queries, keys) per layer.
        """
        x, attention = self.run_blocks(self.dropout(self.embed(observations, prev_actions, prev_rewards)), cache,
                                       return_attention)
        tokens = self.config.tokens_per_step
        logits = self.head(self.norm(x[:, tokens - 1::tokens]))  # read out at each step's observation token
        return (logits, attention) if return_attention else logits

    def run_blocks(self, x, cache: KVCache | None = None, return_attention: bool = False):
        """The blocks over tokens x (continuing the cache's stream, if given); returns (x, attention per layer)."""
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        if self.position_embedding is not None:  # each step's place, on each of its tokens
            steps = (positions // self.config.tokens_per_step).clamp(max=self.config.window_steps - 1)
            x = x + self.position_embedding(steps)
        attention = []
        for layer, block in enumerate(self.blocks):
            x, weights = block(x, positions, cache, layer, return_attention)
            attention.append(weights)
        if cache is not None:
            cache.positions[cache.slots(x.shape[1])] = positions
            cache.length += x.shape[1]
        return x, attention

    def new_cache(self, batch_size: int, chunk_steps: int = 1) -> KVCache:
        """An empty cache for decoding `batch_size` streams, at most `chunk_steps` steps per call."""
        parameter = next(self.parameters())
        return KVCache(self.config, batch_size, chunk_steps, parameter.device, parameter.dtype)

    def loss(self, batch: dict) -> torch.Tensor:
        """Cross-entropy of the predicted actions against the config's target at every step."""
        logits = self(batch["observations"], batch["prev_actions"], batch["prev_rewards"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), training_target(batch, self.config))


TARGETS = ("actions", "optimal_actions", "demonstrator_policy", "action_probabilities")


def training_target(batch: dict, config) -> torch.Tensor:
    """The cross-entropy target of every step of a batch, flattened: action ids; for "demonstrator_policy"
    the epsilon-greedy demonstrator's action probabilities (epsilon / actions everywhere, plus 1 - epsilon
    on its optimal action); for "action_probabilities" the data's soft labels."""
    if config.target == "action_probabilities":
        return batch["action_probabilities"].reshape(-1, config.num_actions)
    if config.target != "demonstrator_policy":
        return batch[config.target].reshape(-1)
    epsilon = batch["epsilon"].reshape(-1, 1)
    optimal = F.one_hot(batch["optimal_actions"].reshape(-1), config.num_actions)
    return epsilon / config.num_actions + (1 - epsilon) * optimal


def attention_per_step(weights: torch.Tensor, tokens_per_step: int) -> torch.Tensor:
    """Token-to-token attention (..., queries, keys) as step-to-step maps: each step's observation
    token as the query, the weights of the keys of each step summed."""
    if tokens_per_step == 1:
        return weights
    queries = weights[..., tokens_per_step - 1::tokens_per_step, :]
    return queries.unflatten(-1, (-1, tokens_per_step)).sum(-1)


# What the weights mean: a config.json whose hash of these no longer matches was edited after saving.
MEANING_KEYS = ("kind", "config", "env_family", "env_kwargs")


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def meaning_sha256(record: dict) -> str:
    """sha256 of the parts of a checkpoint record that say how to read its weights (MEANING_KEYS)."""
    meaning = {key: record[key] for key in MEANING_KEYS if key in record}
    return hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()


def save_model(model: ICRLTransformer, directory, extra: dict | None = None) -> Path:
    """Weights as safetensors and the config (plus `extra`, e.g. training figures) as JSON, beside each other.

    config.json also records `weights_sha256` (of model.safetensors) and `config_sha256` (of the kind,
    config, env_family and env_kwargs), which `load_model` verifies: corrupt weights, or a config.json
    edited afterwards (another window_steps or env_family), are refused instead of loaded. The weights
    are written first, config.json last, each to a temporary name and renamed into place.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory: choose a folder for the model")
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    record = {"kind": model.config.kind, "config": asdict(model.config), **(extra or {})}
    weights_tmp = directory / ".model.safetensors.tmp"
    try:
        save_file(state, weights_tmp)
        record["weights_sha256"] = file_sha256(weights_tmp)
        record["config_sha256"] = meaning_sha256(record)
        config_tmp = directory / ".config.json.tmp"
        config_tmp.write_text(json.dumps(record, indent=2))
        weights_tmp.replace(directory / "model.safetensors")
        config_tmp.replace(directory / "config.json")
    finally:
        weights_tmp.unlink(missing_ok=True)
        (directory / ".config.json.tmp").unlink(missing_ok=True)
    return directory


def check_model_files(directory) -> dict:
    """The record in directory/config.json, after checking that model.safetensors and the record's config
    are those saved together (`weights_sha256`, `config_sha256`; records from before these were kept
    are taken as they are). Raises ValueError naming what does not match."""
    directory = Path(directory)
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved model: it needs config.json and model.safetensors "
                                f"(written by icrl_lab.models.save_model or `python -m icrl_lab train`)")
    try:
        record = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{directory} holds a corrupt or incompatible model (config.json is not JSON: {error}); "
                         f"re-create it") from error
    if not isinstance(record, dict):
        raise ValueError(f"{directory} holds a corrupt or incompatible model (config.json is not a JSON object); re-create it")
    if "weights_sha256" in record and file_sha256(weights_path) != record["weights_sha256"]:
        raise ValueError(f"{weights_path} does not match the weights_sha256 in config.json: the weights are corrupt or "
                         f"incompatible (changed or damaged after saving, or from another save); re-create or re-copy "
                         f"the checkpoint")
    if "config_sha256" in record and meaning_sha256(record) != record["config_sha256"]:
        changed = [key for key in MEANING_KEYS if key in record]
        raise ValueError(f"{config_path} was edited after saving: its {changed} no longer match the config_sha256 "
                         f"saved with the weights (e.g. another window_steps or env_family), so the weights would be "
                         f"read wrongly; restore the original config.json, or re-train with the settings you want")
    return record


def load_model(directory, device=None) -> tuple[ICRLTransformer, dict]:
    """Load a model saved by `save_model`; returns the model (in eval mode) and the JSON record.
    The weights and config are verified against the hashes saved with them (see `check_model_files`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    record = check_model_files(directory)
    try:
        if record["kind"] not in CONFIGS and record["kind"] in VARIANT_MODULES:
            import importlib
            importlib.import_module(VARIANT_MODULES[record["kind"]])
        config_class = CONFIGS[record["kind"]]
        names = {f.name for f in fields(config_class)}
        config = config_class(**{k: v for k, v in record["config"].items() if k in names})
        model = config.build()
        model.load_state_dict(load_file(directory / "model.safetensors"))
    except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        raise ValueError(f"{directory} holds a corrupt or incompatible model ({error}); re-create it") from error
    return model.to(device or "cpu").eval(), record
