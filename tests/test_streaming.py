"""Reading history files block by block: the XLand-100B layout, the kit's own format, and the training
stream drawn from them with bounded memory."""
import json
import re
import subprocess
import sys
import weakref

import h5py
import numpy as np
import pytest
import torch

from icrl_lab.cli import main
from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals
from icrl_lab.histories import HistoryFileError, load_histories, previous_actions_and_rewards
from icrl_lab.models import ADConfig, DPTConfig, load_model
from icrl_lab.streaming import (HistoryFile, StreamingWindows, XLandFile, open_history_file, read_xland,
                                training_stream)
from icrl_lab.train import TrainConfig, train

GOALS, PER_GOAL, STEPS = 6, 4, 200
SMALL = dict(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=20, d_model=16, n_layer=1, n_head=2)


@pytest.fixture(scope="module")
def source():
    """Dark Room AD^eps histories, PER_GOAL for each of GOALS goals, rows of a goal next to each other."""
    return collect_noise_distillation("DarkRoom", dark_room_goals("train")[:GOALS], num_steps=STEPS,
                                      histories_per_task=PER_GOAL, seed=0)


def write_xland(path, data, groups=GOALS, arrays=("states", "actions", "rewards", "dones", "expert_actions"),
                states=None):
    """`data` in the XLand-100B layout as the real files store it: one group per task, uint8 states and
    actions, float16 rewards, gzip chunks of (1 history, up to 4096 steps)."""
    stored = {"states": data.observations.astype(np.uint8) if states is None else states,
              "actions": data.actions.astype(np.uint8), "rewards": data.rewards.astype(np.float16),
              "dones": data.dones, "expert_actions": data.optimal_actions.astype(np.uint8)}
    rows = data.num_histories // groups
    with h5py.File(path, "w") as f:
        f.attrs["collected-by"] = "a test"
        for task in range(groups):
            group = f.create_group(str(task))
            group.attrs["env-id"] = "DarkRoom"
            group.attrs["ruleset-id"] = 100 + task
            for name in arrays:
                array = stored[name][task * rows:(task + 1) * rows]
                group.create_dataset(name, data=array, compression="gzip", chunks=(1,) + array.shape[1:])
    return path


@pytest.fixture(scope="module")
def xland_path(source, tmp_path_factory):
    return write_xland(tmp_path_factory.mktemp("xland") / "xland.h5", source)


def test_an_xland_file_reads_back_equal_to_its_source_arrays(source, xland_path):
    data = read_xland(xland_path, env_family="DarkRoom")
    for name in ("observations", "actions", "rewards", "dones", "optimal_actions"):
        np.testing.assert_array_equal(getattr(data, name), getattr(source, name))
    assert data.observations.dtype == np.uint8 and data.rewards.dtype == np.float16 and data.dones.dtype == bool
    np.testing.assert_array_equal(data.tasks, np.repeat(100 + np.arange(GOALS), PER_GOAL))  # ruleset-id
    assert data.metadata["env_family"] == "DarkRoom" and data.metadata["env_kwargs"] == {}
    assert data.metadata["env-id"] == "DarkRoom" and data.metadata["collected-by"] == "a test"
    assert "ruleset-id" not in data.metadata  # it differs by group: it is the task, not metadata
    assert data.provenance().data_last_episode_return == pytest.approx(source.provenance().data_last_episode_return)


def test_an_xland_file_opens_lazily_one_block_per_task(source, xland_path):
    file = open_history_file(xland_path, env_family="DarkRoom")
    assert isinstance(file, XLandFile) and file.layout == "xland-100b"
    assert (file.num_histories, file.num_steps, file.num_blocks) == (GOALS * PER_GOAL, STEPS, GOALS)
    block = file.read_block(2)
    np.testing.assert_array_equal(block.actions, source.actions[2 * PER_GOAL:3 * PER_GOAL])
    np.testing.assert_array_equal(block.optimal_actions, source.optimal_actions[2 * PER_GOAL:3 * PER_GOAL])
    assert file.provenance().data_last_episode_return == pytest.approx(source.provenance().data_last_episode_return)
    assert file.sha256() == open_history_file(xland_path).sha256()  # an identity of the layout, stable
    with pytest.raises(ValueError, match="blocks 0 to 5"):
        file.read_block(6)


def test_the_kit_format_opens_lazily_with_the_sha256_of_the_arrays(source, tmp_path):
    path = source.save(tmp_path / "data.h5")
    file = open_history_file(path)
    assert file.layout == "icrl_lab" and file.metadata == source.metadata
    assert file.sha256() == source.sha256() == load_histories(path).sha256()
    blocks = [file.read_block(i) for i in range(file.num_blocks)]
    for name in ("observations", "actions", "epsilon", "optimal_actions", "tasks"):
        np.testing.assert_array_equal(np.concatenate([getattr(b, name) for b in blocks]), getattr(source, name))
    assert file.provenance().data_last_episode_return == pytest.approx(source.provenance().data_last_episode_return)
    with pytest.raises(ValueError, match="records env_family='DarkRoom'"):
        open_history_file(path, env_family="DarkKeyToDoor")


def test_a_block_of_the_kit_format_is_a_run_of_chunk_rows(source, tmp_path):
    path = source.save(tmp_path / "data.h5")
    with h5py.File(path, "a") as f:  # re-chunk: 5 histories a chunk, so 24 histories make blocks of 5, 5, 5, 5, 4
        for name in ("observations", "actions", "rewards", "dones", "epsilon", "optimal_actions"):
            array = f[name][()]
            del f[name]
            f.create_dataset(name, data=array, chunks=(5, STEPS), compression="gzip")
    file = open_history_file(path)
    assert file.block_rows == (5, 5, 5, 5, 4)
    np.testing.assert_array_equal(file.read_block(4).observations, source.observations[20:])


@pytest.mark.parametrize("config_class", [ADConfig, DPTConfig])
def test_ad_and_dpt_train_from_an_xland_file_in_memory_and_streamed(xland_path, config_class):
    config = TrainConfig(updates=4, batch_size=8, context_steps=20, log_every=2)
    for data in (read_xland(xland_path, env_family="DarkRoom"), open_history_file(xland_path, env_family="DarkRoom")):
        model, log = train(config_class(**SMALL), data, config, progress=False)
        assert len(log) == 2 and np.isfinite(log[-1]["loss"])


def test_train_takes_a_stream_made_with_its_settings_and_refuses_another(xland_path):
    config = TrainConfig(updates=2, batch_size=4, context_steps=20)
    stream = StreamingWindows(xland_path, 20, num_actions=5, observation_ids=81, workers=0)
    _, log = train(ADConfig(**SMALL), stream, config, progress=False)
    assert np.isfinite(log[-1]["loss"])
    other = StreamingWindows(xland_path, 10, num_actions=5, observation_ids=81, seed=1)
    with pytest.raises(ValueError, match=r"context_steps=10 \(training: 20\), seed=1 \(training: 0\)"):
        train(ADConfig(**SMALL), other, config, progress=False)


def test_streamed_batches_are_windows_of_the_data(source, xland_path):
    context = 30
    stream = StreamingWindows(xland_path, context, num_actions=5, observation_ids=81, workers=0)
    batch = stream.sample(16)
    assert set(batch) == {"observations", "prev_actions", "prev_rewards", "actions", "optimal_actions"}
    for name, tensor in batch.items():
        assert tensor.shape == (16, context)
        assert tensor.dtype == (torch.float32 if name == "prev_rewards" else torch.int64)
    prev_actions, prev_rewards = previous_actions_and_rewards(source, 5)
    arrays = {"observations": source.observations, "prev_actions": prev_actions, "prev_rewards": prev_rewards,
              "actions": source.actions, "optimal_actions": source.optimal_actions}
    windows = {name: np.lib.stride_tricks.sliding_window_view(array, context, axis=1) for name, array in arrays.items()}
    for i in range(16):
        matches = np.ones(windows["actions"].shape[:2], dtype=bool)
        for name, view in windows.items():
            matches &= np.all(view == batch[name][i].numpy(), axis=-1)
        assert matches.any(), f"window {i} is not a window of the data"


def test_a_share_of_the_batch_has_its_rows_and_the_size_stays(xland_path):
    stream = StreamingWindows(xland_path, 20, num_actions=5, observation_ids=81, workers=0)
    assert stream.sample(32, rows=slice(8, 16))["actions"].shape == (8, 20)
    with pytest.raises(ValueError, match="batches of 8 windows, not 32"):
        stream.sample(32)


def test_two_workers_draw_different_windows_and_a_run_repeats(xland_path):
    def first_batches(seed):
        stream = StreamingWindows(xland_path, 20, num_actions=5, observation_ids=81, workers=2, seed=seed)
        batches = [stream.sample(8)["observations"] for _ in range(4)]
        stream.close()
        return batches

    batches = first_batches(0)
    assert not torch.equal(batches[0], batches[1]), "the two workers drew the same windows"
    assert all(torch.equal(a, b) for a, b in zip(batches, first_batches(0)))
    assert not torch.equal(batches[0], first_batches(1)[0])


def test_the_stream_holds_at_most_blocks_in_memory_blocks_and_visits_them_all(xland_path, monkeypatch):
    alive, visited = [], []
    read_block = HistoryFile.read_block

    def tracked(self, index):
        block = read_block(self, index)
        alive.append(weakref.ref(block.observations))
        visited.append(index)
        return block

    monkeypatch.setattr(HistoryFile, "read_block", tracked)
    stream = StreamingWindows(xland_path, 20, num_actions=5, observation_ids=81, workers=0, blocks_in_memory=2,
                              windows_per_block=8)
    for _ in range(40):
        stream.sample(8)
        assert sum(ref() is not None for ref in alive) <= 2
    assert sorted(set(visited)) == list(range(GOALS)) and len(visited) >= 3 * GOALS


def test_blocks_whose_ids_do_not_fit_the_model_are_refused(xland_path):
    stream = StreamingWindows(xland_path, 20, num_actions=5, observation_ids=40, workers=1)
    with pytest.raises(ValueError, match=r"block \d: observations run from \d+ to \d+ but the model takes ids 0 to 39"):
        stream.sample(8)


def test_dpt_needs_expert_actions(source, tmp_path):
    path = write_xland(tmp_path / "no_expert.h5", source, arrays=("states", "actions", "rewards", "dones"))
    file = open_history_file(path, env_family="DarkRoom")
    assert file.arrays == ("observations", "actions", "rewards", "dones")
    with pytest.raises(ValueError, match="learns optimal_actions, which .* lacks"):
        training_stream(file, DPTConfig(**SMALL), 20, 0)


def test_bad_files_are_refused_with_the_reason(source, tmp_path):
    with pytest.raises(HistoryFileError, match="no such history file"):
        open_history_file(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(HistoryFileError, match="is not an HDF5 file"):
        open_history_file(tmp_path / "text.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["numbers"] = np.arange(3)
    with pytest.raises(HistoryFileError, match="neither an icrl_lab history file .* nor in the XLand-100B layout"):
        open_history_file(tmp_path / "foreign.h5")
    write_xland(tmp_path / "partial.h5", source, arrays=("states", "actions", "dones"))
    with pytest.raises(HistoryFileError, match=r"the group '0' lacks \['rewards'\]"):
        open_history_file(tmp_path / "partial.h5")
    views = np.zeros((GOALS * PER_GOAL, STEPS, 5, 5), dtype=np.uint8)
    write_xland(tmp_path / "images.h5", source, states=views)
    with pytest.raises(HistoryFileError, match=r"are \(5, 5\) views per step .* one integer observation id per step"):
        read_xland(tmp_path / "images.h5")
    write_xland(tmp_path / "float.h5", source, states=source.observations.astype(np.float32))
    with pytest.raises(HistoryFileError, match="are not integers"):
        open_history_file(tmp_path / "float.h5")
    with pytest.raises(HistoryFileError, match="read it with icrl_lab.histories.load_histories"):
        read_xland(source.save(tmp_path / "kit.h5"))


CLI_SMALL = ["--updates", "3", "--batch-size", "8", "--context-steps", "20", "--d-model", "16", "--n-layer", "1",
             "--n-head", "2"]


def test_the_command_line_trains_streamed_from_an_xland_file(xland_path, tmp_path):
    result = subprocess.run([sys.executable, "-m", "icrl_lab", "train", "--data", str(xland_path), "--env-family",
                             "DarkRoom", "--stream", "--loader-workers", "1", "--kind", "dpt", "--out",
                             str(tmp_path / "dpt"), *CLI_SMALL], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["updates"] == 3
    model, record = load_model(tmp_path / "dpt")
    assert record["env_family"] == "DarkRoom" and record["data"]["layout"] == "xland-100b"
    assert record["data_sha256"] == open_history_file(xland_path).sha256() and model.config.kind == "dpt"


@pytest.mark.parametrize("options, message", [
    ([], "pass env_family .* or --env-family"),
    (["--env-family", "DarkRoom", "--loader-workers", "2"], "set how --stream reads the file: add --stream"),
    (["--env-family", "DarkRoom", "--env-kwargs", "9"], "--env-kwargs '9' is not a JSON object"),
    (["--env-family", "DarkRoom", "--stream", "--blocks-in-memory", "0"], "blocks_in_memory=0 is not allowed"),
])
def test_the_command_line_refuses_what_it_cannot_train_on(xland_path, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", str(xland_path), "--out", str(tmp_path / "ad"), *CLI_SMALL, *options])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and re.search(message, error), error
