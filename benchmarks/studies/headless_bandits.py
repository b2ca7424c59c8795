"""Headless-AD on Bernoulli bandits with more arms at test time than in any training history.

Data: Thompson sampling learning histories (horizon 100, kept short so that training fits in about 15
minutes on one CPU core) on bandits with 4 to 20 arms. Model: Headless-AD, the same transformer
backbone as AD, trained with the paper's loss temperature for bandits (tau 1.34, from the official
Bernoulli-bandit configuration). Evaluation: fresh bandits with 10, 20 (seen sizes), 25 and 50 arms
(unseen), regret against UCB1 and Thompson sampling with 95% bootstrap intervals over tasks, under the
paper's protocol: actions sampled from the softmax of the model's similarities (which training divided by
tau). A labelled ablation on the same bandits samples the learned distribution itself (temperature tau)
and decodes greedily.

    PYTHONPATH=. python benchmarks/studies/headless_bandits.py --out icrl_lab/checkpoints/bandit_headless_ad --seed 0
"""
import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from icrl_lab import plots
from icrl_lab.beyond_ad import collect_variable_arm_bandits, regret_table
from icrl_lab.headless import HeadlessADConfig
from icrl_lab.train import TrainConfig, train

ARMS = list(range(4, 21))
HORIZON = 100
TEST_ARMS = [10, 20, 25, 50]
ABLATION_ARMS = [25, 50]
PAPER_LOSS_TEMPERATURE = 1.34


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/bandit_headless_ad")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--tasks-per-arm", type=int, default=300)
    parser.add_argument("--eval-tasks", type=int, default=200)
    parser.add_argument("--loss-temperature", type=float, default=PAPER_LOSS_TEMPERATURE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "PYTHONPATH=. python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = Path(args.out)
    timings, started = {}, time.perf_counter()
    data = collect_variable_arm_bandits(ARMS, args.tasks_per_arm, HORIZON, "thompson", seed=args.seed)
    timings["collect_seconds"] = time.perf_counter() - started
    config = HeadlessADConfig(num_obs=1, num_actions=max(ARMS), window_steps=HORIZON, d_model=64, n_layer=3,
                              n_head=4, action_dim=64, arms_in_observation=True,
                              loss_temperature=args.loss_temperature)
    train_config = TrainConfig(updates=args.updates, batch_size=32, context_steps=HORIZON, learning_rate=1e-3,
                               seed=args.seed, log_every=100)
    record = {"seed": args.seed, "command": command, "env_family": "BernoulliBandit", "env_kwargs": {"horizon": HORIZON},
              "data": {**data.metadata, "parts": len(data.metadata["parts"])},
              "data_summary": {"histories": data.num_histories, "steps": data.num_steps, "arms": ARMS, "source": "thompson"}}
    started = time.perf_counter()
    model, log = train(config, data, train_config, out_dir=out, record=record)
    timings["train_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    table, curves = regret_table({"Headless-AD": model}, TEST_ARMS, num_tasks=args.eval_tasks, horizon=HORIZON,
                                 seed=args.seed)
    ablation = {}
    for rule, mode, temperature in [("sample the learned distribution (temperature tau)", "sample", args.loss_temperature),
                                    ("greedy", "greedy", 1.0)]:
        rows, _ = regret_table({"Headless-AD": model}, ABLATION_ARMS, num_tasks=args.eval_tasks, horizon=HORIZON,
                               seed=args.seed, mode=mode, temperature=temperature)
        ablation[rule] = rows[rows["learner"] == "Headless-AD"].to_dict(orient="records")
    timings["evaluate_seconds"] = time.perf_counter() - started
    print(table.round(2).to_string())
    results = {"name": "bandit_headless_ad", "seed": args.seed, "command": command,
               "protocol": "sample from the softmax of the similarities (the paper's code; training divided them "
                           f"by loss_temperature {args.loss_temperature})",
               "decoding_ablation": ablation,
               "train_arms": ARMS, "horizon": HORIZON, "eval_tasks": args.eval_tasks,
               "regret": table.to_dict(orient="records"), "timings": timings, "final_loss": log[-1]["loss"]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(TEST_ARMS), figsize=(3.2 * len(TEST_ARMS), 3), sharey=False)
    for ax, k in zip(axes, TEST_ARMS):
        plots.regret_curves(curves[k], ax=ax)
        ax.set_title(f"{k} arms" + (" (unseen)" if k > max(ARMS) else ""), fontsize=9)
    fig.suptitle(f"Headless-AD trained on 4-20 arms (Thompson histories, horizon {HORIZON})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "figure.png", dpi=80)


if __name__ == "__main__":
    main()
