"""How the dark_room_adeps recipe's evaluation was chosen, on validation goals only.

The recipe is trained on 57 of the 65 training goals; the other 8 (a fixed draw) are the validation
goals. Each decoding setting is scored by the ratio of its last-10-episode return to the best policy in
the data, over 16 rollouts per goal and 3 seeds. The 16 held-out test goals are never looked at.

    python benchmarks/studies/dark_room_exploration_temperature.py     (about 7 minutes on one core)
"""
from dataclasses import replace

import numpy as np
import torch

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals
from icrl_lab.evaluate import best_in_data_return, in_context_rollout, summarize
from icrl_lab.recipes import get_recipe
from icrl_lab.sources import optimal_returns
from icrl_lab.train import train

SETTINGS = [("greedy_when_rewarded", 1.0), ("greedy_when_rewarded", 1.5), ("greedy_when_rewarded", 2.0),
            ("greedy_when_rewarded", 3.0), ("sample", 1.0), ("sample", 0.5)]


def main():
    torch.set_num_threads(1)
    recipe = get_recipe("dark_room_adeps")
    goals = dark_room_goals("train")
    order = np.random.default_rng(7).permutation(len(goals))
    fit, validation = goals[order[8:]], goals[order[:8]]
    spec = recipe.collect
    histories = collect_noise_distillation("DarkRoom", fit, spec.num_steps, max_perf=spec.max_perf,
                                           histories_per_task=spec.histories_per_task, seed=0)
    model, log = train(recipe.model, histories, replace(recipe.train, seed=0), progress=False)
    best = best_in_data_return(histories.metadata, "DarkRoom", validation)
    optimal = optimal_returns("DarkRoom", validation).mean()
    rollouts = np.repeat(validation, 16, axis=0)
    for mode, temperature in SETTINGS:
        ratios = [summarize(in_context_rollout(model, "DarkRoom", rollouts, 50, mode=mode, temperature=temperature,
                                               seed=seed)[0], optimal, best)["ratio_to_best_in_data"] for seed in range(3)]
        print(f"{mode:22s} temperature {temperature:3.1f}: ratio {np.mean(ratios):.3f} (seeds {np.round(ratios, 3)})")


if __name__ == "__main__":
    main()
