"""Learning histories in memory and on disk, and the context windows that AD trains on.

A learning history is one task's whole stream of steps, episode after episode, in the order the
policy that made it improved. A dataset holds many histories of the same number of steps, stored as
(histories x steps) arrays, like the XLand-100B datasets:

    observations[h, t]     what the agent observed before acting at step t
    actions[h, t]          the action it took
    rewards[h, t]          the reward that action earned
    dones[h, t]            True if the episode ended after step t (the next observation starts a new one)
    epsilon[h, t]          (optional) the demonstrator's noise level at step t, for AD^eps curricula
    optimal_actions[h, t]  (optional) the optimal action for observations[h, t], DPT's label
    action_probabilities[h, t, a]  (optional) a teacher's probability of action a at step t, a soft label to
                           distil (a model with target "action_probabilities" learns it)
    tasks[h]               the task of history h (a goal cell, a key and door, arm means)

File format (HDF5, one file a dataset): the arrays above as datasets at the root, gzip-compressed and
chunked by history, and the root attributes ``format = "icrl_lab.histories"``, ``format_version = 1`` and
``metadata`` (JSON: environment family and keyword arguments, source and its parameters, seed, package
version, and the call that made it) and ``checksums`` (JSON: the sha256 of every array, see
`array_sha256`), which loading verifies, so that a damaged file is refused rather than read as other data.
Loading also checks that the tasks, observations and actions lie inside the environment the metadata names.

Files are written to a temporary name (``.NAME.PID.tmp`` beside the file) and renamed into place, so an
interrupted write never leaves a file that looks complete. An interrupted Python process removes its
temporary file; one killed outright (SIGKILL, power loss) can leave it behind, and the next save to the
same path removes it once the process that wrote it is gone.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

FORMAT, FORMAT_VERSION = "icrl_lab.histories", 1
STEP_ARRAYS = ("observations", "actions", "rewards", "dones")
OPTIONAL_STEP_ARRAYS = ("epsilon", "optimal_actions")
# Optional arrays with one more axis than a step array: one value per step and action.
PER_ACTION_ARRAYS = ("action_probabilities",)
ALL_ARRAYS = STEP_ARRAYS + OPTIONAL_STEP_ARRAYS + PER_ACTION_ARRAYS + ("tasks",)


class HistoryFileError(ValueError):
    """A history file that is missing, truncated, corrupt or not in icrl_lab's format."""


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order): what a history file records per array."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Provenance:
    """Where a trained model's data came from, built once from the data and saved in its checkpoint
    record (as these top-level keys): the environment family and its arguments, the data's metadata
    (source and its parameters, seed, command, version), and the mean return of the histories' last
    episodes (the best policy in RL histories)."""

    env_family: str
    env_kwargs: dict
    data: dict
    data_last_episode_return: float

    @classmethod
    def of(cls, record: dict) -> "Provenance":
        """The provenance in a checkpoint record (config.json), with a clear error where it is incomplete."""
        missing = [f for f in ("env_family", "env_kwargs", "data", "data_last_episode_return") if f not in record]
        if missing:
            raise ValueError(f"the checkpoint record lacks {missing}: it was not saved by icrl_lab's train or reproduce "
                             f"(re-train it, or add the data's provenance to its config.json)")
        return cls(record["env_family"], record["env_kwargs"], record["data"], record["data_last_episode_return"])


@dataclass
class Histories:
    """A dataset of learning histories: (histories x steps) arrays, one task per history, and metadata."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    tasks: np.ndarray
    epsilon: np.ndarray | None = None
    optimal_actions: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    action_probabilities: np.ndarray | None = None

    def __post_init__(self):
        shape = self.observations.shape
        if len(shape) != 2:
            raise ValueError(f"observations must be a (histories, steps) array, got shape {shape}")
        for name in STEP_ARRAYS[1:] + OPTIONAL_STEP_ARRAYS:
            array = getattr(self, name)
            if array is not None and array.shape != shape:
                raise ValueError(f"{name} has shape {array.shape} but observations have {shape}: every step array must match")
        probabilities = self.action_probabilities
        if probabilities is not None and (probabilities.ndim != 3 or probabilities.shape[:2] != shape):
            raise ValueError(f"action_probabilities has shape {probabilities.shape} but observations have {shape}: it "
                             f"must be (histories, steps, actions)")
        if len(self.tasks) != shape[0]:
            raise ValueError(f"tasks has {len(self.tasks)} rows but there are {shape[0]} histories")
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"observations have shape {shape}: a dataset needs at least one history (task) of at "
                             f"least one step")

    def checksums(self) -> dict:
        """sha256 of every array (see `array_sha256`), by name."""
        return {name: array_sha256(getattr(self, name)) for name in ALL_ARRAYS if getattr(self, name) is not None}

    def sha256(self) -> str:
        """One sha256 of all the arrays: what a training run records to recognise its data again."""
        return hashlib.sha256(json.dumps(self.checksums(), sort_keys=True).encode()).hexdigest()

    def check_env(self):
        """Refuse data that cannot come from the environment its metadata names: tasks the environment
        refuses (a goal off the grid), observations or actions out of range, rewards that are not finite."""
        family = self.metadata.get("env_family")
        if family is None:
            return
        from .envs import make_batched

        try:
            env = make_batched(family, self.tasks, **self.metadata.get("env_kwargs", {}))
        except (ValueError, TypeError) as error:
            raise ValueError(f"the tasks do not fit the {family} environment of the metadata: {error}") from None
        for name, upper in (("observations", env.num_obs), ("actions", env.num_actions),
                            ("optimal_actions", env.num_actions)):
            array = getattr(self, name)
            if array is not None and (array.min() < 0 or array.max() >= upper):
                raise ValueError(f"{name} run from {array.min()} to {array.max()} but the {family} environment of the "
                                 f"metadata has ids 0 to {upper - 1}")
        if not np.all(np.isfinite(self.rewards)):
            raise ValueError("rewards holds non-finite values (NaN or inf)")
        if self.epsilon is not None and not np.all((self.epsilon >= 0) & (self.epsilon <= 1)):
            raise ValueError("epsilon holds values outside [0, 1]")
        probabilities = self.action_probabilities
        if probabilities is not None:
            if probabilities.shape[2] != env.num_actions:
                raise ValueError(f"action_probabilities has {probabilities.shape[2]} actions per step but the {family} "
                                 f"environment of the metadata has {env.num_actions}")
            if not (np.all(probabilities >= 0) and np.allclose(probabilities.sum(axis=2), 1, atol=1e-3)):
                raise ValueError("action_probabilities holds a step whose values are negative, not finite or do not sum "
                                 "to 1: each step's must be a distribution over the actions")

    @property
    def num_histories(self) -> int:
        return self.observations.shape[0]

    @property
    def num_steps(self) -> int:
        return self.observations.shape[1]

    def episode_returns(self) -> np.ndarray:
        """Return of every complete episode, shape (histories, episodes); NaN where a history has fewer episodes."""
        ends = [np.flatnonzero(row) for row in self.dones]
        width = max((len(e) for e in ends), default=0)
        returns = np.full((self.num_histories, width), np.nan)
        cumulative = np.cumsum(self.rewards, axis=1, dtype=np.float64)
        for h, end in enumerate(ends):
            totals = cumulative[h, end]
            returns[h, :len(end)] = np.diff(totals, prepend=0.0)
        return returns

    def summary(self) -> dict:
        """Headline numbers: size, first and last episode's mean return, lowest noise level."""
        returns = self.episode_returns()
        short = int(np.sum(np.all(np.isnan(returns), axis=1))) if returns.size else self.num_histories
        if short:
            raise ValueError(f"{short} of the {self.num_histories} histories hold no complete episode in their "
                             f"{self.num_steps} steps: collect histories of at least one episode (the environment's "
                             f"horizon) each")
        last = np.array([row[~np.isnan(row)][-1] for row in returns]) if returns.size else np.array([np.nan])
        out = {
            "histories": self.num_histories,
            "steps_per_history": self.num_steps,
            "total_steps": self.num_histories * self.num_steps,
            "episodes_per_history": float(np.mean(np.sum(~np.isnan(returns), axis=1))),
            "mean_return_first_episode": float(np.nanmean(returns[:, 0])),
            "mean_return_last_episode": float(np.mean(last)),
        }
        if self.epsilon is not None:
            out["epsilon_floor"] = float(self.epsilon.min())
        return out

    def provenance(self) -> Provenance:
        """What a model trained on this data records of it (see Provenance)."""
        missing = [key for key in ("env_family", "env_kwargs") if key not in self.metadata]
        if missing:
            raise ValueError(f"the histories' metadata lacks {missing}: a model cannot be trained or evaluated without "
                             f"knowing its environment; re-collect them with `python -m icrl_lab collect` (or add the "
                             f"keys to the metadata)")
        return Provenance(self.metadata["env_family"], self.metadata["env_kwargs"], self.metadata,
                          self.summary()["mean_return_last_episode"])

    def save(self, path) -> Path:
        """Write the dataset to an HDF5 file atomically (temporary file, then rename).

        path must be a regular file or not exist: a folder or a device (/dev/full) is refused. The file's
        `checksums` attribute holds every array's sha256, which `load_histories` verifies."""
        path = Path(path)
        if path.exists() and not path.is_file():
            raise FileExistsError(f"{path} exists and is not a regular file: choose a file path for the histories")
        if path.parent.exists() and not path.parent.is_dir():
            raise FileExistsError(f"{path.parent} is not a folder: choose a file path inside a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
                f.attrs["metadata"] = json.dumps(self.metadata)
                f.attrs["checksums"] = json.dumps(self.checksums())
                chunk_rows = max(1, min(self.num_histories, 2**20 // max(1, self.num_steps)))
                for name in STEP_ARRAYS + OPTIONAL_STEP_ARRAYS + PER_ACTION_ARRAYS:
                    array = getattr(self, name)
                    if array is not None:
                        f.create_dataset(name, data=array, compression="gzip", compression_opts=4,
                                         shuffle=True, chunks=(chunk_rows, self.num_steps, *array.shape[2:]))
                f.create_dataset("tasks", data=self.tasks)
            os.replace(tmp, path)
        except PermissionError as error:
            raise PermissionError(f"cannot write {path}: {error.strerror}; choose a folder you can write to") from None
        except OSError as error:
            if isinstance(error, (FileNotFoundError, FileExistsError)):
                raise
            raise ValueError(f"cannot write {path} ({error}); nothing was written: free some space or choose "
                             f"another path") from error
        finally:
            tmp.unlink(missing_ok=True)
        return path


def join_histories(parts: list[Histories], metadata: dict | None = None) -> Histories:
    """The histories of every part as one dataset, in order, each array in the first part's dtype.

    The parts must have the same number of steps and tasks of the same width, and an optional array
    (epsilon, optimal actions, soft labels) must be held by every part or by none, so that no history is
    left without a label the others have. metadata: the joined dataset's (default: the first part's)."""
    if not parts:
        raise ValueError("parts is empty: give at least one Histories to join")
    steps = sorted({part.num_steps for part in parts})
    if len(steps) != 1:
        raise ValueError(f"the parts have {steps} steps per history: only histories of one length can be joined")
    widths = sorted({part.tasks.shape[1:] for part in parts})
    if len(widths) != 1:
        raise ValueError(f"the parts' tasks have shapes {widths} per history: only tasks of one shape can be joined")
    optional = []
    for name in OPTIONAL_STEP_ARRAYS + PER_ACTION_ARRAYS:
        held = [index for index, part in enumerate(parts) if getattr(part, name) is not None]
        if held and len(held) < len(parts):
            raise ValueError(f"{name} is held by parts {held} of 0-{len(parts) - 1} only: drop it from those parts "
                             f"(dataclasses.replace(part, {name}=None)) or give it to every part")
        if held:
            optional.append(name)

    def join(name):
        return np.concatenate([getattr(part, name).astype(getattr(parts[0], name).dtype, copy=False) for part in parts])
    return Histories(*(join(name) for name in STEP_ARRAYS + ("tasks",)), **{name: join(name) for name in optional},
                     metadata=parts[0].metadata if metadata is None else metadata)


def _remove_stale_temporaries(path: Path):
    """Remove .NAME.PID.tmp files beside `path` left by a process that was killed outright and is gone."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            pass  # alive (another user's process), or not a pid: leave it


def check_file_header(f: h5py.File, path) -> None:
    """Refuse an open HDF5 file that is not an icrl_lab history file this version reads, or lacks arrays."""
    if f.attrs.get("format") != FORMAT:
        raise HistoryFileError(f"{path} is an HDF5 file but not an icrl_lab history file (no format = {FORMAT!r} attribute)")
    if int(f.attrs.get("format_version", -1)) > FORMAT_VERSION:
        raise HistoryFileError(f"{path} has format_version {f.attrs['format_version']}, newer than this icrl_lab reads "
                               f"({FORMAT_VERSION}): upgrade icrl_lab")
    missing = [name for name in STEP_ARRAYS + ("tasks",) if name not in f]
    if missing:
        raise HistoryFileError(f"{path} lacks the arrays {missing}: it is incomplete, re-create it")


def load_histories(path) -> Histories:
    """Read a dataset written by `Histories.save`; a missing, corrupt or foreign file raises HistoryFileError."""
    path = Path(path)
    if not path.is_file():
        raise HistoryFileError(f"{path}: no such history file; make one with `python -m icrl_lab collect` or Histories.save")
    try:
        with h5py.File(path, "r") as f:
            check_file_header(f, path)
            arrays = {name: f[name][()] for name in ALL_ARRAYS if name in f}
            metadata = json.loads(f.attrs["metadata"])
            checksums = json.loads(f.attrs["checksums"]) if "checksums" in f.attrs else {}
    except HistoryFileError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise HistoryFileError(f"{path} is truncated or corrupt and cannot be read ({error}); re-create it") from error
    for name, expected in checksums.items():
        if name in arrays and array_sha256(arrays[name]) != expected:
            raise HistoryFileError(f"{path}: the array {name!r} does not match the sha256 recorded when the file was "
                                   f"saved, so the file was damaged or changed since; re-create it (or copy it again)")
    try:
        histories = Histories(**arrays, metadata=metadata)
        histories.check_env()
    except ValueError as error:
        raise HistoryFileError(f"{path} holds inconsistent arrays: {error}; re-create it") from error
    return histories


def previous_actions_and_rewards(histories: Histories, num_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """Each step's previous action and reward, as a one-token-per-step model reads them.

    At the first step of every episode there is no previous action in that episode: it is marked with
    the extra action id `num_actions`. The previous reward is always the reward of the step before,
    also across an episode boundary, so that the reward of an episode's last step (a door reached, a
    goal found on the final move) enters the context, as in the AD^eps code.
    """
    starts = np.zeros_like(histories.dones)
    starts[:, 0] = True
    starts[:, 1:] = histories.dones[:, :-1]
    prev_actions = np.empty(histories.actions.shape, dtype=np.int64)
    prev_actions[:, 1:] = histories.actions[:, :-1]
    prev_actions[starts] = num_actions
    prev_rewards = np.zeros(histories.rewards.shape, dtype=np.float32)
    prev_rewards[:, 0] = 0.0
    prev_rewards[:, 1:] = histories.rewards[:, :-1]
    return prev_actions, prev_rewards


def episode_of_step(dones: np.ndarray) -> np.ndarray:
    """The episode number (0, 1, ...) of every step, from the `dones` flags of (histories, steps)."""
    dones = np.asarray(dones, dtype=np.int64)
    return np.cumsum(dones, axis=-1) - dones


def within_last(flags: np.ndarray, steps: int) -> np.ndarray:
    """(histories, steps) bools: whether `flags` is set at each step or at any of the `steps - 1` steps before it
    (what a window of `steps` steps ending there shows)."""
    counts = np.cumsum(flags, axis=1)
    behind = np.concatenate([np.zeros((len(counts), steps), counts.dtype), counts], axis=1)[:, :counts.shape[1]]
    return counts - behind > 0


def model_inputs(histories: Histories, num_actions: int, device=None, rows=None, steps: int | None = None):
    """A model's three inputs for whole histories (the rows given, all by default; their first `steps`
    steps), as tensors on `device`: observations, previous actions and previous rewards."""
    rows = np.arange(histories.num_histories) if rows is None else np.atleast_1d(rows)
    steps = steps or histories.num_steps
    prev_actions, prev_rewards = previous_actions_and_rewards(histories, num_actions)
    return tuple(torch.as_tensor(array[rows, :steps], device=device) for array in
                 (histories.observations.astype(np.int64), prev_actions, prev_rewards))


FLOAT_INPUTS = ("prev_rewards", "epsilon", "action_probabilities")


class ContextWindows(torch.utils.data.Dataset):
    """Fixed-length windows of consecutive steps, cut anywhere in a history (across episode boundaries).

    Item i is the window starting at step i % starts_per_history of history i // starts_per_history,
    a dict of tensors of length `context_steps`: observations, prev_actions, prev_rewards, actions (the
    next-action targets), where the data has them optimal_actions, with epsilon=True the
    demonstrator's epsilon, and with action_probabilities=True the data's soft labels. `sample` draws a
    whole random batch at once, which is much faster than collating single items.
    """

    def __init__(self, histories: Histories, context_steps: int, num_actions: int, device=None, epsilon: bool = False,
                 action_probabilities: bool = False):
        if not 1 <= context_steps <= histories.num_steps:
            raise ValueError(f"context_steps={context_steps} is not allowed: it must be between 1 and the "
                             f"history length {histories.num_steps}")
        self.context_steps = context_steps
        self.starts_per_history = histories.num_steps - context_steps + 1
        prev_actions, prev_rewards = previous_actions_and_rewards(histories, num_actions)
        # Kept in the stored (compact) integer types; widened batch by batch, to save memory.
        self.arrays = {
            "observations": torch.from_numpy(histories.observations),
            "prev_actions": torch.from_numpy(prev_actions.astype(histories.actions.dtype)),
            "prev_rewards": torch.from_numpy(prev_rewards),
            "actions": torch.from_numpy(histories.actions),
        }
        if histories.optimal_actions is not None:
            self.arrays["optimal_actions"] = torch.from_numpy(histories.optimal_actions)
        if epsilon:  # only when asked: a float per step, as much memory as the rest together
            self.arrays["epsilon"] = torch.tensor(histories.epsilon)
        if action_probabilities:
            self.arrays["action_probabilities"] = torch.as_tensor(histories.action_probabilities, dtype=torch.float32)
        # On a GPU the whole dataset sits in its memory, so a batch is gathered there, not copied each update.
        self.arrays = {name: array.to(device) for name, array in self.arrays.items()}

    def __len__(self) -> int:
        return len(self.arrays["observations"]) * self.starts_per_history

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        history, start = divmod(int(index), self.starts_per_history)
        return self._gather(history, slice(start, start + self.context_steps))

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               rows: slice | None = None) -> dict[str, torch.Tensor]:
        """A random batch of windows; `rows`: only these rows of it (one process's share of a global batch,
        drawn from the same stream on every process, so that the shares never overlap)."""
        num_histories = len(self.arrays["observations"])
        history = torch.randint(num_histories, (batch_size, 1), generator=generator)
        start = torch.randint(self.starts_per_history, (batch_size, 1), generator=generator)
        if rows is not None:
            history, start = history[rows], start[rows]
        device = self.arrays["observations"].device
        return self._gather(history.to(device), (start + torch.arange(self.context_steps)).to(device))

    def _gather(self, history, steps) -> dict[str, torch.Tensor]:
        return {name: array[history, steps].float() if name in FLOAT_INPUTS else array[history, steps].long()
                for name, array in self.arrays.items()}
