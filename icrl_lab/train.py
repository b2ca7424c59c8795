"""Training AD and DPT on learning histories: AdamW, warm-up then cosine decay, gradient clipping.

`train` runs the loop with a progress bar, optional periodic in-context evaluation, and checkpoints
(safetensors tensors + JSON, no pickle) from which a run resumes to exactly the weights an
uninterrupted run reaches (on CPU, same seed): the checkpoint holds the weights, the optimiser's
moments, the random generators' states and the update count.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .histories import ContextWindows, Histories
from .models import ADConfig, load_model, save_model


@dataclass
class TrainConfig:
    updates: int = 2000
    batch_size: int = 64
    context_steps: int = 80        # length of each training sequence, in steps
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 0      # updates between checkpoints (0: only at the end)
    eval_every: int = 0            # updates between in-context evaluations (0: never)
    log_every: int = 50            # updates between log entries (loss, learning rate, time)
    device: str = "auto"           # "auto": CUDA if present, else CPU

    def __post_init__(self):
        for name in ("updates", "batch_size", "context_steps", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: it must be an integer >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} is not allowed: it must be > 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction={self.warmup_fraction} is not allowed: it must be in [0, 1)")


def pick_device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def learning_rate_factor(update: int, config: TrainConfig) -> float:
    """Linear warm-up over warmup_fraction of the updates, then cosine decay to 0."""
    warmup = max(1, int(config.warmup_fraction * config.updates))
    if update < warmup:
        return (update + 1) / warmup
    progress = (update - warmup) / max(1, config.updates - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _save_checkpoint(directory: Path, model, optimizer, generator, update: int, record: dict):
    from safetensors.torch import save_file

    save_model(model, directory, record)
    tensors, layout = {}, []
    for index, (parameter_id, state) in enumerate(optimizer.state_dict()["state"].items()):
        for key, value in state.items():
            tensors[f"{parameter_id}.{key}"] = value.detach().cpu().contiguous()
        layout.append(parameter_id)
    tensors["rng.sampler"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = directory / ".training_state.safetensors.tmp"
    save_file(tensors, tmp)
    tmp.replace(directory / "training_state.safetensors")
    state = {"update": update, "param_groups": optimizer.state_dict()["param_groups"], "state_ids": layout}
    (directory / ".training_state.json.tmp").write_text(json.dumps(state))
    (directory / ".training_state.json.tmp").replace(directory / "training_state.json")


def _load_checkpoint(directory: Path, model, optimizer, generator) -> tuple[int, list]:
    """Restore a checkpoint into model, optimiser and generators; returns (updates done, log so far)."""
    from safetensors.torch import load_file

    state_path, tensor_path = directory / "training_state.json", directory / "training_state.safetensors"
    if not state_path.is_file() or not tensor_path.is_file():
        raise FileNotFoundError(f"{directory} has no training state to resume from (training_state.json and "
                                f".safetensors); start without resume, or point to a checkpoint directory")
    saved, saved_record = load_model(directory)
    model.load_state_dict(saved.state_dict())
    state = json.loads(state_path.read_text())
    tensors = load_file(tensor_path)
    optimizer_state = {}
    for parameter_id in state["state_ids"]:
        prefix = f"{parameter_id}."
        optimizer_state[parameter_id] = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": state["param_groups"]})
    generator.set_state(tensors["rng.sampler"])
    torch.set_rng_state(tensors["rng.torch"])
    return state["update"], saved_record.get("log", [])


def train(model_config: ADConfig, histories: Histories, config: TrainConfig = TrainConfig(),
          out_dir=None, resume: bool = False, evaluate=None, record: dict | None = None,
          progress: bool = True, stop_at: int | None = None):
    """Train a model on `histories`; returns (model, log) where log is a list of dicts per logged update.

    out_dir: where checkpoints go (weights, config and training state); with resume=True training
    continues from the checkpoint there. evaluate: a function model -> dict of figures, called every
    config.eval_every updates and logged. record: extra JSON saved beside the weights (data provenance).
    stop_at: stop (with a checkpoint) after this many updates in all, to go on later with resume=True;
    the learning-rate schedule still spans config.updates.
    """
    if histories.num_steps < config.context_steps:
        raise ValueError(f"context_steps={config.context_steps} is longer than the histories ({histories.num_steps} steps)")
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = model_config.build().to(device)
    windows = ContextWindows(histories, config.context_steps, model_config.num_actions, device=device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(config.seed)
    record = {"train_config": asdict(config), **(record or {})}
    out_dir = Path(out_dir) if out_dir is not None else None
    start, log = _load_checkpoint(out_dir, model, optimizer, generator) if resume else (0, [])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    started = time.perf_counter()
    model.train()
    end = config.updates if stop_at is None else min(stop_at, config.updates)
    bar = tqdm(range(start, end), initial=start, total=config.updates, disable=not progress, desc="training")
    for update in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * learning_rate_factor(update, config)
        batch = windows.sample(config.batch_size, generator)
        with autocast:
            loss = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        done = update + 1
        if done % config.log_every == 0 or done == end:
            entry = {"update": done, "loss": loss.item(), "lr": optimizer.param_groups[0]["lr"],
                     "seconds": time.perf_counter() - started}
            if evaluate is not None and config.eval_every and (done % config.eval_every == 0 or done == config.updates):
                model.eval()
                entry.update(evaluate(model))
                model.train()
            log.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if out_dir is not None and ((config.checkpoint_every and done % config.checkpoint_every == 0) or done == end):
            _save_checkpoint(out_dir, model, optimizer, generator, done, {**record, "updates_done": done, "log": log})
    model.eval()
    return model, log
