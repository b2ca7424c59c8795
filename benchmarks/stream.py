"""Training from a dataset larger than memory: streamed from an XLand-layout file under a memory cap, and the
streamed loader against the in-memory one on a dataset that fits.

The dataset: Dark Room AD^eps histories, 32 per goal and `--steps` steps each, in the XLand-100B layout (one
group per goal; uint8 states and actions, float16 rewards; gzip level 1 in chunks of one history), written
group by group into `--dir` (a temporary folder by default) under a temporary name, then renamed. Its size
is `--scale` x 2 GiB uncompressed.

The cap: a child process imports torch and icrl_lab, reads its private writable memory (VmData: heap,
anonymous maps, thread stacks) and caps it there plus `--headroom-mib` with RLIMIT_DATA, which its
DataLoader reader inherits (a cap per process). RLIMIT_DATA rather than RLIMIT_AS: every torch thread
reserves address space it never touches (64 MiB malloc arenas), so an address-space cap would measure
threads, not data. The child shows the cap holds (allocating room for the whole dataset fails), reads the
whole file once through a stream that loads a new block (task group) for every batch (with one reader,
each of its random order of the groups once), trains `--updates` AD updates streamed from the file with
the default settings, and reports the peak resident memory (ru_maxrss) of itself and of its readers.

The comparison (same run, in the parent, no cap): windows/s of `ContextWindows.sample` against
`StreamingWindows.sample` on a small dataset of the same layout that fits in memory, and of training from
each. Training runs on one thread in both, leaving the other core to the reader.
The last line printed is one JSON object.

    python benchmarks/stream.py [--scale 1] [--dir DIR] [--updates 200]
"""
import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals
from icrl_lab.histories import ContextWindows
from icrl_lab.recipes import SMALL_AD, model_config
from icrl_lab.streaming import StreamingWindows, open_history_file, read_xland
from icrl_lab.train import TrainConfig, train

HISTORIES_PER_GOAL, GOALS_PER_COLLECTION = 32, 8
BYTES_PER_STEP = 6  # states, actions, expert_actions (uint8), rewards (float16), dones (bool)


def write_xland(path: Path, groups: int, steps: int, seed: int) -> dict:
    """`groups` goals' AD^eps histories in the XLand-100B layout, collected and written a few goals at a time."""
    goals = dark_room_goals("train")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    started = time.perf_counter()
    try:
        with h5py.File(tmp, "w") as f:
            for first in range(0, groups, GOALS_PER_COLLECTION):
                count = min(GOALS_PER_COLLECTION, groups - first)
                chosen = goals[np.arange(first, first + count) % len(goals)]
                data = collect_noise_distillation("DarkRoom", chosen, num_steps=steps, floor=0.3,
                                                  histories_per_task=HISTORIES_PER_GOAL, seed=seed + first)
                stored = {"states": data.observations.astype(np.uint8), "actions": data.actions.astype(np.uint8),
                          "rewards": data.rewards.astype(np.float16), "dones": data.dones,
                          "expert_actions": data.optimal_actions.astype(np.uint8)}
                for index in range(count):
                    group = f.create_group(str(first + index))
                    rows = slice(index * HISTORIES_PER_GOAL, (index + 1) * HISTORIES_PER_GOAL)
                    for name, array in stored.items():
                        group.create_dataset(name, data=array[rows], compression="gzip", compression_opts=1,
                                             chunks=(1, steps))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"groups": groups, "steps": groups * HISTORIES_PER_GOAL * steps,
            "uncompressed_bytes": groups * HISTORIES_PER_GOAL * steps * BYTES_PER_STEP,
            "file_bytes": path.stat().st_size, "write_seconds": round(time.perf_counter() - started, 1)}


def private_memory() -> int:
    """This process's private writable memory in bytes (VmData), what RLIMIT_DATA limits."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))


def peak_rss(who) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # kB on Linux


def training_settings(args) -> tuple:
    return (model_config("DarkRoom", "ad", **SMALL_AD),
            TrainConfig(updates=args.updates, batch_size=args.batch_size, context_steps=SMALL_AD["window_steps"],
                        learning_rate=3e-3, log_every=args.updates, device="cpu"))


def windows_per_second(log, config) -> float:
    return round(config.updates * config.batch_size / log[-1]["seconds"])


def capped_child(args):
    """Cap this process's private memory, show that the dataset does not fit under it, train streamed."""
    torch.set_num_threads(1)
    baseline = private_memory()
    cap = baseline + args.headroom_mib * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    try:
        np.empty(args.uncompressed_bytes, dtype=np.uint8)
        whole_dataset = "allocated (the cap does not hold it off)"
    except MemoryError:
        whole_dataset = "refused (MemoryError)"
    model, config = training_settings(args)
    file = open_history_file(args.data, env_family="DarkRoom")
    rss_before = peak_rss(resource.RUSAGE_SELF)
    whole_pass = StreamingWindows(file, config.context_steps, model.num_actions, model.observation_ids,
                                  workers=args.workers, windows_per_block=args.batch_size)
    started = time.perf_counter()
    for _ in range(file.num_blocks):
        whole_pass.sample(args.batch_size)
    pass_seconds = time.perf_counter() - started
    whole_pass.close()
    stream = StreamingWindows(file, config.context_steps, model.num_actions, model.observation_ids,
                              workers=args.workers)
    _, log = train(model, stream, config, progress=False)  # closes the stream: the reader is joined
    print(json.dumps({
        "cap_bytes": cap, "baseline_private_bytes": baseline, "whole_dataset_under_cap": whole_dataset,
        "trainer_peak_rss_before_reading_bytes": rss_before,
        "whole_pass_batches": file.num_blocks, "whole_pass_seconds": round(pass_seconds, 1),
        "whole_pass_uncompressed_bytes_per_s": round(args.uncompressed_bytes / pass_seconds),
        "trainer_peak_rss_bytes": peak_rss(resource.RUSAGE_SELF),
        "reader_peak_rss_bytes": peak_rss(resource.RUSAGE_CHILDREN) if args.workers else 0,
        "streamed_train_windows_per_s": windows_per_second(log, config), "final_loss": round(log[-1]["loss"], 4)}))


def loader_windows_per_second(windows, batch_size: int, batches: int) -> float:
    windows.sample(batch_size)  # warm-up: for the stream, its reader's start and first blocks
    started = time.perf_counter()
    for _ in range(batches):
        windows.sample(batch_size)
    return round(batches * batch_size / (time.perf_counter() - started))


def compare_in_memory(args, small: Path) -> dict:
    """Loader and training throughput on a dataset that fits: in memory (ContextWindows) and streamed."""
    torch.set_num_threads(1)
    model, config = training_settings(args)
    data = read_xland(small, env_family="DarkRoom")
    in_memory = ContextWindows(data, config.context_steps, model.num_actions)
    stream = StreamingWindows(small, config.context_steps, model.num_actions, model.observation_ids,
                              workers=args.workers)
    result = {"in_memory_loader_windows_per_s": loader_windows_per_second(in_memory, args.batch_size, 200),
              "streamed_loader_windows_per_s": loader_windows_per_second(stream, args.batch_size, 200)}
    stream.close()
    _, log = train(model, data, config, progress=False)
    result["in_memory_train_windows_per_s"] = windows_per_second(log, config)
    _, log = train(model, open_history_file(small, env_family="DarkRoom"), config, progress=False)
    result["streamed_small_train_windows_per_s"] = windows_per_second(log, config)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="dataset size in units of 2 GiB uncompressed")
    parser.add_argument("--dir", help="where to write the datasets (default: a temporary folder, removed after)")
    parser.add_argument("--steps", type=int, default=8000, help="steps per history")
    parser.add_argument("--headroom-mib", type=int, default=256, help="private memory allowed above the baseline")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader readers of the stream")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the capped training process: the dataset's path
    parser.add_argument("--uncompressed-bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.data = args.child
        return capped_child(args)

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(args.dir or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        per_group = HISTORIES_PER_GOAL * args.steps * BYTES_PER_STEP
        big = write_xland(folder / "stream-large.h5", max(1, round(args.scale * 2**31 / per_group)), args.steps, 0)
        small = write_xland(folder / "stream-small.h5", 16, args.steps, 10_000)
        child = subprocess.run([sys.executable, __file__, "--child", str(folder / "stream-large.h5"),
                                "--uncompressed-bytes", str(big["uncompressed_bytes"]), "--updates", str(args.updates),
                                "--batch-size", str(args.batch_size), "--headroom-mib", str(args.headroom_mib),
                                "--workers", str(args.workers)], capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"the capped training process failed:\n{child.stderr}")
        capped = json.loads(child.stdout.strip().splitlines()[-1])
        comparison = compare_in_memory(args, folder / "stream-small.h5")
    result = {
        "benchmark": "stream", "command": shlex.join(["python", "benchmarks/stream.py", *sys.argv[1:]]), "device": "cpu", "torch_threads_training": 1, "reader_workers": args.workers,
        "cap": "RLIMIT_DATA on the training process (its reader inherits the same cap), set after imports at its "
               "private writable memory then + headroom",
        "cap_bytes": capped["cap_bytes"], "headroom_bytes": args.headroom_mib * 2**20,
        "dataset_uncompressed_bytes": big["uncompressed_bytes"], "dataset_file_bytes": big["file_bytes"],
        "dataset_steps": big["steps"], "dataset_groups": big["groups"],
        "dataset_to_cap": round(big["uncompressed_bytes"] / capped["cap_bytes"], 2),
        "dataset_write_seconds": big["write_seconds"], **{k: v for k, v in capped.items() if k != "cap_bytes"},
        "updates": args.updates, "batch_size": args.batch_size, "context_steps": SMALL_AD["window_steps"],
        "small_dataset_uncompressed_bytes": small["uncompressed_bytes"], **comparison,
        "streamed_to_in_memory_loader": round(comparison["streamed_loader_windows_per_s"]
                                              / comparison["in_memory_loader_windows_per_s"], 2),
        "streamed_to_in_memory_training": round(comparison["streamed_small_train_windows_per_s"]
                                                / comparison["in_memory_train_windows_per_s"], 2),
    }
    gib = 2**30
    print(f"streamed {result['dataset_uncompressed_bytes'] / gib:.2f} GiB (uncompressed; {result['dataset_to_cap']}x "
          f"the {result['cap_bytes'] / gib:.2f} GiB cap) at {result['streamed_train_windows_per_s']} windows/s; peak "
          f"RSS {result['trainer_peak_rss_bytes'] / gib:.2f} GiB (trainer), {result['reader_peak_rss_bytes'] / gib:.2f} "
          f"GiB (reader). Loader on data that fits: {result['streamed_loader_windows_per_s']} windows/s streamed, "
          f"{result['in_memory_loader_windows_per_s']} in memory")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
