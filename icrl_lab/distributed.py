"""Training on several processes at once: PyTorch's DistributedDataParallel, launched by torchrun.

    torchrun --standalone --nproc_per_node=2 -m icrl_lab train --data runs/data.h5 --out runs/ad

torchrun starts one process per device and tells each its place in environment variables (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `join` reads them, so the same `train` call runs
unchanged in one process or in many, on one machine or across nodes (then --out must be a shared folder).

How the work is shared, and why:
- The configured batch_size is the global batch. The windows of every update are drawn from one random
  stream that every process seeds alike, and process r trains on rows [r*b, (r+1)*b) of it (b = batch_size
  / world size). So the processes never train on the same windows, and a run on N processes sees exactly
  the batches of a one-process run: the same seed gives the same model (to float rounding) whatever N is,
  and a checkpoint resumes on any number of processes.
- DDP averages the gradients; as every process holds b windows, that is the gradient of the global batch.
- Dropout draws from each process's own generator (seeded from the seed and the rank).
- Process 0 alone writes checkpoints, logs and the progress bar; the others wait for it where it matters.
- gloo on CPU, NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the processes of one run (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def share(self, batch_size: int) -> slice:
        """The rows of the global batch that this process trains on."""
        if batch_size % self.world_size:
            raise ValueError(f"batch_size={batch_size} does not split evenly over {self.world_size} processes: use a "
                             f"multiple of {self.world_size} (batch_size is the global batch)")
        rows = batch_size // self.world_size
        return slice(self.rank * rows, (self.rank + 1) * rows)

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on CUDA (cuda:LOCAL_RANK); CPU processes share the CPU."""
        if self.is_distributed and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def dropout_seed(self, seed: int) -> int:
        """Process 0 keeps the run's seed (a one-process run is unchanged); the others get their own streams."""
        return seed if self.rank == 0 else int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def on_main(self, function, *args, **kwargs):
        """Run `function` on process 0 alone; an error there is raised on every process (not a hang)."""
        error = None
        if self.is_main:
            try:
                function(*args, **kwargs)
            except (ValueError, OSError) as raised:
                error = raised
        if self.is_distributed:
            message = [(type(error), str(error)) if error is not None else None]
            dist.broadcast_object_list(message, src=0)
            if message[0] is not None and error is None:
                kind, text = message[0]
                raise kind(text)
        if error is not None:
            raise error

    def all_true(self, flag: torch.Tensor) -> bool:
        """Whether a boolean flag holds on every process."""
        if self.is_distributed:
            flag = flag.to(torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over the processes (the global batch's loss from each share's)."""
        if self.is_distributed:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value

    def gather(self, value):
        """Every process's `value` (a list, in rank order); [value] when run alone."""
        if not self.is_distributed:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self):
        if self.is_distributed:
            dist.barrier()


def join(device: torch.device) -> tuple[ProcessGroup, bool]:
    """This process's group from torchrun's environment variables, starting the process group if torchrun
    launched several processes and nobody started it yet. Returns (group, whether this call started it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return ProcessGroup(), False
    try:
        group = ProcessGroup(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise ValueError(f"WORLD_SIZE={world_size} but RANK is missing or not a number: launch several processes "
                         f"with torchrun (torchrun --nproc_per_node=N -m icrl_lab train ...)") from None
    if dist.is_initialized():
        return group, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return group, True


def leave(started: bool):
    """Close the process group if `join` started it."""
    if started:
        dist.destroy_process_group()


class LossOf(nn.Module):
    """A model whose forward is its training loss: DistributedDataParallel synchronises gradients around
    forward(), and the kit's models compute their loss in a method of their own."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.loss(batch)


def wrap(model: nn.Module, group: ProcessGroup, device: torch.device) -> nn.Module:
    """A module whose forward(batch) is the loss, its gradients averaged over the processes when there
    are several."""
    loss = LossOf(model)
    if not group.is_distributed:
        return loss
    return nn.parallel.DistributedDataParallel(loss, device_ids=[device.index] if device.type == "cuda" else None)
