import os

import matplotlib
import torch

# Small models run fastest on one thread, and a second thread only contends with other work on a
# 2-core machine.
torch.set_num_threads(1)
matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
