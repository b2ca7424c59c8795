"""Named reproductions: the data, model, training and evaluation behind each headline, in one place.

`reproduce(name, out_dir)` runs the whole flow (collect -> train -> evaluate) with fixed seeds and
writes the checkpoint, a results.json with the measured figures and timings, and the figure. The
shipped checkpoints in data/checkpoints/ were made this way; `load_shipped(name)` loads one.

    python -m icrl_lab reproduce dark_room_adeps --out runs/dark_room_adeps
"""
from __future__ import annotations

import json
import textwrap
import time
from dataclasses import asdict, dataclass, field
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

from .curricula import collect_noise_distillation
from .envs import task_split, token_sizes
from .evaluate import evaluate_model
from .models import CONFIGS, load_model
from .sources import collect_rl_histories
from .schedules import make_schedule
from .train import TrainConfig, train

SHIPPED = files(__package__) / "checkpoints"  # package data: an installed wheel carries the checkpoints
SHIPPED_NAMES = ("dark_room_adeps", "dark_room_q_learning", "key_to_door_adeps", "bandit_dpt")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    family: str
    data: dict                      # collection: source and its arguments
    model: dict                     # model config (observation and action sizes come from the environment)
    train: dict                     # TrainConfig fields
    evaluation: dict                # episodes, mode, temperature (or horizon for bandits)
    claim: dict = field(default_factory=dict)  # the headline and its target, e.g. {"ratio_to_best_in_data": 2.0}
    env_kwargs: dict = field(default_factory=dict)


RECIPES = {recipe.name: recipe for recipe in [
    Recipe(
        name="dark_room_adeps",
        description="AD on AD^eps Dark Room histories (max_perf 0.5), evaluated on the 16 held-out goals",
        family="DarkRoom",
        # Short histories (20 episodes): the noise falls fast enough to be seen inside an 80-step window.
        data={"source": "noise_distillation", "split": "train", "num_steps": 400, "histories_per_task": 250,
              "max_perf": 0.5},
        model={"kind": "ad", "window_steps": 80, "d_model": 64, "n_layer": 2, "n_head": 4},
        train={"updates": 3000, "batch_size": 64, "context_steps": 80, "learning_rate": 3e-3, "weight_decay": 1e-4},
        # Explore at temperature 1.5 until a reward is in context: chosen on 8 validation goals held out of
        # training (ratio 1.70 at 1.0, 1.85 at 1.5, 1.84 at 2.0, 1.86 at 3.0), never on the 16 test goals.
        evaluation={"episodes": 50, "mode": "greedy_when_rewarded", "temperature": 1.5, "rollouts_per_task": 8},
        claim={"ratio_to_best_in_data": 2.0},
    ),
    Recipe(
        name="dark_room_q_learning",
        description="AD on tabular Q-learning Dark Room histories (40 episodes each), on the 16 held-out goals",
        family="DarkRoom",
        data={"source": "q_learning", "split": "train", "num_steps": 800, "histories_per_task": 150,
              "learning_rate": 1.0, "exploration": {"schedule": "linear", "floor": 0.05, "floor_at": 0.5}},
        model={"kind": "ad", "window_steps": 80, "d_model": 64, "n_layer": 2, "n_head": 4},
        train={"updates": 3000, "batch_size": 64, "context_steps": 80, "learning_rate": 3e-3, "weight_decay": 1e-4},
        evaluation={"episodes": 50, "mode": "greedy_when_rewarded", "temperature": 1.0, "rollouts_per_task": 8},
        claim={"last10_over_first_episode": 2.0},
    ),
    Recipe(
        name="key_to_door_adeps",
        description="AD on AD^eps Key-to-Door histories (max_perf 0.5), evaluated on the 50 held-out tasks",
        family="DarkKeyToDoor",
        data={"source": "noise_distillation", "split": "train", "num_steps": 800, "histories_per_task": 12,
              "max_perf": 0.5},
        model={"kind": "ad", "window_steps": 160, "d_model": 64, "n_layer": 2, "n_head": 4},
        train={"updates": 3000, "batch_size": 32, "context_steps": 160, "learning_rate": 3e-3, "weight_decay": 1e-4},
        evaluation={"episodes": 50, "mode": "greedy_when_rewarded", "temperature": 1.0, "rollouts_per_task": 8},
        claim={"ratio_to_best_in_data": 1.5},
    ),
    Recipe(
        name="bandit_dpt",
        description="DPT on 5-arm Bernoulli bandits, horizon 500, contexts from Dirichlet-mixed random policies",
        family="BernoulliBandit",
        data={"source": "random", "num_tasks": 4000, "num_steps": 500, "concentration": 1.0},
        model={"kind": "dpt", "window_steps": 500, "d_model": 64, "n_layer": 3, "n_head": 4},
        train={"updates": 6000, "batch_size": 16, "context_steps": 500, "learning_rate": 1e-3},
        # Temperature chosen on a fresh validation draw of 200 bandits (seed 12345), not the test draw.
        evaluation={"num_tasks": 200, "mode": "sample", "temperature": 0.5},
        claim={"regret_to_thompson": 1.2},
        env_kwargs={"horizon": 500},
    ),
]}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r} is not one of {sorted(RECIPES)}")
    return RECIPES[name]


def tasks_for(recipe: Recipe, split: str, seed: int = 0, num_tasks: int | None = None):
    """A recipe's tasks of a split (for bandits, `num_tasks` or the recipe's own number)."""
    return task_split(recipe.family, split, num_tasks or recipe.data.get("num_tasks", 100), seed,
                      size=recipe.env_kwargs.get("size", 9))


def collect_data(recipe: Recipe, seed: int = 0):
    data = dict(recipe.data)
    source = data.pop("source")
    tasks = tasks_for(recipe, data.pop("split", "train"), seed, data.pop("num_tasks", None))
    if source == "noise_distillation":
        return collect_noise_distillation(recipe.family, tasks, seed=seed, env_kwargs=recipe.env_kwargs, **data)
    num_steps = data.pop("num_steps")
    if "exploration" in data:
        data["exploration"] = make_schedule(**data["exploration"])
    return collect_rl_histories(recipe.family, tasks, source, num_steps, seed=seed, env_kwargs=recipe.env_kwargs, **data)


def model_config(recipe: Recipe):
    fields_ = dict(recipe.model)
    return CONFIGS[fields_.pop("kind")](**token_sizes(recipe.family, tasks_for(recipe, "train"), **recipe.env_kwargs),
                                        **fields_)


def evaluate_checkpoint(model, record: dict, episodes: int | None = None, num_tasks: int | None = None,
                        seed: int = 0) -> tuple[dict, object]:
    """Measure a reproduction's headline figures on its held-out tasks, as its recipe evaluates them."""
    recipe = get_recipe(record["recipe"]["name"])
    evaluation = recipe.evaluation
    tasks = tasks_for(recipe, "test", seed, num_tasks or evaluation.get("num_tasks"))
    return evaluate_model(model, record, tasks, episodes or evaluation.get("episodes", 1), mode=evaluation["mode"],
                          temperature=evaluation["temperature"], seed=seed,
                          rollouts_per_task=evaluation.get("rollouts_per_task", 1))


def save_figure(recipe: Recipe, figures: dict, result, path: Path):
    from . import plots

    if recipe.family == "BernoulliBandit":
        ax = plots.regret_curves(result)
    else:
        ax = plots.in_context_curve(result, label="AD in context", reference={
            "optimal": figures["optimal_return"], "best policy in the data": figures["best_in_data_return"]})
    ax.set_title(textwrap.fill(recipe.description, 70), fontsize=8)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)


def reproduce(name: str, out_dir, seed: int = 0, command: str | None = None, progress: bool = True) -> dict:
    """Collect, train and evaluate one recipe; write checkpoint, results.json and figure.png to out_dir."""
    recipe = get_recipe(name)
    out_dir = Path(out_dir)
    timings, started = {}, time.perf_counter()
    data = collect_data(recipe, seed)
    timings["collect_seconds"] = time.perf_counter() - started
    record = {"recipe": asdict(recipe), "seed": seed, "command": command or f"icrl_lab.recipes.reproduce({name!r}, seed={seed})",
              **data.provenance()}
    started = time.perf_counter()
    model, log = train(model_config(recipe), data, TrainConfig(seed=seed, checkpoint_every=500, **recipe.train),
                       out_dir=out_dir, record=record, progress=progress)
    timings["train_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    figures, result = evaluate_checkpoint(model, record, seed=seed)
    timings["evaluate_seconds"] = time.perf_counter() - started
    timings["total_seconds"] = sum(timings.values())
    results = {"recipe": name, "seed": seed, "command": record["command"], "figures": figures, "timings": timings,
               "final_loss": log[-1]["loss"], "claim": recipe.claim}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    save_figure(recipe, figures, result, out_dir / "figure.png")
    return results


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
        results = path / "results.json"
        if results.is_file():
            record["results"] = json.loads(results.read_text())
    return model, record
