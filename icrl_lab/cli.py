"""Command line: ``python -m icrl_lab collect ...`` (more subcommands follow the data flow)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys

from .curricula import collect_noise_distillation
from .envs import bandit_tasks, dark_room_goals, key_to_door_tasks
from .schedules import SCHEDULES, make_schedule
from .sources import collect_rl_histories

SOURCES = ("noise_distillation", "q_learning", "ucb1", "thompson", "random")


def task_set(family: str, split: str, num_tasks: int, seed: int):
    """The tasks a command works on: the paper's split for grids, random arm means for bandits."""
    if family == "DarkRoom":
        return dark_room_goals(split)
    if family == "DarkKeyToDoor":
        return key_to_door_tasks(split)
    return bandit_tasks(num_tasks, seed=seed + {"train": 0, "test": 1, "all": 2}[split])


def collect(args) -> dict:
    command = "python -m icrl_lab " + shlex.join(sys.argv[1:])
    tasks = task_set(args.env, args.split, args.num_tasks, args.seed)
    if args.source == "noise_distillation":
        histories = collect_noise_distillation(
            args.env, tasks, args.steps, max_perf=args.max_perf, schedule=make_schedule(args.schedule),
            histories_per_task=args.histories_per_task, seed=args.seed, command=command)
    else:
        histories = collect_rl_histories(args.env, tasks, args.source, args.steps, args.histories_per_task,
                                         seed=args.seed, command=command)
    histories.save(args.out)
    return {"out": str(args.out), **histories.summary()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m icrl_lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("collect", help="collect learning histories into an HDF5 file")
    p.add_argument("--env", choices=("DarkRoom", "DarkKeyToDoor", "BernoulliBandit"), default="DarkRoom")
    p.add_argument("--source", choices=SOURCES, default="noise_distillation")
    p.add_argument("--split", choices=("train", "test", "all"), default="train")
    p.add_argument("--num-tasks", type=int, default=100, help="bandit tasks to draw (grids use the paper's split)")
    p.add_argument("--steps", type=int, default=2000, help="steps per history")
    p.add_argument("--histories-per-task", type=int, default=1)
    p.add_argument("--max-perf", type=float, default=0.5, help="noise distillation: best policy's share of the optimal return")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="linear")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="HDF5 file to write")
    args = parser.parse_args(argv)
    try:
        result = {"collect": collect}[args.command](args)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(result))
