"""Collection speed: the batched AD^eps collector against a per-step gymnasium loop.

The baseline collects the way the official AD^eps code does: one single-task gymnasium environment,
stepped in a Python loop by an epsilon-greedy scripted demonstrator (one such loop per goal). The
batched collector makes the same kind of data (Dark Room, the 65 training goals, linear schedule,
max_perf 0.5) for all goals at once. Both run in this process on one core; each figure is the best
of `--repeats` runs after a warm-up. The last line printed is one JSON object.

    python benchmarks/collect.py [--histories-per-task 50] [--baseline-steps 60000]
"""
import argparse
import json
import os
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import icrl_lab  # noqa: E402,F401
from icrl_lab.curricula import calibrate_floor, collect_noise_distillation  # noqa: E402
from icrl_lab.envs import dark_room_goals  # noqa: E402
from icrl_lab.envs.grid import shortest_path_action  # noqa: E402
from icrl_lab.schedules import LinearSchedule  # noqa: E402

STEPS_PER_HISTORY = 2000  # 100 episodes of 20 steps


def baseline(goals, total_steps: int, floor: float, seed: int = 0) -> int:
    """Per-step loop over single environments, as many steps as asked for, goal after goal."""
    rng = np.random.default_rng(seed)
    epsilon = LinearSchedule(floor=floor).values(STEPS_PER_HISTORY)
    steps = 0
    for goal in goals:
        env = gym.make("icrl_lab/DarkRoom-v0", goal=tuple(goal))
        obs, _ = env.reset(seed=seed)
        room = env.unwrapped
        for t in range(STEPS_PER_HISTORY):
            if rng.random() < epsilon[t]:
                action = int(rng.integers(5))
            else:
                action = int(shortest_path_action(room.row, room.col, goal[0], goal[1]))
            obs, reward, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset()
            steps += 1
            if steps >= total_steps:
                return steps
    return steps


def best_time(function, repeats: int) -> float:
    function()  # warm-up: imports, first-touch memory
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories-per-task", type=int, default=50)
    parser.add_argument("--baseline-steps", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    goals = dark_room_goals("train")
    batched_steps = len(goals) * args.histories_per_task * STEPS_PER_HISTORY
    batched_time = best_time(lambda: collect_noise_distillation(
        "DarkRoom", goals, STEPS_PER_HISTORY, max_perf=0.5, histories_per_task=args.histories_per_task, seed=0),
        args.repeats)
    floor = calibrate_floor("DarkRoom", goals, 0.5)
    baseline_time = best_time(lambda: baseline(goals, args.baseline_steps, floor), args.repeats)

    result = {
        "benchmark": "collect",
        "tasks": len(goals),
        "batched_steps": batched_steps,
        "batched_seconds": round(batched_time, 4),
        "batched_steps_per_s": round(batched_steps / batched_time),
        "baseline_steps": args.baseline_steps,
        "baseline_seconds": round(baseline_time, 4),
        "baseline_steps_per_s": round(args.baseline_steps / baseline_time),
        "speedup": round((batched_steps / batched_time) / (args.baseline_steps / baseline_time), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"batched: {result['batched_steps_per_s'] / 1e6:.1f}M steps/s; "
          f"per-step gymnasium loop: {result['baseline_steps_per_s'] / 1e3:.1f}k steps/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
