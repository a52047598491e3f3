"""Distributed data parallel (DDP) in a few lines, on CPUs with the gloo backend.

    torchrun --standalone --nproc_per_node=2 -m course_lib.ddp_demo --out ddp.pt

Every process (rank) holds a full copy of the model and takes its own slice of each global batch.
After ``loss.backward()`` DDP all-reduces the gradients, i.e. replaces each process's gradient by
the mean over the :math:`R` processes,

.. math::  g = \\frac1R \\sum_{r=1}^{R} \\nabla_\\theta \\frac{1}{B/R}\\sum_{i \\in \\text{slice}_r} \\ell_i
            = \\nabla_\\theta \\frac1B \\sum_{i=1}^{B} \\ell_i,

the gradient of the mean loss over the global batch. All copies start equal (DDP broadcasts
rank 0's parameters) and take the same optimiser step, so they stay equal and match one process
trained on the global batch — what the test checks. On GPUs the backend is ``nccl``, one process
per GPU, and the all-reduce overlaps with the backward pass.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

from course_lib.data import load_digits


def make_model(seed: int = 0) -> nn.Module:
    """A small MLP for the 8×8 digits (no dropout/BatchNorm, which would differ per process)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def global_batches(steps: int, batch_size: int, seed: int = 0):
    """The same sequence of global batches ``(images, labels)`` in every process."""
    images, labels = load_digits()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(labels), generator=generator)[:batch_size]
        yield images[idx], labels[idx]


def train(model: nn.Module, steps: int, batch_size: int, lr: float, rank: int = 0, world_size: int = 1,
          seed: int = 0) -> nn.Module:
    """SGD with momentum; process ``rank`` of ``world_size`` uses its contiguous slice of every batch."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by world_size {world_size}")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for images, labels in global_batches(steps, batch_size, seed):
        x, y = images.chunk(world_size)[rank], labels.chunk(world_size)[rank]  # (B/R, 1, 8, 8)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()  # under DDP: gradients are all-reduced (averaged) here
        optimizer.step()
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--out", help="rank 0 saves the final state_dict here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if "RANK" not in os.environ:  # started without torchrun: one process, the reference
        model = train(make_model(), args.steps, args.batch_size, args.lr)
        if args.out:
            torch.save(model.state_dict(), args.out)
        print(f"single process: {args.steps} steps on batches of {args.batch_size}")
        return 0
    dist.init_process_group("gloo")  # reads RANK, WORLD_SIZE, MASTER_ADDR/PORT set by torchrun
    rank, world_size = dist.get_rank(), dist.get_world_size()
    ddp = nn.parallel.DistributedDataParallel(make_model())
    train(ddp, args.steps, args.batch_size, args.lr, rank, world_size)
    if rank == 0:
        reference = train(make_model(), args.steps, args.batch_size, args.lr)  # one process, global batches
        diff = max((a - b).abs().max().item()
                   for a, b in zip(ddp.module.state_dict().values(), reference.state_dict().values()))
        print(f"{world_size} processes × {args.batch_size // world_size} examples vs 1 process × "
              f"{args.batch_size}: max |parameter difference| after {args.steps} steps = {diff:.2e}")
        if args.out:
            torch.save(ddp.module.state_dict(), args.out)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
