"""Training throughput: the kit's one-token-per-step AD against a three-tokens-per-step model of the
same width and depth (the AD^eps code's layout: previous action, previous reward and observation as
separate tokens), on the same AD^eps Dark Room batches.

Throughput is context steps per second: batch size x steps per sequence / seconds per update
(forward, backward and AdamW step), best of `--repeats` timed blocks after warm-up updates.
The last line printed is one JSON object.

    python benchmarks/train.py [--d-model 128] [--context-steps 80] [--batch-size 64]
"""
import argparse
import json
import time

import torch

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals
from icrl_lab.histories import ContextWindows
from icrl_lab.models import ADConfig, ICRLTransformer


def seconds_per_update(model, windows, batch_size, updates, repeats):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def block(n):
        start = time.perf_counter()
        for _ in range(n):
            loss = model.loss(windows.sample(batch_size, generator))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / n

    block(3)  # warm-up
    return min(block(updates) for _ in range(repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--context-steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = collect_noise_distillation("DarkRoom", dark_room_goals("train"), num_steps=400, histories_per_task=8, seed=0)
    windows = ContextWindows(data, args.context_steps, num_actions=5)
    result = {"benchmark": "train", "d_model": args.d_model, "n_layer": args.n_layer, "context_steps": args.context_steps,
              "batch_size": args.batch_size, "torch_threads": torch.get_num_threads()}
    for tokens in (1, 3):
        torch.manual_seed(0)
        config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=args.context_steps,
                          tokens_per_step=tokens, d_model=args.d_model, n_layer=args.n_layer, n_head=args.n_head)
        seconds = seconds_per_update(ICRLTransformer(config), windows, args.batch_size, args.updates, args.repeats)
        name = "one_token" if tokens == 1 else "three_tokens"
        result[f"{name}_seconds_per_update"] = round(seconds, 4)
        result[f"{name}_steps_per_s"] = round(args.batch_size * args.context_steps / seconds)
    result["speedup"] = round(result["one_token_steps_per_s"] / result["three_tokens_steps_per_s"], 2)
    print(f"one token per step: {result['one_token_steps_per_s']} context steps/s; "
          f"three tokens per step: {result['three_tokens_steps_per_s']} context steps/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
