"""Learning histories read from disk block by block, for datasets larger than memory, and the XLand-100B layout.

`open_history_file` opens either of two layouts lazily: at opening it reads only the layout, the sizes and
the metadata; the arrays are read one block of whole histories at a time (`HistoryFile.read_block`).

- The kit's own format (see icrl_lab.histories). A block is a run of histories aligned to the file's HDF5
  chunks, which hold whole histories, so reading a block decompresses each chunk once. `sha256()` is the
  value `Histories.sha256()` gives, taken from the checksums the file records without reading the arrays.
  Those checksums are verified only by `load_histories`, which reads the whole file; a block read here is
  checked for its shapes, and by the stream for its ids.
- The XLand-100B layout (dunnolab/xland-minigrid-datasets): one HDF5 group per task, each holding
  `states`, `actions`, `rewards`, `dones` and `expert_actions` as (histories, steps) arrays, 32 histories a
  task in the real dataset (any count is read). A block is one task's group; `states` become observations,
  `expert_actions` become optimal_actions (DPT's labels), and the task of a history is its group's
  `ruleset-id` attribute where every group has one (as in the real dataset), else the group's position
  (groups named by integers are taken in numeric order). `metadata` holds the file's root attributes and
  the group attributes every group shares, plus the environment family and arguments given to the
  opener, which training needs to size the model. `sha256()` is a sha256 of the layout (group names, each
  array's shape and dtype), not of the contents: hashing 100B steps would take a full pass over the data.
  States stored as images (XLand's 5x5 views) are refused: the kit's models embed one integer
  observation id per step.

Files are opened anew for every read and closed after it, so no HDF5 handle is open when DataLoader
workers fork, and every worker reads through its own.

`StreamingWindows` draws training batches of context windows from such a file with bounded memory, in
the manner of a shuffle buffer: each DataLoader worker holds `blocks_in_memory` blocks, draws every
window of a batch from a random history of one of them, and after about one window per step of its
oldest block (`windows_per_block`) replaces that block with the next of its own random order of all
blocks. Memory per worker is therefore about blocks_in_memory x a block's arrays. Each worker's random
stream is seeded from (seed, process rank, worker id), and the DataLoader takes the workers' batches in
turn, so a streamed run is reproducible for the same seed and worker count; it does not resume to
bit-identical batches (the workers start their streams again), unlike `ContextWindows`. Under torchrun
each process draws its share of the global batch from its own workers, so N processes do not see the
batches of a one-process run as they do in memory (icrl_lab.distributed).
"""
from __future__ import annotations

import hashlib
import json
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import torch

from .histories import (FORMAT, OPTIONAL_STEP_ARRAYS, STEP_ARRAYS, Histories, HistoryFileError, Provenance,
                        check_file_header, join_histories, previous_actions_and_rewards)
from .sources import check_seed

XLAND_LAYOUT, ICRL_LAB_LAYOUT = "xland-100b", "icrl_lab"
# The XLand-100B arrays of a task group, and the names the kit gives them.
XLAND_ARRAYS = {"states": "observations", "actions": "actions", "rewards": "rewards", "dones": "dones",
                "expert_actions": "optimal_actions"}
XLAND_REQUIRED = ("states", "actions", "rewards", "dones")
XLAND_TASK_ATTRIBUTE = "ruleset-id"
ID_ARRAYS = ("observations", "actions", "optimal_actions")
# Rows of a block where the file's arrays are not chunked: about a million steps.
UNCHUNKED_BLOCK_STEPS = 2**20
# Steps read from the end of each history to find its last complete episode (more where it is longer).
EPISODE_TAIL_STEPS = 4096


class HistoryFile:
    """A history file opened lazily: its layout, sizes and metadata are known, its arrays are read a block
    of whole histories at a time. Made by `open_history_file`."""

    layout = ""

    def __init__(self, path: Path, metadata: dict, num_steps: int, block_rows: list[int], arrays: tuple[str, ...]):
        self.path, self.metadata, self.num_steps = path, metadata, num_steps
        self.block_rows, self.arrays = tuple(block_rows), arrays  # arrays: the step arrays present, by the kit's names

    @property
    def num_histories(self) -> int:
        return sum(self.block_rows)

    @property
    def num_blocks(self) -> int:
        return len(self.block_rows)

    def sha256(self) -> str | None:
        raise NotImplementedError

    def read_block(self, index: int) -> Histories:
        """Block `index` (0 .. num_blocks - 1) as Histories in memory, with the file's metadata."""
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.num_blocks:
            raise ValueError(f"block {index!r} does not exist: {self.path} has blocks 0 to {self.num_blocks - 1}")
        with self._reading(f"block {index}") as f:
            arrays = self._read(f, int(index), self.arrays + ("tasks",), slice(None))
            return Histories(**arrays, metadata=self.metadata)

    def provenance(self) -> Provenance:
        """What a model trained on this file records of it (see histories.Provenance). The mean return of
        the histories' last complete episodes is found from the ends of the rewards and dones alone."""
        missing = [key for key in ("env_family", "env_kwargs") if key not in self.metadata]
        if missing:
            raise ValueError(f"{self.path} does not name its environment ({missing} missing from its metadata): a "
                             f"model cannot be sized or evaluated without it; pass env_family (and env_kwargs) to "
                             f"open_history_file, or --env-family (and --env-kwargs) on the command line")
        with self._reading("the ends of the histories") as f:
            returns = np.concatenate([self._last_episode_returns(f, block) for block in range(self.num_blocks)])
        return Provenance(self.metadata["env_family"], self.metadata["env_kwargs"], self.metadata, float(returns.mean()))

    def _last_episode_returns(self, f: h5py.File, block: int) -> np.ndarray:
        tail = min(self.num_steps, EPISODE_TAIL_STEPS)
        while True:
            arrays = self._read(f, block, ("rewards", "dones"), slice(self.num_steps - tail, None))
            dones = arrays["dones"].astype(bool)
            ends = dones.sum(axis=1)
            if tail == self.num_steps or np.all(ends >= 2):
                break
            tail = min(self.num_steps, 4 * tail)
        if np.any(ends == 0):
            raise ValueError(f"{self.path}: {int(np.sum(ends == 0))} histories of block {block} hold no complete "
                             f"episode in their {self.num_steps} steps: train on histories of at least one episode each")
        # Index of each row's last episode end, and of the end before it (-1: the episode began the row).
        last = tail - 1 - np.argmax(dones[:, ::-1], axis=1)
        before = np.where(dones & (np.arange(tail) < last[:, None]), np.arange(tail), -1).max(axis=1)
        totals = np.concatenate([np.zeros((len(dones), 1)), np.cumsum(arrays["rewards"], axis=1, dtype=np.float64)], axis=1)
        rows = np.arange(len(dones))
        return totals[rows, last + 1] - totals[rows, before + 1]

    @contextmanager
    def _reading(self, what: str):
        """The file, opened for one read and closed after it; read failures become HistoryFileError."""
        try:
            with h5py.File(self.path, "r") as f:
                yield f
        except HistoryFileError:
            raise
        except (OSError, KeyError, ValueError) as error:
            raise HistoryFileError(f"{self.path}: cannot read {what} ({error}); the file is truncated or corrupt, or "
                                   f"changed since it was opened: re-create it (or copy it again)") from error

    def _read(self, f: h5py.File, block: int, names: tuple[str, ...], steps: slice) -> dict[str, np.ndarray]:
        """The named arrays (the kit's names; 'tasks' too) of one block, cut to `steps`."""
        raise NotImplementedError


class IcrlLabFile(HistoryFile):
    """A file in the kit's own format (icrl_lab.histories), read a chunk-aligned run of histories at a time."""

    layout = ICRL_LAB_LAYOUT

    def __init__(self, path, f: h5py.File):
        check_file_header(f, path)
        shape = f["observations"].shape
        if len(shape) != 2 or 0 in shape:
            raise HistoryFileError(f"{path}: observations have shape {shape}, not (histories, steps) with at least one "
                                   f"of each: re-create it")
        arrays = tuple(name for name in STEP_ARRAYS + OPTIONAL_STEP_ARRAYS if name in f)
        wrong = {name: f[name].shape for name in arrays if f[name].shape != shape}
        if wrong or len(f["tasks"]) != shape[0]:
            raise HistoryFileError(f"{path}: the arrays' shapes {wrong or {'tasks': f['tasks'].shape}} do not match the "
                                   f"observations' {shape}: the file is inconsistent, re-create it")
        _check_integer_ids(path, {name: f[name].dtype for name in arrays if name in ID_ARRAYS})
        chunks = f["observations"].chunks
        rows_per_block = chunks[0] if chunks else max(1, UNCHUNKED_BLOCK_STEPS // shape[1])
        full, rest = divmod(shape[0], rows_per_block)
        self._checksums = json.loads(f.attrs["checksums"]) if "checksums" in f.attrs else None
        super().__init__(path, json.loads(f.attrs["metadata"]), shape[1], [rows_per_block] * full + [rest] * bool(rest),
                         arrays)
        self._rows_per_block = rows_per_block

    def sha256(self) -> str | None:
        """Histories.sha256() of the file's arrays, from the checksums it records (None where it records none)."""
        if self._checksums is None:
            return None
        return hashlib.sha256(json.dumps(self._checksums, sort_keys=True).encode()).hexdigest()

    def _read(self, f, block, names, steps):
        rows = slice(block * self._rows_per_block, block * self._rows_per_block + self.block_rows[block])
        return {name: f[name][rows] if name == "tasks" else f[name][rows, steps] for name in names}


class XLandFile(HistoryFile):
    """A file in the XLand-100B layout, read one task group at a time."""

    layout = XLAND_LAYOUT

    def __init__(self, path, f: h5py.File):
        groups = {name: item for name, item in f.items() if isinstance(item, h5py.Group)}
        names = sorted(groups, key=int) if all(name.isdigit() for name in groups) else sorted(groups)
        shape_of_first, present = None, None
        for name in names:
            group = groups[name]
            missing = [array for array in XLAND_REQUIRED if array not in group]
            if missing:
                raise HistoryFileError(f"{path}: the group {name!r} lacks {missing}: an XLand-100B task group holds "
                                       f"{list(XLAND_ARRAYS)} (expert_actions optional here); the file is incomplete or "
                                       f"of another layout")
            shape = group["states"].shape
            if len(shape) > 2:
                raise HistoryFileError(f"{path}: the states of group {name!r} are {shape[2:]} views per step (shape "
                                       f"{shape}); icrl_lab's models embed one integer observation id per step, so "
                                       f"image observations cannot be trained on here: store one id per step, a "
                                       f"(histories, steps) integer array")
            arrays = tuple(array for array in XLAND_ARRAYS if array in group)
            wrong = {array: group[array].shape for array in arrays if group[array].shape != shape}
            if len(shape) != 2 or 0 in shape or wrong:
                raise HistoryFileError(f"{path}: the arrays of group {name!r} have shapes {wrong or {'states': shape}}, "
                                       f"not one (histories, steps) shape with at least one of each: the file is "
                                       f"inconsistent, re-create it")
            if shape_of_first is not None and shape[1] != shape_of_first[1]:
                raise HistoryFileError(f"{path}: group {name!r} holds histories of {shape[1]} steps but group "
                                       f"{names[0]!r} of {shape_of_first[1]}: every history must have the same length")
            if present is not None and arrays != present:
                raise HistoryFileError(f"{path}: group {name!r} holds {list(arrays)} but group {names[0]!r} holds "
                                       f"{list(present)}: every group must hold the same arrays")
            _check_integer_ids(path, {XLAND_ARRAYS[array]: group[array].dtype for array in arrays
                                      if XLAND_ARRAYS[array] in ID_ARRAYS}, f" (group {name!r})")
            shape_of_first, present = shape_of_first or shape, arrays
        attributes = [{key: _plain(value) for key, value in groups[name].attrs.items()} for name in names]
        self._groups = names
        self._tasks = ([int(a[XLAND_TASK_ATTRIBUTE]) for a in attributes]
                       if all(XLAND_TASK_ATTRIBUTE in a for a in attributes) else list(range(len(names))))
        shared = {key: value for key, value in attributes[0].items()
                  if key != XLAND_TASK_ATTRIBUTE and all(a.get(key) == value for a in attributes)}
        metadata = {**{key: _plain(value) for key, value in f.attrs.items()}, **shared, "layout": XLAND_LAYOUT}
        self._layout = {name: {array: [list(groups[name][array].shape), groups[name][array].dtype.str]
                               for array in present} for name in names}
        super().__init__(path, metadata, shape_of_first[1], [groups[name]["states"].shape[0] for name in names],
                         tuple(XLAND_ARRAYS[array] for array in present))

    def sha256(self) -> str:
        """sha256 of the layout (group names, arrays' shapes and dtypes, tasks), not of the contents."""
        return hashlib.sha256(json.dumps({"groups": self._layout, "tasks": self._tasks}, sort_keys=True).encode()).hexdigest()

    def _read(self, f, block, names, steps):
        group = f[self._groups[block]]
        stored = {kit: xland for xland, kit in XLAND_ARRAYS.items()}
        arrays = {name: group[stored[name]][:, steps] for name in names if name != "tasks"}
        if "dones" in arrays:
            arrays["dones"] = arrays["dones"].astype(bool, copy=False)
        if "tasks" in names:
            arrays["tasks"] = np.full(self.block_rows[block], self._tasks[block], dtype=np.int64)
        return arrays


def _plain(value):
    """An HDF5 attribute as plain JSON-able Python (JSON text stored as a string is decoded)."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        if value[:1] in ("{", "["):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                pass
        return value
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def _check_integer_ids(path, dtypes: dict, where: str = ""):
    floats = {name: str(dtype) for name, dtype in dtypes.items() if not np.issubdtype(dtype, np.integer)}
    if floats:
        raise HistoryFileError(f"{path}{where}: {floats} are not integers; observations and actions must be integer "
                               f"ids, which the models embed")


def open_history_file(path, env_family: str | None = None, env_kwargs: dict | None = None) -> HistoryFile:
    """Open a history file lazily, in the kit's format or the XLand-100B layout (told apart by its contents).

    env_family, env_kwargs: the environment of the data, where the file does not record it (XLand-layout
    files); a file that records another one is refused. A missing, corrupt or foreign file raises
    HistoryFileError."""
    path = Path(path)
    if not path.is_file():
        raise HistoryFileError(f"{path}: no such history file; make one with `python -m icrl_lab collect` or "
                               f"Histories.save, or give an XLand-100B file")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") == FORMAT:
                file = IcrlLabFile(path, f)
            elif any(isinstance(item, h5py.Group) for item in f.values()):
                file = XLandFile(path, f)
            else:
                raise HistoryFileError(f"{path} is an HDF5 file but neither an icrl_lab history file (no format = "
                                       f"{FORMAT!r} attribute) nor in the XLand-100B layout (one group per task "
                                       f"holding {list(XLAND_REQUIRED)}): give a file from `python -m icrl_lab "
                                       f"collect` or an XLand-100B file")
    except HistoryFileError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise HistoryFileError(f"{path} is not an HDF5 file, or is truncated or corrupt, and cannot be read ({error}): "
                               f"give a history file from `python -m icrl_lab collect` or an XLand-100B file") from error
    for key, given in (("env_family", env_family), ("env_kwargs", env_kwargs)):
        recorded = file.metadata.get(key)
        if given is not None and recorded is not None and recorded != given:
            raise ValueError(f"{path} records {key}={recorded!r} but {given!r} was given: leave {key} out, the file "
                             f"names its environment")
        if given is not None:
            file.metadata[key] = given
    if "env_family" in file.metadata:
        file.metadata.setdefault("env_kwargs", {})
    return file


def read_xland(path, env_family: str | None = None, env_kwargs: dict | None = None) -> Histories:
    """Read a whole XLand-layout file into memory (one task group after another) as Histories, for the
    in-memory pipeline. env_family, env_kwargs: as for `open_history_file`."""
    file = open_history_file(path, env_family, env_kwargs)
    if file.layout != XLAND_LAYOUT:
        raise HistoryFileError(f"{path} is in icrl_lab's own format, not the XLand-100B layout: read it with "
                               f"icrl_lab.histories.load_histories, which also verifies its checksums")
    return join_histories([file.read_block(index) for index in range(file.num_blocks)], file.metadata)


def _check_count(name: str, value, minimum: int):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed: it must be an integer >= {minimum}")


class StreamingWindows(torch.utils.data.IterableDataset):
    """Training batches of context windows drawn lazily from a history file, with bounded memory.

    A batch is the dict of tensors `ContextWindows.sample` gives (observations, prev_actions, prev_rewards,
    actions, and optimal_actions where the file has them), each window cut anywhere in a history. `workers`
    DataLoader processes read ahead (0: the training process reads itself), each opening the file itself
    and holding `blocks_in_memory` blocks; see the module's description for the design. Every loaded block
    is checked to fit the model: observations below `observation_ids`, actions below `num_actions`.
    windows_per_block: windows drawn before the oldest block is replaced (default: about one per step of
    that block). A streamed run is reproducible for the same seed and worker count, but does not resume to
    bit-identical batches.
    """

    def __init__(self, source, context_steps: int, num_actions: int, observation_ids: int, *, seed: int = 0,
                 workers: int = 1, blocks_in_memory: int = 2, windows_per_block: int | None = None):
        self.file = source if isinstance(source, HistoryFile) else open_history_file(source)
        if not isinstance(context_steps, int) or not 1 <= context_steps <= self.file.num_steps:
            raise ValueError(f"context_steps={context_steps!r} is not allowed: it must be between 1 and the history "
                             f"length {self.file.num_steps}")
        for name, value, minimum in (("num_actions", num_actions, 1), ("observation_ids", observation_ids, 1),
                                     ("workers", workers, 0), ("blocks_in_memory", blocks_in_memory, 1)):
            _check_count(name, value, minimum)
        if windows_per_block is not None:
            _check_count("windows_per_block", windows_per_block, 1)
        self.context_steps, self.num_actions, self.observation_ids = context_steps, num_actions, observation_ids
        self.seed, self.workers, self.blocks_in_memory = check_seed(seed), workers, blocks_in_memory
        self.windows_per_block = windows_per_block
        self.starts_per_history = self.file.num_steps - context_steps + 1
        self.names = ("observations", "prev_actions", "prev_rewards", "actions") + (
            ("optimal_actions",) if "optimal_actions" in self.file.arrays else ())
        self.device = torch.device("cpu")
        self._batch_windows, self._rank, self._batches = None, 0, None

    def sha256(self) -> str | None:
        return self.file.sha256()

    def to(self, device) -> "StreamingWindows":
        """Deliver batches on `device` (from pinned memory when it is a GPU); before the first batch only."""
        if self._batches is not None:
            raise ValueError("the stream has started: choose its device before drawing the first batch")
        self.device = torch.device(device)
        return self

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               rows: slice | None = None) -> dict[str, torch.Tensor]:
        """The next batch of the stream: `batch_size` windows, or the `rows` share of them (one process's part
        of a global batch). `generator` is not used: the workers draw from their own random streams."""
        windows = len(range(batch_size)[rows]) if rows is not None else batch_size
        if self._batches is None:
            self._start(windows)
        elif windows != self._batch_windows:
            raise ValueError(f"the stream delivers batches of {self._batch_windows} windows, not {windows}: draw one "
                             f"batch size from a stream (or close() it and start again)")
        packed = next(self._batches)
        if isinstance(packed, Exception):
            self.close()
            raise packed
        packed = packed.to(self.device, non_blocking=True)
        return {name: packed[index].view(torch.float64).float() if name == "prev_rewards" else packed[index]
                for index, name in enumerate(self.names)}

    def close(self):
        """Stop the workers; a later `sample` starts the stream again from its beginning."""
        self._batches = None  # the DataLoader's iterator shuts its workers down when it is released

    def _start(self, windows: int):
        _check_count("the batch's windows", windows, 1)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self._batch_windows, self._rank = windows, torch.distributed.get_rank() if distributed else 0
        loader = torch.utils.data.DataLoader(self, batch_size=None, num_workers=self.workers,
                                             pin_memory=self.device.type == "cuda")
        self._batches = iter(loader)

    def __getstate__(self):
        return {**self.__dict__, "_batches": None}  # a worker gets the settings, never the parent's iterator

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        random = np.random.default_rng([self.seed, self._rank, worker.id if worker is not None else 0])
        try:
            yield from self._stream(random)
        except ValueError as error:  # HistoryFileError too
            # Passed on whole, so that training raises it with its own message (a worker's exception would
            # reach it wrapped in the worker's traceback).
            yield error

    def _stream(self, random: np.random.Generator):
        order = []

        def next_block():
            if not order:
                order.extend(random.permutation(self.file.num_blocks).tolist())
            return self._load(order.pop())

        buffer = deque(next_block() for _ in range(min(self.blocks_in_memory, self.file.num_blocks)))
        drawn = 0
        while True:
            yield self._draw(random, buffer)
            drawn += self._batch_windows
            oldest = len(buffer[0]["actions"]) * self.file.num_steps
            if self.file.num_blocks > self.blocks_in_memory and drawn >= (self.windows_per_block or
                                                                          max(1, oldest // self.context_steps)):
                buffer.popleft()  # released before the next block is read: at most blocks_in_memory are held
                buffer.append(next_block())
                drawn = 0

    def _load(self, index: int) -> dict[str, np.ndarray]:
        histories = self.file.read_block(index)
        for name, upper in (("observations", self.observation_ids), ("actions", self.num_actions),
                            ("optimal_actions", self.num_actions)):
            array = getattr(histories, name)
            if array is not None and (array.min() < 0 or array.max() >= upper):
                raise ValueError(f"{self.file.path}, block {index}: {name} run from {array.min()} to {array.max()} but "
                                 f"the model takes ids 0 to {upper - 1}: size the model to the data "
                                 f"(recipes.model_config, or its num_obs and num_actions)")
        prev_actions, prev_rewards = previous_actions_and_rewards(histories, self.num_actions)
        compact = np.promote_types(histories.actions.dtype, np.min_scalar_type(self.num_actions))
        arrays = {"observations": histories.observations, "prev_actions": prev_actions.astype(compact),
                  "prev_rewards": prev_rewards, "actions": histories.actions}
        if histories.optimal_actions is not None:
            arrays["optimal_actions"] = histories.optimal_actions
        return arrays

    def _draw(self, random: np.random.Generator, buffer) -> torch.Tensor:
        """One batch: every window from a history drawn uniformly among the loaded blocks' histories.

        Packed into one int64 array (one row per name in `names`; prev_rewards as float64 bits), because
        every tensor passed from a worker costs about a millisecond of shared-memory set-up."""
        size, steps_per_window = self._batch_windows, np.arange(self.context_steps)
        rows_per_block = np.array([len(arrays["actions"]) for arrays in buffer])
        ends = np.cumsum(rows_per_block)
        history = random.integers(ends[-1], size=size)
        block = np.searchsorted(ends, history, side="right")
        row = history - (ends - rows_per_block)[block]
        steps = random.integers(self.starts_per_history, size=size)[:, None] + steps_per_window
        packed = np.empty((len(self.names), size, self.context_steps), dtype=np.int64)
        for index, arrays in enumerate(buffer):
            chosen = np.flatnonzero(block == index)
            for position, name in enumerate(self.names):
                rows = packed[position].view(np.float64) if name == "prev_rewards" else packed[position]
                rows[chosen] = arrays[name][row[chosen, None], steps[chosen]]
        return torch.from_numpy(packed)


def training_stream(data, model_config, context_steps: int, seed: int) -> StreamingWindows:
    """The stream `train` draws from for `data` read lazily: a new one over a HistoryFile, or a
    StreamingWindows as given, checked to match the model and the training settings."""
    if isinstance(data, HistoryFile):
        stream = StreamingWindows(data, context_steps, model_config.num_actions, model_config.observation_ids, seed=seed)
    elif isinstance(data, StreamingWindows):
        stream = data
        differences = [f"{name}={got!r} (training: {want!r})" for name, got, want in (
            ("context_steps", stream.context_steps, context_steps), ("num_actions", stream.num_actions,
                                                                     model_config.num_actions),
            ("observation_ids", stream.observation_ids, model_config.observation_ids), ("seed", stream.seed, seed))
            if got != want]
        if differences:
            raise ValueError(f"the stream was made with {', '.join(differences)}: make it with the training's "
                             f"context_steps and seed and the model's num_actions and observation_ids")
    else:
        raise ValueError(f"histories is a {type(data).__name__}: give Histories, a file opened with "
                         f"streaming.open_history_file, or a streaming.StreamingWindows")
    if model_config.target not in stream.file.arrays:
        raise ValueError(f"a {model_config.kind} model learns {model_config.target}, which {stream.file.path} lacks: "
                         f"train 'ad', or use data that records them")
    return stream
