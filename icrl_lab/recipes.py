"""Named reproductions: the data, model, training and evaluation behind each headline, in one place.

`reproduce(name, out_dir)` runs the whole flow (collect -> train -> evaluate) with fixed seeds and
writes the checkpoint, a results.json with the measured figures and timings, and the figure. The
shipped checkpoints in icrl_lab/checkpoints/ were made this way, and re-measured under their protocol
with `python -m icrl_lab evaluate NAME --seed 0 --save icrl_lab/checkpoints/NAME` (evaluation.json, its
per-task values and figure.png); `load_shipped(name)` loads one.

    python -m icrl_lab reproduce dark_room_adeps --out runs/dark_room_adeps
"""
from __future__ import annotations

import json
import shutil
import textwrap
import time
from dataclasses import asdict, dataclass, field, replace
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import pandas as pd

from .curricula import collect_noise_distillation
from .envs import task_split, token_sizes
from .histories import Provenance
from .evaluate import PROTOCOLS, Protocol, compare, evaluate_protocol, get_protocol, in_context_figures, task_values
from .models import CONFIGS, ADConfig, load_model
from .sources import collect_rl_histories
from .schedules import make_schedule
from .train import RESULT_FILES, STAGING, TrainConfig, train

SHIPPED = files(__package__) / "checkpoints"  # package data: an installed wheel carries the checkpoints
SHIPPED_NAMES = ("dark_room_adeps_whole_history", "dark_room_adeps", "dark_room_q_learning", "key_to_door_adeps", "bandit_dpt")
SOURCES = ("noise_distillation", "q_learning", "ucb1", "thompson", "random")


@dataclass(frozen=True)
class CollectSpec:
    """Where a recipe's learning histories come from: a source and its arguments, on a task split."""

    family: str
    source: str                           # one of SOURCES
    num_steps: int                        # steps per history
    split: str = "train"
    histories_per_task: int = 1
    num_tasks: int = 100                  # bandits: tasks to draw (grids use the paper's split)
    max_perf: float = 0.5                 # noise_distillation: the best policy's share of the optimal return
    floor: float | None = None            # noise_distillation: name the epsilon floor instead of max_perf
    schedule: str = "linear"              # noise_distillation: the shape of the falling noise
    options: dict = field(default_factory=dict)  # the source's own arguments (Q-learning's, the random policy's)
    env_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source={self.source!r} is not one of {SOURCES}")

    def tasks(self, split: str | None = None, seed: int = 0) -> np.ndarray:
        return task_split(self.family, split or self.split, self.num_tasks, seed, size=self.env_kwargs.get("size", 9))

    def collect(self, seed: int = 0, command: str | None = None):
        """The histories (with their provenance in the metadata)."""
        tasks = self.tasks(seed=seed)
        if self.source == "noise_distillation":
            return collect_noise_distillation(self.family, tasks, self.num_steps, max_perf=self.max_perf,
                                              schedule=make_schedule(self.schedule), floor=self.floor,
                                              histories_per_task=self.histories_per_task, seed=seed,
                                              env_kwargs=self.env_kwargs, command=command)
        options = dict(self.options)
        if "exploration" in options:
            exploration = options["exploration"]
            if not isinstance(exploration, dict) or "schedule" not in exploration:
                raise ValueError(f"exploration={exploration!r} is not allowed: it must name a schedule and its settings, "
                                 f"e.g. {{\"schedule\": \"linear\", \"floor\": 0.05, \"floor_at\": 0.5}}")
            try:
                options["exploration"] = make_schedule(**exploration)
            except TypeError as error:
                raise ValueError(f"exploration={exploration!r} is not allowed: {error}") from None
        return collect_rl_histories(self.family, tasks, self.source, self.num_steps, self.histories_per_task, seed=seed,
                                    env_kwargs=self.env_kwargs, command=command, **options)



def model_config(family: str, kind: str = "ad", env_kwargs: dict | None = None, **fields_) -> ADConfig:
    """An AD or DPT config sized to a family's observations and actions."""
    sizes = token_sizes(family, task_split(family, "train", 1), **(env_kwargs or {}))
    return CONFIGS[kind](**sizes, **fields_)


@dataclass(frozen=True)
class Selection:
    """Early stopping on validation tasks: every `every` updates the model plays `episodes` episodes in context
    (the protocol's decoding, `rollouts` per task) on the family's "validation" split, which the recipe's
    histories leave out (it collects on "fit"), and the recipe keeps the checkpoint with the highest mean
    return over the last 10 (the earliest on a tie). The test tasks play no part in the choice."""

    every: int = 350
    episodes: int = 40
    rollouts: int = 1

    def __post_init__(self):
        for name in ("every", "episodes", "rollouts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: it must be an integer >= 1")
        if self.episodes < 10:
            raise ValueError(f"episodes={self.episodes} is not allowed: the score is the mean of the last 10 episodes")

    @staticmethod
    def choose(scores: list[dict], score: str = "last10") -> dict:
        """The score chosen among `scores` (dicts with "update" and `score`): the highest, the earliest on a tie."""
        return max(scores, key=lambda line: (line[score], -line["update"]))


@dataclass(frozen=True)
class Recipe:
    """One reproduction: its data, model, training and evaluation, each a typed part."""

    name: str
    description: str
    collect: CollectSpec
    model: ADConfig
    train: TrainConfig
    evaluation: Protocol
    claim: dict = field(default_factory=dict)  # the headline and its target, e.g. {"ratio_to_best_in_data": 1.67}
    selection: Selection | None = None  # early stopping on validation tasks; None keeps the last checkpoint

    def __post_init__(self):
        if self.selection is not None and self.collect.split != "fit":
            raise ValueError(f"recipe {self.name!r} chooses on the validation tasks, so its histories must leave them "
                             f"out: collect on split='fit', not {self.collect.split!r}")

    @property
    def family(self) -> str:
        return self.collect.family

    def test_tasks(self, seed: int = 0) -> np.ndarray:
        return self.collect.tasks("test", seed)


SMALL_AD = {"window_steps": 80, "d_model": 64, "n_layer": 2, "n_head": 4}
SHORT_RUN = {"updates": 3000, "batch_size": 64, "context_steps": 80, "learning_rate": 3e-3, "weight_decay": 1e-4}
WHOLE_HISTORY = 400  # steps: a whole 20-episode Dark Room history in the window

RECIPES = {recipe.name: recipe for recipe in [
    Recipe(
        name="dark_room_adeps",
        description="AD on AD^eps Dark Room histories (max_perf 0.5), evaluated on the 16 held-out goals",
        # Short histories (20 episodes), where the paper's code plays one of 20,000 per goal: the noise falls
        # fast enough to be seen inside an 80-step window, a trend the small model learns to follow when
        # sampling (benchmarks/studies/results/README.md, round 6).
        collect=CollectSpec("DarkRoom", "noise_distillation", num_steps=400, histories_per_task=250, max_perf=0.5),
        model=model_config("DarkRoom", **SMALL_AD),
        train=TrainConfig(**SHORT_RUN),
        evaluation=PROTOCOLS["adeps"],
        claim={"ratio_to_best_in_data": 1.67},
    ),
    Recipe(
        name="dark_room_adeps_whole_history",
        description="AD on AD^eps Dark Room histories (max_perf 0.5), whole history in context, early-stopped on "
                    "8 validation goals, evaluated on the 16 held-out goals",
        # An 80-step window holds 4 of a history's 20 episodes, too few to remember which cells a sweep
        # already ruled out; with the whole history the greedy policy explores in mid-training and loses
        # it again by the end, hence the early stopping (benchmarks/studies/results/README.md, rounds 5-8).
        collect=CollectSpec("DarkRoom", "noise_distillation", num_steps=400, histories_per_task=250, max_perf=0.5,
                            split="fit"),
        model=model_config("DarkRoom", **{**SMALL_AD, "window_steps": WHOLE_HISTORY}),
        train=TrainConfig(**{**SHORT_RUN, "context_steps": WHOLE_HISTORY}),
        evaluation=PROTOCOLS["adeps"],
        claim={"ratio_to_best_in_data": 1.67},
        selection=Selection(every=350, episodes=40),
    ),
    Recipe(
        name="dark_room_q_learning",
        description="AD on tabular Q-learning Dark Room histories (40 episodes each), on the 16 held-out goals",
        collect=CollectSpec("DarkRoom", "q_learning", num_steps=800, histories_per_task=150, options={
            "learning_rate": 1.0, "exploration": {"schedule": "linear", "floor": 0.05, "floor_at": 0.5}}),
        model=model_config("DarkRoom", **SMALL_AD),
        train=TrainConfig(**SHORT_RUN),
        evaluation=PROTOCOLS["adeps"],
        claim={"last10_over_first_episode": 2.0},
    ),
    Recipe(
        name="key_to_door_adeps",
        description="AD on AD^eps Key-to-Door histories (max_perf 0.5), evaluated on the 50 held-out tasks",
        collect=CollectSpec("DarkKeyToDoor", "noise_distillation", num_steps=800, histories_per_task=12, max_perf=0.5),
        model=model_config("DarkKeyToDoor", **{**SMALL_AD, "window_steps": 160}),
        train=TrainConfig(**{**SHORT_RUN, "batch_size": 32, "context_steps": 160}),
        evaluation=PROTOCOLS["adeps"],
        claim={"ratio_to_best_in_data": 1.74},
    ),
    Recipe(
        name="bandit_dpt",
        description="DPT on 5-arm Bernoulli bandits, horizon 500, contexts from Dirichlet-mixed random policies",
        collect=CollectSpec("BernoulliBandit", "random", num_steps=500, num_tasks=4000, options={"concentration": 1.0},
                            env_kwargs={"horizon": 500}),
        model=model_config("BernoulliBandit", "dpt", window_steps=500, d_model=64, n_layer=3, n_head=4),
        train=TrainConfig(updates=6000, batch_size=16, context_steps=500, learning_rate=1e-3),
        evaluation=PROTOCOLS["dpt"],
        claim={"regret_to_thompson": 1.2},
    ),
]}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r} is not one of {sorted(RECIPES)}")
    return RECIPES[name]


def recipe_of(record: dict) -> Recipe | None:
    """The recipe a checkpoint was made by, if it was made by one."""
    name = (record.get("recipe") or {}).get("name")
    return get_recipe(name) if name else None


def evaluate_checkpoint(models, record: dict, protocol: Protocol | str | None = None, split: str = "test",
                        seed: int = 0, **overrides) -> tuple[dict, dict]:
    """Evaluate one or more trained models (training seeds) of a checkpoint's kind as its recipe does:
    the recipe's protocol (or the one named), on the family's `split` (bandits: the protocol's number of
    tasks drawn with `seed`), with `overrides` (episodes, decoding, ...) as ablations. The one function the
    CLI, `reproduce` and the notebooks evaluate with."""
    source = Provenance.of(record)
    family = source.env_family
    if protocol is None:
        recipe = recipe_of(record)
        protocol = recipe.evaluation if recipe else PROTOCOLS["dpt" if family == "BernoulliBandit" else "adeps"]
    protocol = get_protocol(protocol, **overrides) if isinstance(protocol, str) else replace(
        protocol, **{k: v for k, v in overrides.items() if v is not None})
    tasks = task_split(family, split, protocol.num_tasks, seed, size=source.env_kwargs.get("size", 9))
    figures, result = evaluate_protocol(models, record, tasks, protocol, seed)
    return {**figures, "split": split}, result


def save_figure(title: str, figures: dict, result: dict, path: Path):
    """The in-context curve (or regret curves) of a protocol evaluation, beside its controls."""
    import matplotlib.pyplot as plt

    from . import plots

    if "curves" in result:
        ax = plots.regret_curves(result["curves"])
    else:
        ax = plots.protocol_curves(result["frames"], best_in_data=figures["best_in_data_return"],
                                   optimal=figures["optimal_return"])
    decoding = figures["decoding"] + (f" at T={figures['temperature']:g}" if figures["decoding"] != "greedy" else "")
    ax.set_title(textwrap.fill(f"{title} ({figures['protocol']} protocol: {decoding}, seed {figures['evaluation_seed']})",
                               70), fontsize=8)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)


def evaluation_file(episodes: int | None = None, per_task: bool = False) -> str:
    """Where `--save` puts an evaluation: evaluation.json under the protocol's own number of episodes,
    evaluation-N-episodes.json for a shorter check (which the tests re-measure where the protocol is slow);
    per_task: the CSV of per-task values beside it (evaluation-per-task.csv, ...)."""
    stem = "evaluation" if episodes is None else f"evaluation-{episodes}-episodes"
    return f"{stem}-per-task.csv" if per_task else f"{stem}.json"


def save_evaluation(printed: dict, result: dict, folder: Path, record: dict, episodes: int | None = None):
    """An evaluation's JSON (see evaluation_file), its per-task values (for `compare_evaluations`) and,
    for the protocol's own number of episodes, its figure (figure.png), each written whole."""
    folder.mkdir(parents=True, exist_ok=True)
    json_file, csv_file = evaluation_file(episodes), evaluation_file(episodes, per_task=True)
    names = [json_file, csv_file] + (["figure.png"] if episodes is None else [])
    # Staged under temporary names (the extension last: savefig reads the format from it), then moved
    # into place, so an interrupted save leaves the files already there as they were.
    staged = {name: folder / f".tmp-{name}" for name in names}
    staged[json_file].write_text(json.dumps(printed, indent=2))
    task_values(result).to_csv(staged[csv_file], index=False)
    if episodes is None:
        recipe = recipe_of(record)
        save_figure(recipe.description if recipe else str(printed["checkpoint"]), printed, result, staged["figure.png"])
    for name, path in staged.items():
        path.replace(folder / name)


# What two saved evaluations must share for their tasks to be paired one by one.
SAME_SETTING = ("protocol", "decoding", "temperature", "tasks", "evaluation_seed", "episodes", "horizon",
                "rollouts_per_task", "optimal_return")
# Which tasks they were (the split evaluated, and `evaluate.task_digest`): checked where both saves record
# them, which saves made before they were recorded do not.
TASK_IDENTITY = ("split", "task_digest")


def compare_evaluations(folder_a, folder_b, episodes: int | None = None) -> dict:
    """Paired comparison of the models of two evaluations saved with `--save` on the same tasks and seed
    (two checkpoints, or two sets of training seeds): for every per-task figure, the mean difference a - b,
    its 95% bootstrap interval over tasks and whether it excludes 0. Saves of different settings or tasks
    are refused; "tasks_checked" says whether both recorded which tasks they played (TASK_IDENTITY)."""
    saved = []
    for folder in map(Path, (folder_a, folder_b)):
        paths = [folder / evaluation_file(episodes), folder / evaluation_file(episodes, per_task=True)]
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist: save the evaluation with "
                                        f"`python -m icrl_lab evaluate CHECKPOINT --save {folder}`"
                                        + (f" --episodes {episodes}" if episodes else "")
                                        + " (saves made before per-task values were kept need this again)")
        saved.append((json.loads(paths[0].read_text()), pd.read_csv(paths[1])))
    (figures_a, values_a), (figures_b, values_b) = saved
    recorded_by_both = [key for key in TASK_IDENTITY if key in figures_a and key in figures_b]
    tasks_checked = "task_digest" in recorded_by_both
    for key in SAME_SETTING + tuple(recorded_by_both):
        if figures_a.get(key) != figures_b.get(key):
            raise ValueError(f"the evaluations differ in {key} ({figures_a.get(key)!r} in {folder_a}, "
                             f"{figures_b.get(key)!r} in {folder_b}): only evaluations of the same tasks under the "
                             f"same protocol and evaluation seed pair up; evaluate both with the same options")
    model_a, model_b = (values[values["agent"] == "model"].set_index("task").drop(columns="agent")
                        for values in (values_a, values_b))
    seed = figures_a["evaluation_seed"]
    paired = {"a": figures_a["checkpoint"], "b": figures_b["checkpoint"],
              **{key: figures_a.get(key) for key in SAME_SETTING + tuple(recorded_by_both) if key in figures_a},
              "tasks_checked": tasks_checked}
    if not tasks_checked:
        paired["note"] = ("a save made before evaluations recorded their tasks (task_digest): the tasks are paired "
                          "by their number only; save it again with `evaluate --save` to check they are the same")
    return {**paired, "a_minus_b": {column: compare(model_a[column], model_b[column], seed=seed) for column in model_a}}


def reproduce(name: str, out_dir, seed: int = 0, command: str | None = None, progress: bool = True,
              train_config: TrainConfig | None = None, overwrite: bool = False, resume: bool = False) -> dict:
    """Collect, train and evaluate one recipe; write checkpoint, results.json and figure.png to out_dir.
    train_config: the recipe's own by default (with `seed`); a shorter one makes a quick version.
    A checkpoint already in out_dir is refused unless overwrite=True (see train), or resume=True, which
    goes on from it (an interrupted run: the same data, collected again from `seed`, and the same weights)."""
    recipe = get_recipe(name)
    out_dir = Path(out_dir)
    command = command or f"icrl_lab.recipes.reproduce({name!r}, seed={seed})"
    training = out_dir / "training" if recipe.selection else out_dir
    if resume and not any((training / file).exists() for file in ("training_state.json", STAGING)):
        raise FileNotFoundError(f"--out {out_dir} holds no run of {name} to resume ({training} has no training state): "
                                f"start it without --resume")
    timings, started = {}, time.perf_counter()
    data = recipe.collect.collect(seed, command=command)
    timings["collect_seconds"] = time.perf_counter() - started
    record = {"recipe": {"name": name}, "seed": seed, "command": command, **asdict(data.provenance())}
    started = time.perf_counter()
    config = train_config or replace(recipe.train, seed=seed, checkpoint_every=500)
    if recipe.selection is None:
        model, log = train(recipe.model, data, config, out_dir=out_dir, record=record, progress=progress,
                           overwrite=overwrite, resume=resume)
    else:
        model, log = train_and_choose(recipe, data, config, out_dir, record, seed, progress, overwrite, resume)
    timings["train_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    figures, result = evaluate_checkpoint(model, record, seed=seed)
    timings["evaluate_seconds"] = time.perf_counter() - started
    timings["total_seconds"] = sum(timings.values())
    results = {"recipe": name, "seed": seed, "command": command, "figures": figures, "timings": timings,
               "final_loss": log[-1]["loss"], "claim": recipe.claim}
    if recipe.selection is not None:
        results["chosen"] = json.loads((out_dir / "config.json").read_text())["selection"]["chosen"]
    (out_dir / ".results.json.tmp").write_text(json.dumps(results, indent=2))
    (out_dir / ".results.json.tmp").replace(out_dir / "results.json")
    save_figure(recipe.description, figures, result, out_dir / ".figure.tmp.png")
    (out_dir / ".figure.tmp.png").replace(out_dir / "figure.png")
    return results


CHOSEN_FILES = ("model.safetensors", "config.json")


def train_and_choose(recipe: Recipe, data, config: TrainConfig, out_dir: Path, record: dict, seed: int = 0,
                     progress: bool = True, overwrite: bool = False, resume: bool = False):
    """Train with early stopping on the validation tasks (recipe.selection): in stretches of `every` updates
    into out_dir/training (a resumable checkpoint of the latest update), each stretch's model scored on the
    "validation" split, and the best one's weights and config kept in out_dir, its config.json saying which
    update it is and holding every score so far ("selection"). resume=True goes on after the last stretch
    scored there (an interrupted stretch is trained again from its start, as train resumes; the scoring is
    deterministic). Returns (the chosen model, the log)."""
    selection = recipe.selection
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run in --out, overwrite "
                         "replaces it")
    scores, chosen_record, log = [], None, []
    if resume:
        if (out_dir / "config.json").is_file():
            chosen_record = json.loads((out_dir / "config.json").read_text())
            scores = chosen_record["selection"]["scores"]
        for name in RESULT_FILES:  # made from the chosen checkpoint, which the run may still change
            (out_dir / name).unlink(missing_ok=True)
    else:
        existing = [name for name in CHOSEN_FILES if (out_dir / name).exists()]
        if existing and not overwrite:
            raise FileExistsError(f"--out {out_dir} already holds a chosen checkpoint ({existing}): pass --resume "
                                  f"(resume=True) to go on with its run, --overwrite (overwrite=True) to replace it, "
                                  f"or choose another folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in CHOSEN_FILES + RESULT_FILES:
            (out_dir / name).unlink(missing_ok=True)
    validation = recipe.collect.tasks("validation", seed)
    scored = {score["update"] for score in scores}
    stops = [*range(selection.every, config.updates, selection.every), config.updates]
    for index, stop in enumerate(stops):
        if stop in scored:
            continue
        model, log = train(recipe.model, data, config, out_dir=out_dir / "training", record=record, progress=progress,
                           stop_at=stop, resume=resume or index > 0, overwrite=overwrite and index == 0)
        score = {"update": stop, **in_context_figures(model, recipe.family, validation, selection.episodes,
                                                       recipe.evaluation.decoding, selection.rollouts, seed,
                                                       env_kwargs=recipe.collect.env_kwargs)}
        scores.append(score)
        if selection.choose(scores) is score:  # a new best: keep its weights
            shutil.copyfile(out_dir / "training" / "model.safetensors", out_dir / ".model.safetensors.tmp")
            (out_dir / ".model.safetensors.tmp").replace(out_dir / "model.safetensors")
            chosen_record = json.loads((out_dir / "training" / "config.json").read_text())
        chosen_record["selection"] = {**asdict(selection), "split": "validation", "tasks": len(validation),
                                      "decoding": recipe.evaluation.decoding, "chosen": selection.choose(scores),
                                      "scores": scores}
        (out_dir / ".config.json.tmp").write_text(json.dumps(chosen_record, indent=2))  # beside its weights, whole
        (out_dir / ".config.json.tmp").replace(out_dir / "config.json")
    if not log:  # resumed after every stretch was scored: the log is the training checkpoint's
        log = json.loads((out_dir / "training" / "config.json").read_text())["log"]
    model, _ = load_model(out_dir)
    return model, log


def shipped_checkpoint(name: str, directory=None):
    """Where the checkpoint of a recipe lives: directory/NAME, by default the one shipped inside the package
    (icrl_lab/checkpoints/NAME, an importlib.resources Traversable: a Path wherever the package is installed
    as files)."""
    get_recipe(name)
    path = (Path(directory) if directory else SHIPPED) / name
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no checkpoint for {name!r} at {path}: make one with "
                                f"`python -m icrl_lab reproduce {name} --out {path}`")
    return path


def load_shipped(name: str, directory=None, device=None):
    """The model of a recipe and its record (config, data provenance, and under "results" the measured
    figures), from directory/NAME; by default the one shipped inside the package."""
    with as_file(shipped_checkpoint(name, directory)) as path:
        model, record = load_model(path, device=device)
        for key, file in (("results", "results.json"), ("evaluation", "evaluation.json")):
            if (path / file).is_file():
                record[key] = json.loads((path / file).read_text())
    return model, record


def load_or_reproduce(name: str, full: bool = False, directory=None, seed: int = 0, device=None):
    """A recipe's model and record: the shipped checkpoint (or the one in directory/NAME), or with full=True
    reproduced from scratch into directory/NAME (runs/checkpoints/NAME by default) first."""
    if not isinstance(full, bool):
        raise ValueError(f"full={full!r} is not allowed: it must be True or False (papermill: -p full True, "
                         f"-y 'full: false', not the string 'false')")
    if full:
        directory = Path(directory or "runs/checkpoints")
        reproduce(name, directory / name, seed=seed, overwrite=True)  # full=True asks for a fresh one
    return load_shipped(name, directory, device=device)
