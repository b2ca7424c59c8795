"""Nothing lost, nothing silently wrong: every bad input or interruption ends in a clear error or the right result.

Each test is small (a few histories of a few episodes, a one-layer model, a few updates); the CLI runs
in-process through `cli.main`, which exits like the command line (status 2 and "error: ...").
"""
import json
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from icrl_lab import cli
from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import BatchedDarkKeyToDoor, BatchedDarkRoom, DarkRoomEnv, dark_room_goals
from icrl_lab.histories import Histories, HistoryFileError, load_histories
from icrl_lab.models import ADConfig, ICRLTransformer, load_model, save_model
from icrl_lab.sources import collect_rl_histories
from icrl_lab.train import CHECKPOINT_FILES, STAGING, TrainConfig, TrainingDiverged, train

MODEL = dict(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=10, d_model=16, n_layer=1, n_head=2)
RUN = dict(updates=6, batch_size=4, context_steps=10, checkpoint_every=2, seed=1)
TINY_TRAIN = ["--updates", "4", "--batch-size", "4", "--context-steps", "10", "--window-steps", "10", "--d-model", "16",
              "--n-layer", "1", "--n-head", "2", "--checkpoint-every", "2"]


def tiny_data(seed=0, goals=4):
    return collect_noise_distillation("DarkRoom", dark_room_goals("train")[:goals], num_steps=60, floor=0.3, seed=seed)


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, data):
    return data.save(tmp_path_factory.mktemp("data") / "data.h5")


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The weights of an uninterrupted run."""
    model, _ = train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path_factory.mktemp("straight"),
                     progress=False)
    return model.state_dict()


def run_cli(capsys, *argv):
    """(exit status, stderr) of the command line run in-process; status 0 when it printed a result."""
    try:
        cli.main(list(map(str, argv)))
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- data loss --------------------------------------------------------------------------------------------------------

def test_collect_does_not_replace_a_file_without_overwrite(tmp_path, capsys):
    out = tmp_path / "data.h5"
    out.write_bytes(b"precious")
    status, err = run_cli(capsys, "collect", "--num-steps", "20", "--out", out)
    assert status == 2 and "pass --overwrite to replace it" in err
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("target", ["folder", "/dev/full"])
def test_collect_and_save_write_only_regular_files(tmp_path, capsys, data, target):
    out = tmp_path / "a_folder" if target == "folder" else target
    if target == "folder":
        out.mkdir()
    status, err = run_cli(capsys, "collect", "--num-steps", "20", "--out", out, "--overwrite")
    assert status == 2 and "is not a regular file" in err
    with pytest.raises(FileExistsError, match="is not a regular file"):
        data.save(out)


def test_save_inside_a_file_is_refused(tmp_path, data):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is not a folder"):
        data.save(tmp_path / "file" / "data.h5")
    with pytest.raises(FileExistsError, match="is not a directory"):
        save_model(ICRLTransformer(ADConfig(**MODEL)), tmp_path / "file")


def test_unwritable_output_is_a_clear_error_and_writes_nothing(tmp_path, capsys, data, monkeypatch):
    # The tests may run as root, who can write anywhere: the refusal is simulated.
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    status, err = run_cli(capsys, "collect", "--num-steps", "20", "--out", tmp_path / "data.h5")
    assert status == 2 and "permission denied" in err and not (tmp_path / "data.h5").exists()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(h5py, "File", refuse)
    with pytest.raises(PermissionError, match="cannot write .*data.h5: Permission denied; choose a folder"):
        data.save(tmp_path / "data.h5")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_checkpoint_folder_is_refused_before_training(tmp_path, data, monkeypatch):
    import icrl_lab.train as train_module

    monkeypatch.setattr(train_module.os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="cannot write into --out"):
        train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path / "ck", progress=False)


def test_train_does_not_replace_a_checkpoint_without_resume_or_overwrite(tmp_path, data, data_file, capsys):
    out = tmp_path / "ck"
    assert run_cli(capsys, "train", "--data", data_file, "--out", out, *TINY_TRAIN)[0] == 0
    before = {name: (out / name).read_bytes() for name in CHECKPOINT_FILES}
    status, err = run_cli(capsys, "train", "--data", data_file, "--out", out, *TINY_TRAIN)
    assert status == 2 and "already holds a checkpoint" in err and "--resume" in err and "--overwrite" in err
    assert {name: (out / name).read_bytes() for name in CHECKPOINT_FILES} == before
    for stale in ("results.json", "figure.png", "evaluation.json"):
        (out / stale).write_text("{}")
    status, err = run_cli(capsys, "train", "--data", data_file, "--out", out, *TINY_TRAIN, "--seed", "5", "--overwrite")
    assert status == 0, err
    assert not any((out / stale).exists() for stale in ("results.json", "figure.png", "evaluation.json"))
    assert load_model(out)[1]["train_config"]["seed"] == 5
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=out, resume=True, overwrite=True, progress=False)


def test_train_into_a_file_is_refused(tmp_path, data):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is not a folder"):
        train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path / "file", progress=False)


def test_ctrl_c_during_collect_exits_130_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.File, "create_dataset", interrupted)
    out = tmp_path / "data.h5"
    status, err = run_cli(capsys, "collect", "--num-steps", "20", "--out", out)
    assert status == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == [], "neither the file nor its temporary file is left"


def test_a_killed_writers_temporary_file_is_removed_by_the_next_save(tmp_path, data):
    dead = tmp_path / ".data.h5.4194999.tmp"  # above Linux's largest pid: no such process
    alive = tmp_path / f".data.h5.{os.getppid()}.tmp"
    dead.write_bytes(b"half")
    alive.write_bytes(b"being written")
    data.save(tmp_path / "data.h5")
    assert not dead.exists() and alive.exists()
    load_histories(tmp_path / "data.h5")


# --- checkpoints: one unit, verified on resume ------------------------------------------------------------------------

REPLACES_PER_CHECKPOINT = 8  # save_model's 2 renames, the manifest's, and 5 moves into place


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it."""


def test_a_checkpoint_takes_eight_renames(tmp_path, data, monkeypatch):
    calls, real = [], os.replace
    monkeypatch.setattr(os, "replace", lambda *a: (calls.append(a), real(*a))[1])
    train(ADConfig(**MODEL), data, TrainConfig(**{**RUN, "checkpoint_every": 0}), out_dir=tmp_path, progress=False)
    assert len(calls) == REPLACES_PER_CHECKPOINT


@pytest.mark.parametrize("k", range(REPLACES_PER_CHECKPOINT + 1))
def test_a_kill_at_any_point_of_a_checkpoint_then_resume_gives_the_uninterrupted_weights(tmp_path, data, straight,
                                                                                        monkeypatch, k):
    calls, real = [0], os.replace

    def replace(*args):
        if calls[0] == REPLACES_PER_CHECKPOINT + k:  # the first checkpoint (update 2) is whole; kill the second
            raise Killed
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path, progress=False)
    monkeypatch.setattr(os, "replace", real)
    resumed, _ = train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path, resume=True, progress=False)
    assert same_weights(resumed.state_dict(), straight)
    assert not (tmp_path / STAGING).exists()
    assert json.loads((tmp_path / "checkpoint.json").read_text())["update"] == 6


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_resume_refuses_a_mixed_checkpoint_set(tmp_path, data, name):
    train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path / "a", stop_at=2, progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "old")
    train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path / "a", resume=True, stop_at=4, progress=False)
    shutil.copy(tmp_path / "old" / name, tmp_path / "a" / name)
    with pytest.raises(ValueError, match=f"mixed or damaged set: \\['{name}'\\] do not match the manifest of update 4"):
        train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path / "a", resume=True, progress=False)


@pytest.mark.parametrize("field, model_change, train_change", [
    ("learning_rate", {}, {"learning_rate": 3e-3}),
    ("seed", {}, {"seed": 2}),
    ("updates", {}, {"updates": 8}),
    ("batch_size", {}, {"batch_size": 8}),
    ("context_steps", {}, {"context_steps": 8}),
    ("window_steps", {"window_steps": 8}, {}),
    ("d_model", {"d_model": 32}, {}),
    ("n_layer", {"n_layer": 2}, {}),
])
def test_resume_refuses_other_settings_naming_the_field_and_both_values(tmp_path, data, field, model_change,
                                                                       train_change):
    train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path, stop_at=2, progress=False)
    old = {**vars(ADConfig(**MODEL)), **vars(TrainConfig(**RUN))}[field]
    new = {**model_change, **train_change}[field]
    with pytest.raises(ValueError, match=f"cannot resume.*{field}: {old!r} in the checkpoint, {new!r} now"):
        train(ADConfig(**{**MODEL, **model_change}), data, TrainConfig(**{**RUN, **train_change}), out_dir=tmp_path,
              resume=True, progress=False)


def test_resume_refuses_other_data_but_takes_other_logging(tmp_path, data, straight):
    train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path, stop_at=2, progress=False)
    with pytest.raises(ValueError, match="data \\(sha256 of the history arrays\\): '[0-9a-f]{12}...' in the checkpoint"):
        train(ADConfig(**MODEL), tiny_data(seed=1), TrainConfig(**RUN), out_dir=tmp_path, resume=True, progress=False)
    resumed, _ = train(ADConfig(**MODEL), data, TrainConfig(**{**RUN, "log_every": 1, "checkpoint_every": 3}),
                       out_dir=tmp_path, resume=True, progress=False)
    assert same_weights(resumed.state_dict(), straight)


def test_resume_with_another_data_file_is_refused_on_the_command_line(tmp_path, data_file, capsys):
    other = tiny_data(seed=1).save(tmp_path / "other.h5")
    assert run_cli(capsys, "train", "--data", data_file, "--out", tmp_path / "ck", *TINY_TRAIN)[0] == 0
    status, err = run_cli(capsys, "train", "--data", other, "--out", tmp_path / "ck", *TINY_TRAIN, "--resume")
    assert status == 2 and "data (sha256 of the history arrays)" in err


# --- training that diverges, batches that cannot fit -------------------------------------------------------------------

@pytest.mark.parametrize("rate", [float("inf"), float("nan"), 0.0, -1e-3])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused(rate):
    with pytest.raises(ValueError, match="learning_rate=.* is not allowed: it must be a finite number > 0"):
        TrainConfig(learning_rate=rate)


def test_cli_lr_inf_is_a_clear_error(tmp_path, data_file, capsys):
    status, err = run_cli(capsys, "train", "--data", data_file, "--out", tmp_path / "ck", *TINY_TRAIN,
                          "--learning-rate", "inf")
    assert status == 2 and "learning_rate=inf is not allowed" in err and not (tmp_path / "ck").exists()


def test_a_huge_learning_rate_stops_with_a_clear_error_and_saves_no_nan_weights(tmp_path, data):
    with pytest.raises(TrainingDiverged, match="training diverged: .* not finite .* smaller learning_rate"):
        train(ADConfig(**MODEL), data, TrainConfig(**{**RUN, "updates": 20, "learning_rate": 1e6}), out_dir=tmp_path,
              progress=False)
    if (tmp_path / "model.safetensors").exists():
        model, _ = load_model(tmp_path)
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_nan_loss_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    calls, real = [0], ICRLTransformer.loss

    def loss(self, batch):
        calls[0] += 1
        value = real(self, batch)
        return value * float("nan") if calls[0] == 3 else value

    monkeypatch.setattr(ICRLTransformer, "loss", loss)
    with pytest.raises(TrainingDiverged, match="by update 3 .* the last good checkpoint in .* is kept"):
        train(ADConfig(**MODEL), data, TrainConfig(**RUN), out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["update"] == 2
    model, record = load_model(tmp_path)
    assert record["updates_done"] == 2 and all(torch.isfinite(p).all() for p in model.parameters())


def test_a_batch_too_big_for_memory_is_refused_with_the_estimate_and_the_fix(data):
    with pytest.raises(ValueError, match=r"batch_size=1000000000 needs about .* GiB .* use batch_size <= \d+"):
        train(ADConfig(**MODEL), data, TrainConfig(**{**RUN, "batch_size": 10**9}), progress=False)


# --- bad values ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "NaN", "-1", "Infinity", '"one"'])
def test_random_source_concentration_outside_its_range_is_refused(tmp_path, capsys, value):
    out = tmp_path / "data.h5"
    status, err = run_cli(capsys, "collect", "--env", "BernoulliBandit", "--source", "random", "--num-steps", "500",
                          "--option", f"concentration={value}", "--out", out)
    assert status == 2 and "concentration=" in err and "it must be a finite number > 0" in err
    assert not out.exists()


@pytest.mark.parametrize("options, message", [
    (["--source", "random", "--option", "concentration"], "is not NAME=JSON"),
    (["--source", "random", "--option", "concentration=abc"], "is not JSON"),
    (["--source", "random", "--option", "temperature=1"], "['temperature'] are not options of random"),
    (["--option", "concentration=1"], "--option is not read by the noise_distillation source"),
    (["--source", "q_learning", "--max-perf", "0.3"], "['--max-perf'] would be ignored"),
    (["--num-tasks", "10"], "--num-tasks (grids use the paper's task split)"),
    (["--source", "q_learning", "--option", "learning_rate=NaN"], "learning_rate=nan is not allowed"),
])
def test_collect_options_that_would_be_misread_or_ignored_are_refused(tmp_path, capsys, options, message):
    status, err = run_cli(capsys, "collect", "--num-steps", "20", *options, "--out", tmp_path / "d.h5")
    assert status == 2 and message in err, err


@pytest.mark.parametrize("recipe", ["dark_room_adeps", "dark_room_adeps_whole_history"])
def test_resuming_a_run_that_is_not_there_says_so_before_collecting(tmp_path, capsys, recipe):
    status, err = run_cli(capsys, "reproduce", recipe, "--out", tmp_path / "r", "--resume")
    assert status == 2 and f"holds no run of {recipe} to resume" in err and "start it without --resume" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["collect", "evaluate", "reproduce"])
@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seeds_outside_the_allowed_range_are_refused(tmp_path, capsys, command, seed):
    argv = {"collect": ["collect", "--num-steps", "20", "--out", tmp_path / "d.h5"],
            "evaluate": ["evaluate", "dark_room_adeps"],
            "reproduce": ["reproduce", "dark_room_adeps", "--out", tmp_path / "r"]}[command]
    status, err = run_cli(capsys, *argv, "--seed", seed)
    assert status == 2 and f"--seed={seed} is not allowed: it must be an integer from 0 to 4294967295" in err
    with pytest.raises(ValueError, match="seed=.* is not allowed"):
        TrainConfig(seed=seed)


@pytest.mark.parametrize("argv, message", [
    (["--num-steps", "5"], "num_steps=5 is shorter than one DarkRoom episode (20 steps)"),
    (["--env", "BernoulliBandit", "--source", "random", "--num-steps", "100"],
     "num_steps=100 is shorter than one BernoulliBandit episode (500 steps)"),
    (["--env", "DarkKeyToDoor", "--num-steps", "39"], "num_steps=39 is shorter than one DarkKeyToDoor episode"),
    (["--env", "BernoulliBandit", "--source", "ucb1", "--num-tasks", "0"], "n=0 is not allowed"),
])
def test_histories_shorter_than_an_episode_or_without_tasks_are_refused(tmp_path, capsys, argv, message):
    status, err = run_cli(capsys, "collect", *argv, "--out", tmp_path / "d.h5")
    assert status == 2 and message in err, err
    assert not (tmp_path / "d.h5").exists()


def test_empty_task_sets_and_empty_histories_are_refused():
    empty = np.zeros((0, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="tasks is empty"):
        collect_rl_histories("DarkRoom", empty, "random", num_steps=20)
    with pytest.raises(ValueError, match="tasks is empty"):
        collect_noise_distillation("DarkRoom", empty, num_steps=20, floor=0.1)
    with pytest.raises(ValueError, match="at least one history"):
        Histories(np.zeros((0, 5)), np.zeros((0, 5)), np.zeros((0, 5)), np.zeros((0, 5), bool), empty)


def test_loaded_histories_without_a_complete_episode_say_so(tmp_path, data):
    short = Histories(data.observations[:, :5], data.actions[:, :5], data.rewards[:, :5], data.dones[:, :5],
                      data.tasks, metadata=data.metadata)
    with pytest.raises(ValueError, match="hold no complete episode in their 5 steps"):
        short.summary()


@pytest.mark.parametrize("goal", [(2.7, 3), (float("nan"), 3), (True, 3), ("2", "x"), (1, 2, 3)])
def test_a_goal_that_is_not_a_pair_of_whole_numbers_is_refused(goal):
    with pytest.raises(ValueError, match="is not a \\(row, col\\) pair of integers"):
        DarkRoomEnv(goal=goal)


def test_cell_arrays_of_non_integers_are_refused():
    with pytest.raises(ValueError, match="goals must hold whole numbers .* 2.7"):
        BatchedDarkRoom(np.array([[2.7, 3.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="tasks must hold whole numbers"):
        BatchedDarkKeyToDoor([[0, 0, 1.5, 1]])
    assert BatchedDarkRoom(np.array([[2.0, 3.0]])).tasks.tolist() == [[2, 3]], "whole floats are fine"


@pytest.mark.parametrize("n_head", [0, -2])
def test_n_head_zero_is_a_clear_error(n_head):
    with pytest.raises(ValueError, match=f"n_head={n_head} is not allowed: it must be >= 1"):
        ADConfig(**{**MODEL, "n_head": n_head})


def test_cli_n_head_zero_is_a_clear_error(tmp_path, data_file, capsys):
    status, err = run_cli(capsys, "train", "--data", data_file, "--out", tmp_path / "ck", *TINY_TRAIN, "--n-head", "0")
    assert status == 2 and "n_head=0 is not allowed" in err


# --- damaged files ---------------------------------------------------------------------------------------------------

def test_a_bit_flip_in_a_history_file_names_the_array(tmp_path, data):
    path = data.save(tmp_path / "data.h5")
    with h5py.File(path, "r") as f:
        offset = f["tasks"].id.get_offset()  # stored uncompressed: flip one of its bits in the file's bytes
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(HistoryFileError, match="the array 'tasks' does not match the sha256 .* re-create it"):
        load_histories(path)


def test_a_changed_value_in_a_compressed_array_names_the_array(tmp_path, data):
    path = data.save(tmp_path / "data.h5")
    with h5py.File(path, "r+") as f:
        f["actions"][0, 0] = (f["actions"][0, 0] + 1) % 5
    with pytest.raises(HistoryFileError, match="the array 'actions' does not match"):
        load_histories(path)


@pytest.mark.parametrize("change, message", [
    ("goal off the grid", "tasks do not fit the DarkRoom environment"),
    ("observation out of range", "observations run from \\d+ to 81 but the DarkRoom environment"),
    ("action out of range", "actions run from 0 to 7"),
])
def test_histories_that_cannot_come_from_their_environment_are_refused(tmp_path, data, change, message):
    arrays = {name: getattr(data, name).copy() for name in ("observations", "actions", "rewards", "dones", "tasks",
                                                           "epsilon", "optimal_actions")}
    if change == "goal off the grid":
        arrays["tasks"][0] = (9, 3)
    elif change == "observation out of range":
        arrays["observations"][0, 0] = 81
    else:
        arrays["actions"][1, 1] = 7
    path = Histories(**arrays, metadata=data.metadata).save(tmp_path / "data.h5")
    with pytest.raises(HistoryFileError, match=message):
        load_histories(path)


def test_overwritten_bytes_inside_the_weights_are_refused(tmp_path):
    save_model(ICRLTransformer(ADConfig(**MODEL)), tmp_path, {"env_family": "DarkRoom", "env_kwargs": {}})
    path = tmp_path / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 8] = b"\x00" * 8  # inside a tensor: the file still parses
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match the weights_sha256 in config.json"):
        load_model(tmp_path)


@pytest.mark.parametrize("edit", [("config", "window_steps", 40), (None, "env_family", "DarkKeyToDoor"),
                                  (None, "kind", "dpt")])
def test_an_edited_config_json_is_refused_naming_the_mismatch(tmp_path, edit):
    save_model(ICRLTransformer(ADConfig(**MODEL)), tmp_path, {"env_family": "DarkRoom", "env_kwargs": {}})
    record = json.loads((tmp_path / "config.json").read_text())
    section, key, value = edit
    (record[section] if section else record)[key] = value
    (tmp_path / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="config.json was edited after saving.*window_steps or env_family"):
        load_model(tmp_path)


def test_a_record_without_env_family_is_a_clear_cli_error(tmp_path, data, capsys):
    save_model(ICRLTransformer(ADConfig(**MODEL)), tmp_path / "m")
    status, err = run_cli(capsys, "evaluate", tmp_path / "m", "--episodes", "1")
    assert status == 2 and "the checkpoint record lacks ['env_family'" in err
    no_family = {k: v for k, v in data.metadata.items() if k != "env_family"}
    path = Histories(data.observations, data.actions, data.rewards, data.dones, data.tasks,
                     metadata=no_family).save(tmp_path / "d.h5")
    status, err = run_cli(capsys, "train", "--data", path, "--out", tmp_path / "ck", *TINY_TRAIN)
    assert status == 2 and "metadata lacks ['env_family']" in err


@pytest.mark.parametrize("damage", ["not a file", "not safetensors"])
def test_weights_of_the_wrong_type_are_a_clear_error(tmp_path, damage, capsys):
    save_model(ICRLTransformer(ADConfig(**MODEL)), tmp_path / "m", {"env_family": "DarkRoom", "env_kwargs": {}})
    weights = tmp_path / "m" / "model.safetensors"
    weights.unlink()
    if damage == "not a file":
        weights.mkdir()
    else:
        weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
        record = json.loads((tmp_path / "m" / "config.json").read_text())
        del record["weights_sha256"]  # as in a record from before the hashes: the loader's own check answers
        (tmp_path / "m" / "config.json").write_text(json.dumps(record))
    status, err = run_cli(capsys, "evaluate", tmp_path / "m", "--episodes", "1")
    assert status == 2 and ("is not a saved model" in err or "corrupt or incompatible" in err), err


def test_compare_without_saved_per_task_values_is_a_clear_cli_error(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "evaluation.json").write_text("{}")  # as saved before per-task values were kept
    status, err = run_cli(capsys, "compare", tmp_path / "a", tmp_path / "a")
    assert status == 2 and "evaluation-per-task.csv does not exist" in err and "--save" in err, err


def test_a_history_path_that_is_a_folder_is_a_clear_error(tmp_path, capsys):
    status, err = run_cli(capsys, "train", "--data", tmp_path, "--out", tmp_path / "ck", *TINY_TRAIN)
    assert status == 2 and "no such history file" in err


@pytest.mark.parametrize("exploration, message", [
    ('{"floor": 2}', "it must name a schedule and its settings"),
    ('{"schedule": "linear", "flor": 2}', "unexpected keyword argument 'flor'"),
    ("3", "it must name a schedule"),
])
def test_a_malformed_exploration_schedule_is_a_clear_error(tmp_path, capsys, exploration, message):
    status, err = run_cli(capsys, "collect", "--num-steps", "20", "--source", "q_learning", "--option",
                          f"exploration={exploration}", "--out", tmp_path / "d.h5")
    assert status == 2 and "exploration=" in err and message in err, err


@pytest.mark.parametrize("device, message", [("gpu", "is not a device torch knows"),
                                             ("cuda:99", "is not available here")])
def test_an_unknown_or_absent_device_is_refused_before_anything_is_written(tmp_path, data, device, message):
    with pytest.raises(ValueError, match=message):
        train(ADConfig(**MODEL), data, TrainConfig(**{**RUN, "device": device}), out_dir=tmp_path / "ck", progress=False)
    assert not (tmp_path / "ck").exists()


def test_data_the_model_cannot_read_is_refused(data):
    with pytest.raises(ValueError, match="the data has observations up to .* but the model takes num_obs=25"):
        train(ADConfig(**{**MODEL, "num_obs": 25, "obs_factors": (5, 5)}), data, TrainConfig(**RUN), progress=False)
    plain = Histories(data.observations, data.actions, data.rewards, data.dones, data.tasks, metadata=data.metadata)
    from icrl_lab.models import DPTConfig

    with pytest.raises(ValueError, match="a dpt model learns optimal_actions, which the data lacks"):
        train(DPTConfig(**MODEL), plain, TrainConfig(**RUN), progress=False)


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, data, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py, "File", full)
    with pytest.raises(ValueError, match="cannot write .*No space left on device.*nothing was written"):
        data.save(tmp_path / "data.h5")
    assert list(tmp_path.iterdir()) == []


def test_models_saved_before_the_hashes_still_load(tmp_path):
    save_model(ICRLTransformer(ADConfig(**MODEL)), tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    del record["weights_sha256"], record["config_sha256"]
    (tmp_path / "config.json").write_text(json.dumps(record))
    assert load_model(tmp_path)[0].config == ADConfig(**MODEL)
