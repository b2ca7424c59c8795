"""In-context evaluation speed: the key/value cache against recomputing the context at every step.

At the AD^eps paper's size (hidden 512, 4 layers, 4 heads, an 80-step window, the 81 Dark Room goals
at once), one greedy rollout is played with the cache; then, over the same streams, each step is
recomputed without a cache, two ways:
- over the model's whole receptive field (layers x (window - 1) + 1 steps), which gives exactly the
  cache's logits: the greedy actions must be identical;
- over the last `window` steps only, as the official AD^eps code does (its cost, for comparison: with
  sliding-window attention in every layer its logits are not the cache's).
Times are per environment step for all 81 tasks; the last line printed is one JSON object. It runs
on a GPU when one is present (`train.pick_device`), else on the CPU, and says which.

    python benchmarks/rollout.py [--steps 400] [--recompute-steps 4]
"""
import argparse
import json
import time

import numpy as np
import torch

from icrl_lab.envs import dark_room_goals
from icrl_lab.evaluate import in_context_rollout
from icrl_lab.histories import previous_actions_and_rewards
from icrl_lab.models import ADConfig, ICRLTransformer
from icrl_lab.train import pick_device


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="cached rollout length (20-step episodes)")
    parser.add_argument("--recompute-steps", type=int, default=4, help="steps timed for each recomputation")
    parser.add_argument("--d-model", type=int, default=512)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=80, d_model=args.d_model,
                      n_layer=4, n_head=4)
    device = pick_device("auto")
    model = ICRLTransformer(config).to(device).eval()

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()
    goals = dark_room_goals("all")
    episodes = args.steps // 20

    start = time.perf_counter()
    _, played = in_context_rollout(model, "DarkRoom", goals, episodes, mode="greedy")
    synchronize()
    cached_per_step = (time.perf_counter() - start) / played.num_steps

    prev_actions, prev_rewards = previous_actions_and_rewards(played, config.num_actions)
    stream = [torch.as_tensor(a.astype(np.int64) if a.dtype != np.float32 else a, device=device)
              for a in (played.observations, prev_actions, prev_rewards)]
    receptive_field = config.n_layer * (config.window_steps - 1) + 1
    timed = range(played.num_steps - args.recompute_steps, played.num_steps)

    def recompute(span):
        actions, began = [], time.perf_counter()
        with torch.no_grad():
            for t in timed:
                logits = model(*(x[:, max(0, t + 1 - span):t + 1] for x in stream))[:, -1]
                actions.append(logits.argmax(-1).cpu().numpy())
        synchronize()
        return np.stack(actions, axis=1), (time.perf_counter() - began) / len(timed)

    exact_actions, exact_per_step = recompute(receptive_field)
    _, window_per_step = recompute(config.window_steps)
    identical = bool(np.array_equal(exact_actions, played.actions[:, list(timed)]))
    result = {
        "benchmark": "rollout", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "tasks": len(goals), "d_model": args.d_model, "n_layer": 4, "window_steps": 80,
        "cached_steps": played.num_steps, "cached_ms_per_step": round(1e3 * cached_per_step, 2),
        "recompute_receptive_field_ms_per_step": round(1e3 * exact_per_step, 1),
        "recompute_window_ms_per_step": round(1e3 * window_per_step, 1),
        "identical_greedy_actions": identical,
        "speedup": round(exact_per_step / cached_per_step, 1),
        "speedup_vs_window_recompute": round(window_per_step / cached_per_step, 1),
        "torch_threads": torch.get_num_threads(),
    }
    where = f"on {result['device']}" if device.type == "cuda" else "on the CPU (no GPU here: CPU figures)"
    print(f"{where}: cache: {result['cached_ms_per_step']} ms/step; exact recompute: {result['recompute_receptive_field_ms_per_step']} "
          f"ms/step; window recompute: {result['recompute_window_ms_per_step']} ms/step; identical actions: {identical}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
