"""Command line, one subcommand per stage of the data flow:

    python -m icrl_lab collect  --env DarkRoom --source noise_distillation --out runs/data.h5
    python -m icrl_lab train    --data runs/data.h5 --model ad --out runs/ad
    python -m icrl_lab evaluate runs/ad --tasks test --episodes 50 --seed 0
    python -m icrl_lab reproduce dark_room_adeps --out runs/dark_room_adeps
    python -m icrl_lab course --out runs/course     (the notebooks, executed in order)

Each prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from .curricula import collect_noise_distillation
from .envs import task_split
from .schedules import SCHEDULES, make_schedule
from .sources import collect_rl_histories
from .histories import load_histories

SOURCES = ("noise_distillation", "q_learning", "ucb1", "thompson", "random")


def collect(args) -> dict:
    command = "python -m icrl_lab " + shlex.join(sys.argv[1:])
    tasks = task_split(args.env, args.split, args.num_tasks, args.seed)
    if args.source == "noise_distillation":
        histories = collect_noise_distillation(
            args.env, tasks, args.steps, max_perf=args.max_perf, schedule=make_schedule(args.schedule),
            histories_per_task=args.histories_per_task, seed=args.seed, command=command)
    else:
        extra = {"concentration": args.concentration} if args.source == "random" and args.concentration else {}
        histories = collect_rl_histories(args.env, tasks, args.source, args.steps, args.histories_per_task,
                                         seed=args.seed, command=command, **extra)
    histories.save(args.out)
    return {"out": str(args.out), **histories.summary()}


def model_config_for(args, histories):
    """The model config a `train` command asks for, sized to the data's observations and actions."""
    from .envs import token_sizes
    from .models import CONFIGS

    metadata = histories.metadata
    return CONFIGS[args.model](**token_sizes(metadata["env_family"], histories.tasks, **metadata["env_kwargs"]),
                               window_steps=args.window_steps, d_model=args.d_model, n_layer=args.n_layer,
                               n_head=args.n_head, dropout=args.dropout)


def train_command(args) -> dict:
    from .train import TrainConfig, train

    histories = load_histories(args.data)
    config = TrainConfig(updates=args.updates, batch_size=args.batch_size, context_steps=args.context_steps,
                         learning_rate=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every)
    record = {"command": "python -m icrl_lab " + shlex.join(sys.argv[1:]), "data_path": str(args.data),
              **histories.provenance()}
    _, log = train(model_config_for(args, histories), histories, config, out_dir=args.out, resume=args.resume,
                   record=record)
    return {"out": str(args.out), "updates": args.updates, "final_loss": log[-1]["loss"], "seconds": log[-1]["seconds"]}


EVALUATION_DEFAULTS = {"num_tasks": 100, "episodes": 50, "mode": "greedy", "temperature": 1.0, "rollouts_per_task": 1}


def evaluate_command(args) -> dict:
    from .evaluate import evaluate_model
    from .models import load_model
    from .train import pick_device

    model, record = load_model(args.checkpoint, device=pick_device())
    # Unset options take the checkpoint's recipe's evaluation (a shipped checkpoint re-measures its own
    # figures with no options), else the generic defaults.
    settings = {**EVALUATION_DEFAULTS, **record.get("recipe", {}).get("evaluation", {})}
    settings.update({k: v for k, v in vars(args).items() if k in EVALUATION_DEFAULTS and v is not None})
    tasks = task_split(record["env_family"], args.tasks, settings["num_tasks"], args.seed)
    figures, _ = evaluate_model(model, record, tasks, settings["episodes"], mode=settings["mode"],
                                temperature=settings["temperature"], seed=args.seed,
                                rollouts_per_task=settings["rollouts_per_task"])
    return {"checkpoint": str(args.checkpoint), **{k: settings[k] for k in ("mode", "temperature")}, **figures}


def reproduce_command(args) -> dict:
    from .recipes import reproduce

    results = reproduce(args.recipe, args.out, seed=args.seed, command="python -m icrl_lab " + shlex.join(sys.argv[1:]))
    return {"out": str(args.out), **results["figures"], **results["timings"]}


def course_command(args) -> dict:
    """Execute the course notebooks in order with papermill into args.out; print each one's headline cells."""
    from pathlib import Path

    import nbformat
    import papermill

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for notebook in sorted(Path(args.notebooks).glob("[0-9][0-9]_*.ipynb")):
        started = time.perf_counter()
        papermill.execute_notebook(str(notebook), str(out / notebook.name), cwd=str(notebook.parent), progress_bar=False)
        seconds[notebook.stem] = round(time.perf_counter() - started, 1)
        headline = [output.get("data", {}).get("text/plain", output.get("text", ""))
                    for cell in nbformat.read(out / notebook.name, as_version=4).cells
                    if "headline" in cell.metadata.get("tags", []) for output in cell.outputs]
        print(f"\n== {notebook.stem} ({seconds[notebook.stem]} s)\n" + "\n".join(headline), flush=True)
    print(f"\nexecuted notebooks: {out}")
    return {"out": str(out), "seconds": seconds, "total_seconds": round(sum(seconds.values()), 1)}


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
    p.add_argument("--concentration", type=float, default=None,
                   help="random source: Dirichlet concentration of each task's action distribution (DPT's contexts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="HDF5 file to write")

    p = commands.add_parser("train", help="train AD or DPT on a history file; checkpoints go to --out")
    p.add_argument("--data", required=True, help="HDF5 history file from `collect`")
    p.add_argument("--model", choices=("ad", "dpt"), default="ad")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--context-steps", type=int, default=80, help="steps per training sequence")
    p.add_argument("--window-steps", type=int, default=80, help="attention window, in steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")

    p = commands.add_parser("evaluate", help="evaluate a checkpoint in context on a task split")
    p.add_argument("checkpoint", help="checkpoint directory from `train`")
    p.add_argument("--tasks", choices=("train", "test", "all"), default="test")
    p.add_argument("--num-tasks", type=int, help="bandit tasks to draw")
    p.add_argument("--episodes", type=int)
    p.add_argument("--mode", choices=("greedy", "sample", "greedy_when_rewarded"))
    p.add_argument("--temperature", type=float)
    p.add_argument("--rollouts-per-task", type=int, help="independent rollouts of every task, side by side")
    p.epilog = ("Options left out take the values of the checkpoint's recipe, if it has one, else: "
                + ", ".join(f"{k}={v}" for k, v in EVALUATION_DEFAULTS.items()))
    p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser("reproduce", help="collect, train and evaluate a named recipe (see icrl_lab.recipes)")
    p.add_argument("recipe")
    p.add_argument("--out", required=True, help="directory for the checkpoint, results.json and figure.png")
    p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser("course", help="run the course notebooks in order with papermill; print their headline cells")
    p.add_argument("--notebooks", default="notebooks")
    p.add_argument("--out", required=True, help="folder for the executed notebooks")

    args = parser.parse_args(argv)
    run = {"collect": collect, "train": train_command, "evaluate": evaluate_command,
           "reproduce": reproduce_command, "course": course_command}[args.command]
    try:
        result = run(args)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(result))
