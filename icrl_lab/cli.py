"""Command line, one subcommand per stage of the data flow:

    python -m icrl_lab collect  --env DarkRoom --source noise_distillation --out runs/data.h5
    python -m icrl_lab train    --data runs/data.h5 --kind ad --out runs/ad
    python -m icrl_lab train    --data xland.h5 --env-family DarkRoom --stream --out runs/ad   (read block by block)
    python -m icrl_lab evaluate dark_room_adeps --protocol adeps --seed 1    (a recipe's checkpoint, or a folder)
    python -m icrl_lab compare runs/eval_a runs/eval_b     (two evaluations saved with --save, task by task)
    python -m icrl_lab probe dark_room_adeps --out runs/probe        (attention, ablations, probes)
    python -m icrl_lab reproduce dark_room_adeps --out runs/dark_room_adeps
    python -m icrl_lab course --out runs/course     (the notebooks, executed in order)

The options of collect, train and evaluate are the fields of the specs they build (`recipes.CollectSpec`,
`models.ADConfig`, `train.TrainConfig`, `evaluate.Protocol`), so each default lives in its spec alone.
Each subcommand prints one JSON object as its last line. Bad input, and files that cannot be read or
written, end it with "error: ..." (what is wrong and how to fix it) and exit status 2; Ctrl-C ends it with
exit status 130. Nothing is replaced without --overwrite, and nothing is left half-written: files are
written under temporary names and renamed into place (see icrl_lab.histories and icrl_lab.train).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import shlex
import sys
import time
import types
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from .evaluate import PROTOCOLS, Protocol
from .models import ADConfig
from .recipes import RECIPES, CollectSpec
from .streaming import StreamingWindows
from .train import TrainConfig

ENV_FAMILIES = ("DarkRoom", "DarkKeyToDoor", "BernoulliBandit")

# Fields the command line sets another way, or that follow from the data.
NOT_OPTIONS = {"num_obs", "num_actions", "obs_factors", "target", "options", "env_kwargs", "name", "description",
               "family", "checkpoint_every"}


def _option_type(annotation):
    """int, float, str or bool from a field's annotation (also 'float | None' and string annotations)."""
    annotation = eval(annotation, vars(typing)) if isinstance(annotation, str) else annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_spec_options(parser, spec_class, title: str):
    """One --option per field of `spec_class`, defaulting to None so that unset means "the spec's default"."""
    group = parser.add_argument_group(title)
    for f in fields(spec_class):
        if f.name in NOT_OPTIONS:
            continue
        kind = _option_type(f.type)
        default = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"(default {default})")
        else:
            group.add_argument(flag, type=kind, default=None, help=f"(default {default})")


def spec_values(args, spec_class) -> dict:
    """The fields of `spec_class` that the command line set."""
    return {f.name: getattr(args, f.name) for f in fields(spec_class)
            if f.name not in NOT_OPTIONS and getattr(args, f.name, None) is not None}


def load_checkpoint(name: str, device=None):
    """(model, record) of a checkpoint folder, or of a recipe's shipped checkpoint named by the recipe."""
    from .models import load_model
    from .recipes import load_shipped

    if name in RECIPES and not Path(name).exists():
        return load_shipped(name, device=device)
    return load_model(name, device=device)


def _command() -> str:
    """The command line that ran this, as one to run again (with its torchrun launch where there was one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    launch = f"torchrun --nproc_per_node={world_size} -m icrl_lab " if world_size > 1 else "python -m icrl_lab "
    return launch + shlex.join(sys.argv[1:])


# CollectSpec fields only the noise-distillation source reads, and the one only bandits read.
NOISE_DISTILLATION_FIELDS = ("max_perf", "floor", "schedule")


def _check_seed(seed):
    from .sources import check_seed

    return check_seed(seed, "--seed")


def _check_writable_folder(folder: Path, what: str):
    """Refuse early (before any work) a folder that cannot be written into."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise FileExistsError(f"{what}: {existing} is not a folder; choose a path inside a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: cannot write into {existing} (permission denied); choose a folder you can "
                              f"write to")


def _parse_options(options: list[str]) -> dict:
    parsed = {}
    for option in options:
        name, equals, value = option.partition("=")
        if not equals or not name:
            raise ValueError(f"--option {option!r} is not NAME=JSON: write e.g. --option concentration=1.0")
        try:
            parsed[name] = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"--option {option!r}: the value {value!r} is not JSON; write a number (1.0), true/false, "
                             f"a quoted string ('\"linear\"') or an object") from None
    return parsed


def collect(args) -> dict:
    out = Path(args.out)
    if out.exists() and not (args.overwrite and out.is_file()):
        raise FileExistsError(f"--out {out} exists: pass --overwrite to replace it, or choose another path"
                              if out.is_file() else f"--out {out} exists and is not a regular file: choose a file path")
    _check_writable_folder(out.parent, f"--out {out}")
    _check_seed(args.seed)
    values = spec_values(args, CollectSpec)
    source = values.get("source", "noise_distillation")
    if source == "noise_distillation" and args.option:
        raise ValueError(f"--option is not read by the noise_distillation source ({args.option} given): its settings "
                         f"are --max-perf, --floor and --schedule; --option is for --source "
                         f"q_learning/ucb1/thompson/random")
    ignored = [f"--{name.replace('_', '-')}" for name in NOISE_DISTILLATION_FIELDS
               if source != "noise_distillation" and name in values]
    if args.env != "BernoulliBandit" and "num_tasks" in values:
        ignored.append("--num-tasks (grids use the paper's task split)")
    if ignored:
        raise ValueError(f"{ignored} would be ignored with --env {args.env} --source {source}: leave them out")
    spec = CollectSpec(family=args.env, options=_parse_options(args.option), **values)
    histories = spec.collect(seed=args.seed, command=_command())
    summary = histories.summary()  # before saving: data it cannot summarise is refused, not written
    histories.save(out)
    return {"out": str(out), **summary}


def _parse_env_kwargs(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"--env-kwargs {text!r} is not a JSON object: write e.g. --env-kwargs '{{\"size\": 9}}'")
    return parsed


def train_command(args) -> dict:
    from .histories import load_histories
    from .recipes import model_config
    from .streaming import ICRL_LAB_LAYOUT, open_history_file, read_xland
    from .train import train

    stream_options = {name: value for name, value in (("workers", args.loader_workers),
                                                       ("blocks_in_memory", args.blocks_in_memory)) if value is not None}
    if stream_options and not args.stream:
        raise ValueError("--loader-workers and --blocks-in-memory set how --stream reads the file: add --stream, or "
                         "leave them out to read the whole file into memory")
    env_kwargs = _parse_env_kwargs(args.env_kwargs)
    file = open_history_file(args.data, args.env_family, env_kwargs)
    if file.layout == ICRL_LAB_LAYOUT and not args.stream:
        histories = load_histories(args.data)  # whole, its checksums verified
        provenance = histories.provenance()
    else:
        histories = file if args.stream else read_xland(args.data, args.env_family, env_kwargs)
        provenance = file.provenance()
    config = model_config(provenance.env_family, args.kind, provenance.env_kwargs, **spec_values(args, ADConfig))
    train_config = TrainConfig(checkpoint_every=args.checkpoint_every, **spec_values(args, TrainConfig))
    if args.stream:
        histories = StreamingWindows(file, train_config.context_steps, config.num_actions, config.observation_ids,
                                     seed=train_config.seed, **stream_options)
    record = {"command": _command(), "data_path": str(args.data), **asdict(provenance)}
    _, log = train(config, histories, train_config, out_dir=args.out, resume=args.resume, record=record,
                   overwrite=args.overwrite, stop_at=args.stop_at, initial_weights=args.start_from)
    return {"out": str(args.out), "updates": train_config.updates, "final_loss": log[-1]["loss"],
            "seconds": log[-1]["seconds"]}


def evaluate_command(args) -> dict:
    import torch

    from .evaluate import headline
    from .recipes import evaluate_checkpoint, save_evaluation
    from .train import pick_device

    _check_seed(args.seed)
    torch.set_num_threads(1)  # one token per task and step: small matrix products run fastest on one thread
    loaded = [load_checkpoint(name, pick_device()) for name in args.checkpoint]
    models, records = [model for model, _ in loaded], [record for _, record in loaded]
    families = {record.get("env_family") for record in records}
    if len(families) > 1:
        raise ValueError(f"the checkpoints are of different environment families {sorted(map(str, families))}: "
                         f"evaluate training seeds of one recipe together")
    overrides = spec_values(args, Protocol)
    figures, result = evaluate_checkpoint(models, records[0], args.protocol, split=args.tasks, seed=args.seed, **overrides)
    ablation = any(k in overrides for k in ("decoding", "temperature"))
    printed = {"checkpoint": " ".join(args.checkpoint), "command": _command(), "ablation": ablation,
               "headline": headline(figures), **figures}
    if args.save:
        save_evaluation(printed, result, Path(args.save), records[0], overrides.get("episodes"))
    return printed


def compare_command(args) -> dict:
    from .recipes import compare_evaluations

    return compare_evaluations(args.a, args.b, args.episodes)


def probe_command(args) -> dict:
    import torch

    from .probe import report

    torch.set_num_threads(1)
    model, record = load_checkpoint(args.checkpoint)
    return {"checkpoint": args.checkpoint, "out": str(args.out), **report(model, record, args.out, quick=args.quick)}


def reproduce_command(args) -> dict:
    from .recipes import reproduce

    _check_seed(args.seed)
    results = reproduce(args.recipe, args.out, seed=args.seed, command=_command(), overwrite=args.overwrite,
                        resume=args.resume)
    return {"out": str(args.out), **results["figures"], **results["timings"]}


def course_command(args) -> dict:
    """Execute the course notebooks in order with papermill into args.out; print each one's headline cells."""
    import nbformat
    import papermill

    notebooks = sorted(Path(args.notebooks).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {args.notebooks}: run from a clone of the "
                                f"repository, or pass --notebooks DIR")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for notebook in notebooks:
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
    parser = argparse.ArgumentParser(prog="python -m icrl_lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("collect", help="collect learning histories into an HDF5 file")
    p.add_argument("--env", choices=ENV_FAMILIES, default="DarkRoom")
    add_spec_options(p, CollectSpec, "collection (recipes.CollectSpec)")
    p.set_defaults(source="noise_distillation", num_steps=2000)
    p.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                   help="an argument of the source, e.g. --option concentration=1.0 (random) or --option learning_rate=0.5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="HDF5 file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    p = commands.add_parser("train", help="train AD or DPT on a history file; checkpoints go to --out")
    p.add_argument("--data", required=True, help="HDF5 history file from `collect`, or in the XLand-100B layout")
    p.add_argument("--kind", choices=("ad", "dpt"), default="ad")
    p.add_argument("--out", required=True, help="checkpoint directory")
    add_spec_options(p, ADConfig, "model (models.ADConfig)")
    add_spec_options(p, TrainConfig, "training (train.TrainConfig)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--start-from", metavar="CHECKPOINT",
                   help="start from this saved model's weights rather than fresh ones, to train it on other data "
                        "(give the model options it was made with)")
    p.add_argument("--stop-at", type=int, metavar="UPDATES",
                   help="stop with a checkpoint after this many updates in all, to go on later with --resume")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint in --out (and the results.json, figure.png, evaluation.json made from it)")
    group = p.add_argument_group("data larger than memory, and XLand-100B files (icrl_lab.streaming)")
    stream_defaults = inspect.signature(StreamingWindows).parameters
    group.add_argument("--stream", action="store_true",
                       help="read the file block by block while training, instead of whole into memory")
    group.add_argument("--loader-workers", type=int, metavar="N",
                       help=f"processes reading ahead with --stream (default {stream_defaults['workers'].default}; "
                            f"0: the training process reads)")
    group.add_argument("--blocks-in-memory", type=int, metavar="N",
                       help=f"blocks each reading process holds with --stream (default "
                            f"{stream_defaults['blocks_in_memory'].default})")
    group.add_argument("--env-family", choices=ENV_FAMILIES, help="the data's environment, where the file does not record it (XLand layout)")
    group.add_argument("--env-kwargs", metavar="JSON", help="the environment's arguments, e.g. '{\"size\": 9}'")

    p = commands.add_parser("evaluate", help="evaluate a checkpoint in context under a paper's protocol, with controls")
    p.add_argument("checkpoint", nargs="+", help="a checkpoint folder, or a recipe name for its shipped checkpoint "
                   f"({', '.join(sorted(RECIPES))}); several: training seeds of one recipe, evaluated together")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="default: the checkpoint's recipe's protocol (adeps for grids, dpt for bandits)")
    p.add_argument("--tasks", choices=("train", "test", "all"), default="test")
    add_spec_options(p, Protocol, "protocol settings (evaluate.Protocol): setting decoding or temperature makes it an ablation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", metavar="DIR", help="also write what is printed to DIR/evaluation.json, the per-task values to "
                   "DIR/evaluation-per-task.csv (for compare) and the figure to DIR/figure.png (with --episodes: "
                   "DIR/evaluation-N-episodes.json and its per-task values only)")

    p = commands.add_parser("compare", help="do two models differ? a paired comparison, task by task, of two evaluations "
                                            "saved with evaluate --save on the same tasks and seed")
    p.add_argument("a", metavar="DIR_A", help="an evaluate --save folder")
    p.add_argument("b", metavar="DIR_B", help="another, of the same tasks, protocol and evaluation seed")
    p.add_argument("--episodes", type=int, help="compare the shorter checks saved with evaluate --episodes N")

    p = commands.add_parser("probe", help="how a checkpoint works: attention, ablations, interventions, probes, "
                                          "exploration; tables (CSV) and figures (PNG) into --out")
    p.add_argument("checkpoint", help=f"a checkpoint folder, or a recipe name ({', '.join(sorted(RECIPES))})")
    p.add_argument("--out", required=True, help="folder for the tables, figures and headline.json")
    p.add_argument("--quick", action="store_true", help="fewer tasks and samples (about a minute on Dark Room)")

    p = commands.add_parser("reproduce", help="collect, train and evaluate a named recipe (see icrl_lab.recipes)")
    p.add_argument("recipe", choices=sorted(RECIPES))
    p.add_argument("--out", required=True, help="directory for the checkpoint, results.json and figure.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint and results already in --out")
    p.add_argument("--resume", action="store_true", help="go on with an interrupted run in --out (same recipe and seed)")

    p = commands.add_parser("course", help="run the course notebooks in order with papermill; print their headline cells")
    p.add_argument("--notebooks", default="notebooks")
    p.add_argument("--out", required=True, help="folder for the executed notebooks")

    args = parser.parse_args(argv)
    run = {"collect": collect, "train": train_command, "evaluate": evaluate_command, "compare": compare_command,
           "probe": probe_command, "reproduce": reproduce_command, "course": course_command}[args.command]
    try:
        result = run(args)
    except KeyboardInterrupt:
        go_on = " (go on with the same command and --resume)" if args.command in ("train", "reproduce") else ""
        parser.exit(130, f"interrupted: files being written were removed; earlier files and checkpoints are as they "
                         f"were{go_on}\n")
    except (ValueError, OSError) as error:  # OSError: FileNotFoundError, FileExistsError, PermissionError, ...
        if isinstance(error, OSError) and error.filename is not None:
            error = f"cannot use {error.filename}: {error.strerror or error}; check the path and its permissions"
        parser.exit(2, f"error: {error}\n")
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process speaks for the run
        print(json.dumps(result))
