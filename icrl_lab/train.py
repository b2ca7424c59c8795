"""Training AD and DPT on learning histories: AdamW, warm-up then cosine decay, gradient clipping.

`train` runs the loop with a progress bar, optional periodic in-context evaluation, and checkpoints
(safetensors tensors + JSON, no pickle) from which a run resumes to exactly the weights an
uninterrupted run reaches (on CPU, same seed): the checkpoint holds the weights, the optimiser's
moments, the random generators' states and the update count.

A checkpoint is one unit. Its files are written into a staging folder (OUT/.checkpoint.new) with a
manifest (checkpoint.json: the update count and each file's sha256) written last; only then are they
moved into place, the manifest last. A run killed while writing leaves the previous checkpoint whole (the
incomplete staging folder is discarded), and one killed while moving is finished on the next start.
Resuming verifies the manifest and refuses a mixed or damaged set, and refuses settings or data that
differ from the checkpoint's (the learning-rate schedule, the sampled batches and the weights' shapes
depend on them). A non-finite loss or weight stops training with an error and no checkpoint of them.

The same `train` runs on several processes under torchrun (DistributedDataParallel): batch_size is the
global batch, shared out so that N processes train on exactly the windows of a one-process run, and
process 0 alone writes checkpoints and logs (see icrl_lab.distributed).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .histories import ContextWindows, Histories
from .models import ADConfig, file_sha256, load_model, save_model
from .sources import check_seed
from .streaming import HistoryFile, StreamingWindows, training_stream

CHECKPOINT_FILES = ("model.safetensors", "config.json", "training_state.safetensors", "training_state.json")
MANIFEST, STAGING = "checkpoint.json", ".checkpoint.new"
RESULT_FILES = ("results.json", "figure.png", "evaluation.json")  # made from a checkpoint: stale without it
# Training settings that may change on resume: they change what is logged and saved, not the weights.
RESUMABLE_CHANGES = ("checkpoint_every", "eval_every", "log_every", "device", "compile")


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or infinite."""


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
    compile: bool = False          # torch.compile the loss: fewer kernel launches (small models on a GPU), after a
                                   # minute or so of compiling; benchmarks/train.py --compile measures the gain

    def __post_init__(self):
        for name in ("updates", "batch_size", "context_steps", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: it must be an integer >= 1")
        for name in ("checkpoint_every", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: it must be an integer >= 0 (0: never)")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate={self.learning_rate} is not allowed: it must be a finite number > 0 "
                             f"(1e-4 to 1e-2 suits these models)")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction={self.warmup_fraction} is not allowed: it must be in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay} is not allowed: it must be a finite number >= 0")
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"grad_clip={self.grad_clip} is not allowed: it must be a finite number > 0")
        check_seed(self.seed)


def pick_device(name: str = "auto") -> torch.device:
    """'auto': CUDA if present, else CPU; otherwise the named device, refused if torch does not know it or
    it is not here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={name!r} is not a device torch knows: use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device={name!r} is not available here ({torch.cuda.device_count()} CUDA devices): use "
                         f"'auto' or 'cpu'")
    return device


def check_data_fits_model(model_config: ADConfig, histories: Histories) -> None:
    """Refuse data whose ids the model cannot embed, and DPT on data without optimal actions."""
    for name, upper, field_ in (("observations", model_config.observation_ids, "num_obs"),
                                ("actions", model_config.num_actions, "num_actions")):
        largest = int(getattr(histories, name).max())
        if largest >= upper:
            raise ValueError(f"the data has {name} up to {largest} but the model takes {field_}={upper} (ids 0 to "
                             f"{upper - 1}): size the model to the data (recipes.model_config)")
    needed = ("optimal_actions", "epsilon") if model_config.target == "demonstrator_policy" else (model_config.target,)
    lacking = [name for name in needed if getattr(histories, name, None) is None]
    if lacking:
        raise ValueError(f"a {model_config.kind} model learns {model_config.target}, which the data lacks (it needs "
                         f"{lacking}): train on the actions, or collect data that records them (AD^eps histories do)")


def learning_rate_factor(update: int, config: TrainConfig) -> float:
    """Linear warm-up over warmup_fraction of the updates, then cosine decay to 0."""
    warmup = max(1, int(config.warmup_fraction * config.updates))
    if update < warmup:
        return (update + 1) / warmup
    progress = (update - warmup) / max(1, config.updates - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _save_checkpoint(directory: Path, model, optimizer, generator, update: int, record: dict,
                     dropout_states: list[torch.Tensor]):
    """Write a whole checkpoint into the staging folder, its manifest last, then move it into place.
    dropout_states: every process's torch generator state, in rank order (one when run alone)."""
    from safetensors.torch import save_file

    staging = directory / STAGING
    if staging.exists():
        shutil.rmtree(staging)  # left by a save of this run that failed part-way
    save_model(model, staging, record)
    tensors, layout = {}, []
    for index, (parameter_id, state) in enumerate(optimizer.state_dict()["state"].items()):
        for key, value in state.items():
            tensors[f"{parameter_id}.{key}"] = value.detach().cpu().contiguous()
        layout.append(parameter_id)
    tensors["rng.sampler"] = generator.get_state()
    tensors["rng.torch"] = dropout_states[0]
    for rank, state in enumerate(dropout_states[1:], start=1):
        tensors[f"rng.torch.{rank}"] = state
    save_file(tensors, staging / "training_state.safetensors")
    state = {"update": update, "param_groups": optimizer.state_dict()["param_groups"], "state_ids": layout}
    (staging / "training_state.json").write_text(json.dumps(state))
    manifest = {"update": update, "files": {name: file_sha256(staging / name) for name in CHECKPOINT_FILES}}
    (staging / f".{MANIFEST}.tmp").write_text(json.dumps(manifest, indent=2))
    os.replace(staging / f".{MANIFEST}.tmp", staging / MANIFEST)  # from here on the new checkpoint is complete
    _move_staged(directory)


def _move_staged(directory: Path):
    """Move a complete staged checkpoint into place, the manifest last (also finishes an interrupted move)."""
    staging = directory / STAGING
    for name in CHECKPOINT_FILES + (MANIFEST,):
        if (staging / name).exists():
            os.replace(staging / name, directory / name)
    shutil.rmtree(staging)


def recover_checkpoint(directory) -> None:
    """Finish or discard what a run killed while saving left in `directory`: a staged checkpoint with its
    manifest is complete and is moved into place; one without is discarded (the previous one stands)."""
    staging = Path(directory) / STAGING
    if staging.is_dir():
        if (staging / MANIFEST).is_file():
            _move_staged(Path(directory))
        else:
            shutil.rmtree(staging)


def verify_checkpoint(directory: Path) -> dict:
    """The manifest of the checkpoint in `directory`, after checking every file against it."""
    manifest_path = directory / MANIFEST
    missing = [name for name in CHECKPOINT_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} has no training state to resume from ({missing} missing); start "
                                f"without resume, or point to a checkpoint directory")
    if not manifest_path.is_file():
        raise ValueError(f"{directory} holds a checkpoint without its manifest ({MANIFEST}), so it cannot be shown to "
                         f"be one consistent set: train again into a new folder (or with --overwrite)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{manifest_path} is damaged ({error}): train again into a new folder (or with --overwrite)")
    changed = [name for name in CHECKPOINT_FILES if file_sha256(directory / name) != files.get(name)]
    if changed:
        raise ValueError(f"the checkpoint in {directory} is a mixed or damaged set: {changed} do not match the "
                         f"manifest of update {manifest.get('update')} ({MANIFEST}); it cannot be resumed: train again "
                         f"into a new folder (or with --overwrite)")
    return manifest


def check_resumable(saved: dict, model_config: ADConfig, config: TrainConfig, data_sha256: str) -> None:
    """Refuse to resume a checkpoint with other data, model or training settings than it was made with."""
    def plain(value):
        return json.loads(json.dumps(value))

    differences = []
    saved_model = saved.get("config", {})
    if saved.get("kind") != model_config.kind:
        differences.append(("kind", saved.get("kind"), model_config.kind))
    for name, value in plain(asdict(model_config)).items():
        if saved_model.get(name) != value:
            differences.append((name, saved_model.get(name), value))
    saved_train = saved.get("train_config", {})
    for name, value in asdict(config).items():
        if name not in RESUMABLE_CHANGES and saved_train.get(name) != value:
            differences.append((name, saved_train.get(name), value))
    if saved.get("data_sha256") is not None and saved["data_sha256"] != data_sha256:
        differences.append(("data (sha256 of the history arrays)", saved["data_sha256"][:12] + "...",
                            data_sha256[:12] + "..."))
    if differences:
        listed = "; ".join(f"{name}: {old!r} in the checkpoint, {new!r} now" for name, old, new in differences)
        raise ValueError(f"cannot resume: the checkpoint was made with other settings or data ({listed}). Resume with "
                         f"the checkpoint's values (its config.json lists them), or train into another --out")


def start_from(model, directory) -> dict:
    """Load a saved model's weights into `model`, to train them on other data (fine-tuning); refused unless
    both have the same parameters with the same shapes. Returns what the run records of where it started."""
    saved, saved_record = load_model(directory)
    shapes = lambda state: {name: tuple(tensor.shape) for name, tensor in state.items()}
    theirs, ours = shapes(saved.state_dict()), shapes(model.state_dict())
    if theirs != ours:
        differing = sorted(name for name in theirs.keys() | ours.keys() if theirs.get(name) != ours.get(name))
        raise ValueError(f"cannot start from {directory}: its model has other parameters or shapes than this one "
                         f"({', '.join(differing[:4])}{' ...' if len(differing) > 4 else ''}); give a model config "
                         f"with the checkpoint's sizes (its config.json lists them)")
    model.load_state_dict(saved.state_dict())
    return {"checkpoint": str(directory), "weights_sha256": saved_record.get("weights_sha256")}


def _load_checkpoint(directory: Path, model, optimizer, generator, model_config, config, data_sha256,
                     rank: int = 0) -> tuple[int, list]:
    """Restore a checkpoint into model, optimiser and generators; returns (updates done, log so far).
    Process `rank` takes its own dropout stream where the checkpoint has one (else it keeps its seed's)."""
    from safetensors.torch import load_file

    manifest = verify_checkpoint(directory)
    saved, saved_record = load_model(directory)
    check_resumable(saved_record, model_config, config, data_sha256)
    model.load_state_dict(saved.state_dict())
    state = json.loads((directory / "training_state.json").read_text())
    if state["update"] != manifest["update"]:
        raise ValueError(f"the checkpoint in {directory} is a mixed set (training state of update {state['update']}, "
                         f"manifest of update {manifest['update']}): train again into a new folder")
    tensors = load_file(directory / "training_state.safetensors")
    optimizer_state = {}
    for parameter_id in state["state_ids"]:
        prefix = f"{parameter_id}."
        optimizer_state[parameter_id] = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": state["param_groups"]})
    generator.set_state(tensors["rng.sampler"])
    dropout_state = tensors.get("rng.torch" if rank == 0 else f"rng.torch.{rank}")
    if dropout_state is not None:
        torch.set_rng_state(dropout_state)
    return state["update"], saved_record.get("log", [])


def prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Check that `out_dir` can take this run's checkpoints: refuse to replace an earlier checkpoint
    unless resuming it or told to overwrite it (then it and the results made from it are removed)."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the checkpoint, overwrite "
                         "replaces it")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} exists and is not a folder: choose a folder for the checkpoints")
    if out_dir.is_dir():
        recover_checkpoint(out_dir)
    existing = [name for name in CHECKPOINT_FILES + (MANIFEST,) if (out_dir / name).exists()]
    if resume:
        if not existing:
            raise FileNotFoundError(f"{out_dir} has no training state to resume from (training_state.json and "
                                    f".safetensors); start without resume, or point to a checkpoint directory")
    elif existing:
        if not overwrite:
            raise FileExistsError(f"--out {out_dir} already holds a checkpoint ({existing}): pass --resume "
                                  f"(resume=True) to continue it, --overwrite (overwrite=True) to replace it and the "
                                  f"results made from it, or choose another folder")
        for name in CHECKPOINT_FILES + (MANIFEST,) + RESULT_FILES:
            (out_dir / name).unlink(missing_ok=True)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(f"cannot create --out {out_dir}: permission denied; choose a folder you can write to") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into --out {out_dir}: permission denied; choose a folder you can write to")


def batch_memory_bytes(model_config: ADConfig, config: TrainConfig) -> int:
    """A rough lower estimate of the memory one training batch needs (activations kept for the backward
    pass, float32): about 20 numbers per token and layer, and for attention models the attention scores
    where the fused kernel falls back to them."""
    tokens = config.context_steps * model_config.tokens_per_step
    heads = getattr(model_config, "n_head", 0)  # recurrent learners have no attention scores
    per_layer = 20 * tokens * model_config.d_model + 3 * heads * tokens * tokens
    return 4 * config.batch_size * model_config.n_layer * per_layer


def available_memory(device: torch.device) -> int | None:
    """Free memory on `device` in bytes (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_batch_memory(model_config: ADConfig, config: TrainConfig, device: torch.device) -> None:
    needed, free = batch_memory_bytes(model_config, config), available_memory(device)
    if free is not None and needed > free:
        fits = max(1, int(config.batch_size * free / needed))
        raise ValueError(f"batch_size={config.batch_size} needs about {needed / 2**30:.1f} GiB for one batch but only "
                         f"{free / 2**30:.1f} GiB are free on {device}: use batch_size <= {fits} (or shorter "
                         f"context_steps, or a smaller model)")


def _check_finite(model, loss_finite: torch.Tensor, loss: torch.Tensor, update: int, config: TrainConfig,
                  out_dir, weights: bool, group: distributed.ProcessGroup):
    problem = None
    if not group.all_true(loss_finite):  # every process stops together, none waits for the others forever
        problem = f"a loss was not finite (the last one: {loss.item()}) by update {update}"
    elif weights and not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        problem = f"the weights became NaN or infinite by update {update}"
    if problem:
        kept = f"; the last good checkpoint in {out_dir} is kept" if out_dir is not None else ""
        raise TrainingDiverged(f"training diverged: {problem} at learning_rate={config.learning_rate}; nothing of "
                               f"these weights was saved{kept}. Train again with a smaller learning_rate (e.g. "
                               f"{config.learning_rate / 10:g}) or a longer warm-up")


def train(model_config: ADConfig, histories: Histories | HistoryFile | StreamingWindows, config: TrainConfig = TrainConfig(),
          out_dir=None, resume: bool = False, evaluate=None, record: dict | None = None,
          progress: bool = True, stop_at: int | None = None, overwrite: bool = False, initial_weights=None):
    """Train a model on `histories`; returns (model, log) where log is a list of dicts per logged update.

    out_dir: where checkpoints go (weights, config and training state); with resume=True training
    continues from the checkpoint there. evaluate: a function model -> dict of figures, called every
    config.eval_every updates and logged (on process 0 under torchrun). record: extra JSON saved beside the
    weights (data provenance).
    initial_weights: a saved model's folder whose weights training starts from, instead of fresh ones (to go on
    training a model on other data; the optimizer and schedule start afresh). A resumed run takes its weights
    from its own checkpoint.
    stop_at: stop (with a checkpoint) after this many updates in all, to go on later with resume=True;
    the learning-rate schedule still spans config.updates. An out_dir that already holds a checkpoint is
    refused unless resume=True, or overwrite=True (which removes it and the results made from it).
    histories: in memory, or a file read block by block (streaming.open_history_file, or a
    streaming.StreamingWindows over one); a streamed run does not resume to bit-identical batches, and each
    process of a distributed one draws its own windows (see icrl_lab.streaming).
    """
    if isinstance(histories, Histories):
        if histories.num_steps < config.context_steps:
            raise ValueError(f"context_steps={config.context_steps} is longer than the histories ({histories.num_steps} steps)")
        check_data_fits_model(model_config, histories)
    else:  # read block by block: the ids are checked as each block is loaded
        histories = training_stream(histories, model_config, config.context_steps, config.seed)
    if stop_at is not None and (not isinstance(stop_at, int) or stop_at < 1):
        raise ValueError(f"stop_at={stop_at!r} is not allowed: it must be an integer >= 1 (the updates to have done "
                         f"when stopping)")
    device = pick_device(config.device)
    group, started_group = distributed.join(device)
    try:
        return _train(model_config, histories, config, out_dir, resume, evaluate, record, progress, stop_at,
                      overwrite, initial_weights, group, group.device(device))
    finally:
        distributed.leave(started_group)


def _train(model_config, histories, config, out_dir, resume, evaluate, record, progress, stop_at, overwrite,
           initial_weights, group: distributed.ProcessGroup, device: torch.device):
    share = group.share(config.batch_size)
    check_batch_memory(model_config, replace(config, batch_size=share.stop - share.start), device)
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is None and resume:
        raise ValueError("resume=True needs out_dir, the folder of the checkpoint to continue")
    if out_dir is not None:
        group.on_main(prepare_out_dir, out_dir, resume, overwrite)
    torch.manual_seed(config.seed)  # the same initial weights on every process
    model = model_config.build()
    started_from = start_from(model, initial_weights) if initial_weights is not None else None
    model = model.to(device)
    torch.manual_seed(group.dropout_seed(config.seed))
    windows = (histories.to(device) if isinstance(histories, StreamingWindows) else
               ContextWindows(histories, config.context_steps, model_config.num_actions, device=device,
                              epsilon=model_config.target == "demonstrator_policy",
                              action_probabilities=model_config.target == "action_probabilities"))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(config.seed)
    data_sha256 = histories.sha256()
    record = {"train_config": asdict(config), "data_sha256": data_sha256, **(record or {})}
    if started_from is not None:
        record["initial_weights"] = started_from
    start, log = (_load_checkpoint(out_dir, model, optimizer, generator, model_config, config, data_sha256, group.rank)
                  if resume else (0, []))
    training = distributed.wrap(model, group, device)
    if config.compile:
        training = torch.compile(training)
    loss_finite = torch.ones((), dtype=torch.bool, device=device)  # all losses so far finite (checked without a sync on GPU)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    started = time.perf_counter() - (log[-1]["seconds"] if log else 0.0)  # a resumed run's log counts on
    model.train()
    end = config.updates if stop_at is None else min(stop_at, config.updates)
    bar = tqdm(range(start, end), initial=start, total=config.updates, disable=not (progress and group.is_main),
               desc="training")
    for update in bar:
        for parameters in optimizer.param_groups:
            parameters["lr"] = config.learning_rate * learning_rate_factor(update, config)
        batch = windows.sample(config.batch_size, generator, rows=share)
        with autocast:
            loss = training(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        done = update + 1
        loss_finite &= torch.isfinite(loss.detach())
        logging = done % config.log_every == 0 or done == end
        saving = out_dir is not None and ((config.checkpoint_every and done % config.checkpoint_every == 0) or done == end)
        if device.type == "cpu" or logging or saving:
            _check_finite(model, loss_finite, loss, done, config, out_dir, weights=saving or done == end, group=group)
        if logging:
            entry = {"update": done, "loss": group.mean(loss).item(), "lr": optimizer.param_groups[0]["lr"],
                     "seconds": time.perf_counter() - started}
            if (evaluate is not None and group.is_main and config.eval_every
                    and (done % config.eval_every == 0 or done == config.updates)):
                model.eval()
                entry.update(evaluate(model))
                model.train()
            log.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if saving:
            dropout_states = group.gather(torch.get_rng_state())
            if group.is_main:
                _save_checkpoint(out_dir, model, optimizer, generator, done, {**record, "updates_done": done, "log": log},
                                 dropout_states)
            group.barrier()  # no process goes on (or returns) before the checkpoint is in place
    if isinstance(windows, StreamingWindows):
        windows.close()  # its reading processes end with the run
    model.eval()
    return model, log
