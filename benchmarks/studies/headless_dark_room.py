"""Dark Room with its five actions permuted per task: AD's fixed action head against Headless-AD.

Both are trained on the same data with the same settings: the shipped `dark_room_adeps` recipe (AD^eps,
max_perf 0.5, 3000 updates, or --updates); AD is the recipe's shipped checkpoint. Headless-AD sees random action
embeddings redrawn for every training window, so it must work out from its context what each action
does. Both then act on the 16 held-out goals, with the actions as trained and with a random permutation
of the five actions per task and rollout (icrl_lab.headless.ActionRelabelled), read with an ablation
rule (sample at temperature 1.5 until a reward is in context, then greedy).

    PYTHONPATH=. python benchmarks/studies/headless_dark_room.py --seed 0
    PYTHONPATH=. python benchmarks/studies/headless_dark_room.py --seed 0 --updates 12000 --out runs/dark_room_headless_ad_12k
"""
import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from icrl_lab.beyond_ad import permuted_dark_room, plot_permuted
from icrl_lab.headless import HeadlessADConfig
from icrl_lab.recipes import RECIPES, load_shipped
from icrl_lab.train import train

SHIPPED = Path("icrl_lab/checkpoints/dark_room_headless_ad")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--updates", type=int, help="training updates (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args()
    out = args.out
    torch.set_num_threads(1)
    command = "PYTHONPATH=. python " + " ".join(shlex.quote(a) for a in sys.argv)
    recipe = RECIPES["dark_room_adeps"]
    data = recipe.collect.collect(args.seed)
    ad = recipe.model
    config = HeadlessADConfig(num_obs=ad.num_obs, num_actions=ad.num_actions, obs_factors=ad.obs_factors,
                              window_steps=ad.window_steps, d_model=ad.d_model, n_layer=ad.n_layer, n_head=ad.n_head,
                              action_dim=32)
    record = {"seed": args.seed, "command": command, "same_as_recipe": "dark_room_adeps", **asdict(data.provenance())}
    started = time.perf_counter()
    settings = replace(recipe.train, seed=args.seed, **({"updates": args.updates} if args.updates else {}))
    model, log = train(config, data, settings, out_dir=out, record=record)
    train_seconds = time.perf_counter() - started
    # An ablation decoding ("sample at T=1.5 until rewarded, then argmax"): under the adeps protocol's greedy
    # actions neither model explores, and the comparison would show nothing.
    frame = permuted_dark_room({"AD": load_shipped("dark_room_adeps")[0], "Headless-AD": model}, recipe.test_tasks(),
                               episodes=args.episodes, seed=args.seed, mode="greedy_when_rewarded",
                               temperature=1.5, rollouts_per_task=4)
    last = frame[frame["episode"] >= args.episodes - 10].groupby(["model", "actions"])["return"].mean()
    first = frame[frame["episode"] == 0].groupby(["model", "actions"])["return"].mean()
    results = {"name": "dark_room_headless_ad", "seed": args.seed, "command": command, "episodes": args.episodes,
               "mean_return_last10": {f"{m} / {a}": float(v) for (m, a), v in last.items()},
               "mean_return_first_episode": {f"{m} / {a}": float(v) for (m, a), v in first.items()},
               "updates": settings.updates, "timings": {"train_seconds": train_seconds}, "final_loss": log[-1]["loss"]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    ax = plot_permuted(frame)
    ax.set_title("Dark Room, 16 held-out goals, actions permuted per task", fontsize=9)
    fig = ax.figure
    fig.tight_layout()
    fig.savefig(out / "figure.png", dpi=80)
    for name in ("training_state.json", "training_state.safetensors"):
        (out / name).unlink(missing_ok=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
