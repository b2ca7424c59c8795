"""How the bandit_dpt recipe's sampling temperature was chosen: on a fresh validation draw of 200
bandits (seed 12345), never on the test draw. Regret is relative to Thompson sampling on the same tasks.

    python benchmarks/studies/bandit_dpt_temperature.py CHECKPOINT_DIR
"""
import sys

import numpy as np
import torch

from icrl_lab.envs import bandit_tasks
from icrl_lab.evaluate import evaluate_protocol, get_protocol
from icrl_lab.models import load_model

SETTINGS = [("sample", 1.0), ("sample", 0.75), ("sample", 0.5), ("sample", 0.35), ("sample", 0.25), ("greedy", 1.0)]


def main():
    torch.set_num_threads(1)
    model, record = load_model(sys.argv[1])
    tasks = bandit_tasks(200, k=5, seed=12345)
    for mode, temperature in SETTINGS:
        ratios = [evaluate_protocol(model, record, tasks, get_protocol("dpt", decoding=mode, temperature=temperature),
                                    seed)[0]["regret_to_thompson"]
                  for seed in range(2)]
        print(f"{mode:6s} temperature {temperature:4.2f}: regret / Thompson's {np.mean(ratios):.3f} (seeds {np.round(ratios, 3)})")


if __name__ == "__main__":
    main()
