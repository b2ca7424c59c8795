"""Which sequence learner distils which algorithm, at what cost: AD's transformer, a GRU and a diagonal
state-space model (icrl_lab.sequence_models) trained on identical data with identical settings.

    PYTHONPATH=. python benchmarks/sequence_learners.py dark_room gru --seed 0   # -> icrl_lab/checkpoints/dark_room_gru
    PYTHONPATH=. python benchmarks/sequence_learners.py dark_room ssm --seed 0
    PYTHONPATH=. python benchmarks/sequence_learners.py dark_room_q_learning gru --seed 0  # -> runs/sequence_learners/
    PYTHONPATH=. python benchmarks/sequence_learners.py bandit ad --seed 0        # ad, gru or ssm -> bandit_thompson_<kind>
    PYTHONPATH=. python benchmarks/sequence_learners.py cost                      # decoding step cost vs context

Dark Room: the data, training settings and evaluation of the shipped `dark_room_adeps` recipe (AD^eps,
max_perf 0.5, 65 goals x 250 histories of 400 steps; 3000 updates; 16 held-out goals, 50 episodes,
8 rollouts each); the recipe's AD checkpoint is the transformer of the comparison. dark_room_q_learning:
the same with the `dark_room_q_learning` recipe's data and settings (its checkpoints are not shipped, to
keep the package small). Every Dark Room checkpoint is also measured under the adeps protocol with its
controls by `python -m icrl_lab evaluate <folder> --protocol adeps --seed 1 --save DIR`. Bandits: Thompson
sampling histories on 5-arm Bernoulli bandits (horizon 100), 800 updates for every learner, regret on
200 fresh bandits sampled at temperature 1, against Thompson sampling and UCB1.
"""
import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from icrl_lab.beyond_ad import regret_table, step_cost, update_cost
from icrl_lab.envs import bandit_tasks
from icrl_lab.evaluate import evaluate_protocol, get_protocol, headline
from icrl_lab.models import ADConfig
from icrl_lab.recipes import RECIPES
from icrl_lab.sequence_models import GRUConfig, SSMConfig
from icrl_lab.sources import collect_rl_histories
from icrl_lab.train import TrainConfig, train

CHECKPOINTS = Path("icrl_lab/checkpoints")
BANDIT_HORIZON, BANDIT_ARMS = 100, 5


def configs(family_sizes: dict, window: int, d_model: int, n_layer: int) -> dict:
    return {"ad": ADConfig(**family_sizes, window_steps=window, d_model=d_model, n_layer=n_layer, n_head=4),
            "gru": GRUConfig(**family_sizes, window_steps=window, d_model=d_model, n_layer=n_layer),
            "ssm": SSMConfig(**family_sizes, window_steps=window, d_model=d_model, n_layer=n_layer)}


def dark_room(kind: str, seed: int, command: str, recipe_name: str = "dark_room_adeps", out: Path | None = None):
    recipe = RECIPES[recipe_name]
    out = out or CHECKPOINTS / f"dark_room_{kind}"
    started = time.perf_counter()
    data = recipe.collect.collect(seed)
    ad = recipe.model
    config = configs({"num_obs": ad.num_obs, "num_actions": ad.num_actions, "obs_factors": ad.obs_factors},
                     ad.window_steps, ad.d_model, ad.n_layer)[kind]
    record = {"seed": seed, "command": command, "same_as_recipe": recipe_name, **asdict(data.provenance())}
    collect_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model, log = train(config, data, replace(recipe.train, seed=seed), out_dir=out, record=record)
    train_seconds = time.perf_counter() - started
    # Under the recipe's protocol (adeps: greedy, 100 episodes, 4 rollouts per goal, with the controls), and
    # read again with the "sample until rewarded, then argmax" rule, an ablation, the same for every learner.
    readings = {"protocol": recipe.evaluation,
                "ablation": get_protocol("adeps", decoding="greedy_when_rewarded", temperature=1.5, episodes=50,
                                         rollouts_per_task=8)}
    results = {"name": out.name, "seed": seed, "command": command, "same_as_recipe": recipe_name,
               "timings": {"collect_seconds": collect_seconds, "train_seconds": train_seconds},
               "final_loss": log[-1]["loss"]}
    for reading, evaluation in readings.items():
        figures, result = evaluate_protocol(model, record, recipe.test_tasks(), evaluation, seed=seed)
        results[reading] = {"evaluation": asdict(evaluation), "figures": headline(figures),
                            "per_episode_return": result["frames"]["model"].groupby("episode")["return"].mean().round(3).tolist()}
    # The figure shows the last reading (the ablation), where the learners differ.
    finish(out, results, lambda: plot_dark_room(result["frames"], figures, kind, recipe_name))


def plot_dark_room(frames, figures, kind, recipe_name):
    from icrl_lab import plots
    ax = plots.protocol_curves(frames, figures["best_in_data_return"], figures["optimal_return"])
    ax.set_title(f"{kind.upper()} on the {recipe_name} recipe's Dark Room data, 16 held-out goals (ablation decoding)",
                 fontsize=8)
    return ax.figure


def bandit(kind: str, seed: int, command: str, out: Path | None = None):
    out = out or CHECKPOINTS / f"bandit_thompson_{kind}"
    started = time.perf_counter()
    data = collect_rl_histories("BernoulliBandit", bandit_tasks(2000, BANDIT_ARMS, seed=seed), "thompson", BANDIT_HORIZON,
                                seed=seed, env_kwargs={"horizon": BANDIT_HORIZON})
    collect_seconds = time.perf_counter() - started
    config = configs({"num_obs": 1, "num_actions": BANDIT_ARMS}, BANDIT_HORIZON, 32, 2)[kind]
    record = {"seed": seed, "command": command, **data.provenance()}
    started = time.perf_counter()
    model, log = train(config, data, TrainConfig(updates=800, batch_size=32, context_steps=BANDIT_HORIZON,
                                                 learning_rate=3e-3, seed=seed), out_dir=out, record=record)
    train_seconds = time.perf_counter() - started
    table, curves = regret_table({kind.upper(): model}, [BANDIT_ARMS], num_tasks=200, horizon=BANDIT_HORIZON, seed=seed)
    print(table.round(2).to_string())
    results = {"name": f"bandit_thompson_{kind}", "seed": seed, "command": command, "regret": table.to_dict(orient="records"),
               "timings": {"collect_seconds": collect_seconds, "train_seconds": train_seconds}, "final_loss": log[-1]["loss"]}

    def figure():
        from icrl_lab import plots
        ax = plots.regret_curves(curves[BANDIT_ARMS])
        ax.set_title(f"{kind.upper()} distilling Thompson sampling, 5 arms, 200 fresh bandits", fontsize=8)
        return ax.figure
    finish(out, results, figure)


def finish(out: Path, results: dict, figure):
    (out / "results.json").write_text(json.dumps(results, indent=2))
    fig = figure()
    fig.tight_layout()
    fig.savefig(out / "figure.png", dpi=80)
    for name in ("training_state.json", "training_state.safetensors"):
        (out / name).unlink(missing_ok=True)
    print(json.dumps({k: v.get("figures", v) if isinstance(v, dict) else v for k, v in results.items()}, indent=1))


def cost(seed: int, command: str):
    """Seconds per decoding step of 16 streams after 0..1000 steps, and per training update (batch 64 of
    80-step Dark Room windows), for same-width models; measured back to back on this machine."""
    torch.manual_seed(seed)
    sizes = {"num_obs": 81, "num_actions": 5, "obs_factors": (9, 9)}
    models = {**configs(sizes, 80, 64, 2), "ad_window1000": ADConfig(**sizes, window_steps=1000, d_model=64, n_layer=2)}
    contexts = [0, 100, 250, 500, 1000]
    rows = {}
    for name, config in models.items():
        model = config.build().eval()
        frame = step_cost(model, contexts, batch_size=16, repeats=30)
        rows[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                      "ms_per_step": dict(zip(contexts, (1000 * frame["seconds_per_step"]).round(3)))}
        rows[name]["ms_per_update"] = round(1000 * update_cost(config), 1)
        print(name, rows[name], flush=True)
    Path("benchmarks/studies/results").mkdir(exist_ok=True)
    Path("benchmarks/studies/results/sequence_learner_cost.json").write_text(json.dumps({"command": command, "models": rows}, indent=2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("study", choices=["dark_room", "dark_room_q_learning", "bandit", "cost"])
    parser.add_argument("kind", nargs="?", choices=["ad", "gru", "ssm"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="the checkpoint folder (default: the shipped one; "
                        "dark_room_q_learning: runs/sequence_learners/dark_room_q_learning_<kind>)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "PYTHONPATH=. python " + " ".join(shlex.quote(a) for a in sys.argv)
    if args.study == "cost":
        cost(args.seed, command)
    elif args.study == "dark_room_q_learning":
        dark_room(args.kind, args.seed, command, "dark_room_q_learning",
                  args.out or Path("runs/sequence_learners") / f"dark_room_q_learning_{args.kind}")
    elif args.study == "dark_room":
        dark_room(args.kind, args.seed, command, out=args.out)
    else:
        bandit(args.kind, args.seed, command, args.out)


if __name__ == "__main__":
    main()
