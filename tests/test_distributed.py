"""Training under torchrun: two CPU processes (gloo, loopback) reach the weights of one process with the same
global batch, write one checkpoint that loads in a single process, resume exactly, and fail together."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.distributed import ProcessGroup
from icrl_lab.envs import dark_room_goals
from icrl_lab.models import load_model

SMALL = ["--updates", "6", "--batch-size", "8", "--context-steps", "20", "--d-model", "32", "--n-layer", "2",
         "--n-head", "2", "--checkpoint-every", "3"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("distributed") / "data.h5"
    collect_noise_distillation("DarkRoom", dark_room_goals("train"), num_steps=200, seed=0).save(path)
    return path


def run_train(data_file, out, *options, processes=1):
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
              if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launch, "-m", "icrl_lab", "train", "--data", str(data_file), "--out", str(out), *SMALL,
                           *options], capture_output=True, text=True, timeout=300, env=env)


def weights(folder):
    return load_file(folder / "model.safetensors")


def assert_same_weights(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=f"{name} differs")


def test_two_processes_reach_the_weights_of_one_with_the_same_global_batch(data_file, tmp_path):
    one = run_train(data_file, tmp_path / "one", "--dropout", "0")
    two = run_train(data_file, tmp_path / "two", "--dropout", "0", processes=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert len(two.stdout.strip().splitlines()) == 1  # one process speaks for the run
    assert json.loads(two.stdout)["final_loss"] == pytest.approx(json.loads(one.stdout)["final_loss"], abs=1e-5)
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "two"), atol=1e-5)
    model, record = load_model(tmp_path / "two")  # the distributed checkpoint loads in one process
    torch.manual_seed(0)  # training's seed: the initial weights
    initial = model.config.build().state_dict()
    assert max((initial[name] - value).abs().max() for name, value in model.state_dict().items()) > 1e-3  # it trained
    assert record["command"].startswith("torchrun --nproc_per_node=2 -m icrl_lab train")
    assert record["updates_done"] == 6 and model.config.d_model == 32


def test_a_distributed_run_resumes_to_the_weights_of_an_uninterrupted_one(data_file, tmp_path):
    # dropout on: each process's own dropout stream must be saved and restored too
    straight = run_train(data_file, tmp_path / "straight", processes=2)
    stopped = run_train(data_file, tmp_path / "resumed", "--stop-at", "3", processes=2)
    resumed = run_train(data_file, tmp_path / "resumed", "--resume", processes=2)
    for result in (straight, stopped, resumed):
        assert result.returncode == 0, result.stderr
    assert "rng.torch.1" in load_file(tmp_path / "resumed" / "training_state.safetensors")
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"), atol=1e-6)


def test_an_error_on_the_writing_process_stops_every_process(data_file, tmp_path):
    (tmp_path / "taken").mkdir()
    first = run_train(data_file, tmp_path / "taken", "--updates", "2", processes=2)
    assert first.returncode == 0, first.stderr
    again = run_train(data_file, tmp_path / "taken", "--updates", "2", processes=2)  # no --overwrite: refused
    assert again.returncode != 0
    assert "already holds a checkpoint" in again.stderr


def test_the_global_batch_is_shared_out_without_overlap():
    shares = [ProcessGroup(rank, 4).share(32) for rank in range(4)]
    assert [(s.start, s.stop) for s in shares] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    with pytest.raises(ValueError, match="multiple of 3"):
        ProcessGroup(1, 3).share(8)
