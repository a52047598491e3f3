"""The measured sweep behind chapter 4's recipe: accuracy against training cost on Fashion-MNIST.

    python benchmarks/fashion_mnist_sweep.py --grid accuracy --device cuda --out sweep_gpu.csv
    python benchmarks/fashion_mnist_sweep.py --grid cpu --part 0/4 --out sweep_cpu_0.csv   # 2 threads each

``accuracy``: every architecture x epochs x batch size x label smoothing of :data:`ACCURACY_GRID`
(fast on a GPU; the accuracy of a recipe does not depend on the device). ``cpu``: the candidate
recipes of :data:`CPU_GRID` end to end on 2 CPU threads, for their wall and CPU time. Every row
records its conditions (device, threads, load average before/after, torch version, date), so that
rows from several machines can be put side by side.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_accuracy import Recipe, device_name, train_and_test  # noqa: E402

ARCHITECTURES = {  # name: (widths, convs per stage, dropout)
    "small (32,64)x1": ((32, 64), 1, 0.25),
    "wide (64,128)x1": ((64, 128), 1, 0.25),
    "best (32,64)x2": ((32, 64), 2, 0.3),
    "slim (24,48)x2": ((24, 48), 2, 0.3),
}
ACCURACY_GRID = dict(architecture=list(ARCHITECTURES), epochs=[3, 5, 8, 12], batch_size=[128, 256],
                     label_smoothing=[0.1], augment=[True])
EXTRA = [  # one change at a time from the best model at 8 epochs, batch 256
    dict(architecture="best (32,64)x2", epochs=8, batch_size=256, label_smoothing=0.0, augment=True),
    dict(architecture="best (32,64)x2", epochs=8, batch_size=256, label_smoothing=0.1, augment=False),
    dict(architecture="best (32,64)x2", epochs=8, batch_size=512, label_smoothing=0.1, augment=True),
    dict(architecture="small (32,64)x1", epochs=3, batch_size=128, label_smoothing=0.0, augment=False),
    dict(architecture="small (32,64)x1", epochs=3, batch_size=256, label_smoothing=0.0, augment=False),
    dict(architecture="best (32,64)x2", epochs=15, batch_size=128, label_smoothing=0.1, augment=True),
]
CPU_GRID = [  # in the order they are worth measuring on a busy machine
    dict(architecture="small (32,64)x1", epochs=3, batch_size=128, label_smoothing=0.0, augment=False),
    dict(architecture="best (32,64)x2", epochs=3, batch_size=256, label_smoothing=0.1, augment=True),
    dict(architecture="best (32,64)x2", epochs=5, batch_size=256, label_smoothing=0.1, augment=True),
    dict(architecture="small (32,64)x1", epochs=3, batch_size=256, label_smoothing=0.0, augment=False),
    dict(architecture="small (32,64)x1", epochs=8, batch_size=256, label_smoothing=0.1, augment=True),
    dict(architecture="wide (64,128)x1", epochs=5, batch_size=256, label_smoothing=0.1, augment=True),
    dict(architecture="slim (24,48)x2", epochs=8, batch_size=256, label_smoothing=0.1, augment=True),
    dict(architecture="best (32,64)x2", epochs=8, batch_size=256, label_smoothing=0.1, augment=True),
]
FIELDS = ["architecture", "params", "epochs", "batch_size", "label_smoothing", "augment", "accuracy",
          "accuracy_tta", "wall_s", "cpu_s", "device", "threads", "options", "load_before", "load_after",
          "torch", "date"]


def recipe_of(point: dict) -> Recipe:
    widths, convs, dropout = ARCHITECTURES[point["architecture"]]
    return Recipe(widths=widths, convs_per_stage=convs, dropout=dropout, epochs=point["epochs"],
                  batch_size=point["batch_size"], label_smoothing=point["label_smoothing"],
                  augment=point["augment"], weight_decay=5e-4 if point["augment"] else 0.0)


def points(grid: str) -> list[dict]:
    if grid == "cpu":
        return CPU_GRID
    keys = list(ACCURACY_GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*ACCURACY_GRID.values())] + EXTRA


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("accuracy", "cpu"), default="accuracy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--part", default="0/1", help="k/n: run every n-th point starting at k (parallel runs)")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    k, n = map(int, args.part.split("/"))
    options = " ".join(o for o, on in (("amp", args.amp), ("channels_last", args.channels_last)) if on) or "-"
    new = not args.out.exists()
    with args.out.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for point in points(args.grid)[k::n]:
            r = train_and_test(recipe_of(point), args.device, amp=args.amp, channels_last=args.channels_last)
            row = dict(point, params=r["params"], accuracy=f"{r['accuracy']:.4f}",
                       accuracy_tta=f"{r['accuracy_tta']:.4f}", wall_s=f"{r['wall_s']:.2f}",
                       cpu_s=f"{r['cpu_s']:.2f}", device=device_name(args.device), threads=args.threads,
                       options=options, load_before=f"{r['load_before']:.2f}",
                       load_after=f"{r['load_after']:.2f}", torch=torch.__version__,
                       date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"))
            writer.writerow(row)
            f.flush()
            print(", ".join(f"{key}={row[key]}" for key in FIELDS), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
