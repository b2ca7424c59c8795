"""Training throughput: the kit's one-token-per-step AD against a three-tokens-per-step model of the
same width and depth (the AD^eps code's layout: previous action, previous reward and observation as
separate tokens), on the same AD^eps Dark Room batches.

Throughput is context steps per second: batch size x steps per sequence / seconds per update
(forward, backward and AdamW step), best of `--repeats` timed blocks after warm-up updates.
It runs where training would (`train.pick_device`): on a GPU when one is present (bf16 autocast, as
`train` does), else on the CPU, and the output says which. With --compile it also times the one-token
model under torch.compile against the same model eager, in the same run (the compilation itself is
left out: it happens in the warm-up). With --dropout P it also times the one-token model with attention
dropout P and with key dropout P (`ADConfig.key_dropout`), against it without, in the same run. The last
line printed is one JSON object.

    python benchmarks/train.py [--d-model 128] [--context-steps 80] [--batch-size 64] [--compile] [--dropout 0.5]
"""
import argparse
import json
import time

import torch

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import dark_room_goals
from icrl_lab.histories import ContextWindows
from icrl_lab.distributed import LossOf
from icrl_lab.models import ADConfig, ICRLTransformer
from icrl_lab.train import pick_device


def seconds_per_update(model, windows, batch_size, updates, repeats, device, compile_model=False):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    loss_of = torch.compile(LossOf(model)) if compile_model else LossOf(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def block(n):
        start = time.perf_counter()
        for _ in range(n):
            with autocast:
                loss = loss_of(windows.sample(batch_size, generator))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
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
    parser.add_argument("--compile", action="store_true", help="also time the one-token model under torch.compile")
    parser.add_argument("--dropout", type=float, metavar="P",
                        help="also time the one-token model with attention dropout P and with key dropout P")
    args = parser.parse_args()
    device = pick_device("auto")
    data = collect_noise_distillation("DarkRoom", dark_room_goals("train"), num_steps=400, histories_per_task=8, seed=0)
    windows = ContextWindows(data, args.context_steps, num_actions=5, device=device)
    result = {"benchmark": "train", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "d_model": args.d_model, "n_layer": args.n_layer, "context_steps": args.context_steps,
              "batch_size": args.batch_size, "torch_threads": torch.get_num_threads()}
    variants = [("one_token", 1, False, {}), ("three_tokens", 3, False, {})]
    variants += [("compiled", 1, True, {})] if args.compile else []
    if args.dropout is not None:
        variants += [("attention_dropout", 1, False, {"attention_dropout": args.dropout}),
                     ("key_dropout", 1, False, {"key_dropout": args.dropout})]
    for name, tokens, compile_model, regularisation in variants:
        torch.manual_seed(0)
        config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=args.context_steps,
                          tokens_per_step=tokens, d_model=args.d_model, n_layer=args.n_layer, n_head=args.n_head,
                          **regularisation)
        seconds = seconds_per_update(ICRLTransformer(config).to(device), windows, args.batch_size, args.updates,
                                     args.repeats, device, compile_model)
        result[f"{name}_seconds_per_update"] = round(seconds, 4)
        result[f"{name}_steps_per_s"] = round(args.batch_size * args.context_steps / seconds)
    result["speedup"] = round(result["one_token_steps_per_s"] / result["three_tokens_steps_per_s"], 2)
    if args.compile:
        result["compile_speedup"] = round(result["compiled_steps_per_s"] / result["one_token_steps_per_s"], 2)
    for name in ("attention_dropout", "key_dropout") if args.dropout is not None else ():
        result[f"{name}_time_ratio"] = round(result["one_token_steps_per_s"] / result[f"{name}_steps_per_s"], 2)
    where = f"on {result['device']}" if device.type == "cuda" else "on the CPU (no GPU here: CPU figures)"
    print(f"{where}: one token per step: {result['one_token_steps_per_s']} context steps/s; three tokens per step: "
          f"{result['three_tokens_steps_per_s']} context steps/s"
          + (f"; compiled: {result['compiled_steps_per_s']} ({result['compile_speedup']}x)" if args.compile else "")
          + (f"; time per update against no dropout: attention dropout {args.dropout} "
             f"{result['attention_dropout_time_ratio']}x, key dropout {args.dropout} {result['key_dropout_time_ratio']}x"
             if args.dropout is not None else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
