"""Training speed at the AD^eps paper's model size (hidden 512, 4 layers, batch 512, context 80 steps).

Prints updates/s and tokens/s on the device found (CUDA if present, else CPU, which it says), and the
time a 300k-update run would take there.

    python benchmarks/gpu_train_speed.py [--updates 100]
    python benchmarks/gpu_train_speed.py --context 400 --batch-size 128   (the whole-history window, as many tokens)
"""
import argparse
import json
import time

import torch

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals, token_sizes
from icrl_lab.models import ADConfig
from icrl_lab.train import TrainConfig, pick_device, train


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--context", type=int, default=80, help="steps per training window (at most 400)")
    args = parser.parse_args()
    goals = dark_room_goals("train")
    histories = collect_noise_distillation("DarkRoom", goals, num_steps=400, histories_per_task=20, seed=0)
    config = ADConfig(**token_sizes("DarkRoom", goals), d_model=512, n_layer=4, n_head=8,
                      window_steps=args.context)
    settings = {"batch_size": args.batch_size, "context_steps": args.context, "learning_rate": 3e-4}
    timings = []
    for updates in (5, 10, 10 + args.updates):  # a first run warms up; the difference of the others cancels start-up
        started = time.perf_counter()
        train(config, histories, TrainConfig(updates=updates, **settings), progress=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    seconds = (timings[2] - timings[1]) / args.updates
    device = pick_device()
    print(json.dumps({"benchmark": "train_paper_size", "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                      "updates_per_s": round(1 / seconds, 2), "context_steps": args.context,
                      "tokens_per_s": round(args.batch_size * args.context / seconds),
                      "hours_for_300k_updates": round(300_000 * seconds / 3600, 2)}))


if __name__ == "__main__":
    main()
