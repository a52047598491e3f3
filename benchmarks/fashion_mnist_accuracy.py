"""Fashion-MNIST test accuracy and training time of the course's CNNs (chapter 4 targets).

    python benchmarks/fashion_mnist_accuracy.py --model small        # target: >= 90 % in <= 60 s on 2 CPU cores
    python benchmarks/fashion_mnist_accuracy.py --model best         # target: >= 93 % in <= 180 s on 2 CPU cores
    python benchmarks/fashion_mnist_accuracy.py --model best --device cuda --amp --channels-last --compile
    python benchmarks/fashion_mnist_accuracy.py --model best --markdown   # one Markdown table row (make bench)

The recipes (:data:`RECIPES`): AdamW + one-cycle schedule stepped per batch; for the best model
also label smoothing 0.1 and random crop/flip augmentation (15 epochs: 93.4 % measured before on
two idle cores, about 9 minutes). ``benchmarks/fashion_mnist_sweep.py`` measures alternatives. The
accuracy is also given with horizontal-flip test-time augmentation (TTA: the mean of the softmax
over both views).

Prints the test accuracy, the wall-clock training time, the process CPU time and the load average:
on a shared machine the wall time is pessimistic. On CUDA the whole loop stays on the GPU (data,
shuffling, augmentation, statistics; see ``course_lib.train``); ``--compile`` first trains a
throw-away copy for one epoch so that the timed run does not include compilation.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time
from dataclasses import dataclass

import torch

from course_lib.augment import random_crop_flip
from course_lib.data import load_fashion_mnist
from course_lib.models.fashion_cnn import FashionCNN
from course_lib.train import FitConfig, evaluate, fit, predict


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a run's accuracy (the device options are separate)."""

    widths: tuple = (32, 64)
    convs_per_stage: int = 2
    dropout: float = 0.3
    epochs: int = 15
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augment: bool = True
    target: float = 0.93
    budget_s: float | None = None

    def model(self) -> FashionCNN:
        return FashionCNN(widths=self.widths, convs_per_stage=self.convs_per_stage, dropout=self.dropout)


RECIPES = {
    "small": Recipe(widths=(32, 64), convs_per_stage=1, dropout=0.25, epochs=3, weight_decay=0.0,
                    label_smoothing=0.0, augment=False, target=0.90, budget_s=60),
    "best": Recipe(epochs=15, target=0.93, budget_s=180),
}


def train_and_test(recipe: Recipe, device: str = "cpu", seed: int = 0, amp: bool = False,
                   channels_last: bool = False, compile: bool = False, progress: bool = False) -> dict:
    """Train one recipe on the 60 000 training images, test on the 10 000; times and accuracies."""
    train, test = load_fashion_mnist("train", verbose=False), load_fashion_mnist("test", verbose=False)
    dev = torch.device(device)
    if dev.type == "cuda":  # the GPU path: the data is put on the device once, up front
        train = tuple(t.to(dev) for t in train)
    amp_dtype = torch.bfloat16 if amp else None  # bfloat16 needs no GradScaler (and no host sync)
    if compile:  # compile (and autotune) on a throw-away copy, so the timed run measures training only
        _run(recipe, train, dev, seed, dict(amp=amp, amp_dtype=amp_dtype, channels_last=channels_last,
                                             compile=True, progress=False), epochs=1)
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    model = _run(recipe, train, dev, seed, dict(amp=amp, amp_dtype=amp_dtype, channels_last=channels_last,
                                                compile=compile, progress=progress))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, accuracy = evaluate(model, test, device=dev)
    probabilities = (predict(model, test[0], device=dev).softmax(1)
                     + predict(model, test[0].flip(-1), device=dev).softmax(1))
    return dict(accuracy=accuracy, accuracy_tta=(probabilities.argmax(1) == test[1]).double().mean().item(),
                wall_s=wall, cpu_s=cpu, load_before=load_before[0], load_after=os.getloadavg()[0],
                params=sum(p.numel() for p in model.parameters()))


def _run(recipe: Recipe, train, dev, seed, options: dict, epochs: int | None = None):
    epochs = epochs or recipe.epochs
    torch.manual_seed(seed)
    model = recipe.model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                  fused=dev.type == "cuda")  # one kernel for all parameters on a GPU
    steps = epochs * -(-len(train[1]) // recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps)
    fit(model, train, config=FitConfig(
        epochs=epochs, batch_size=recipe.batch_size, optimizer=optimizer, scheduler=scheduler,
        scheduler_interval="batch", augment=random_crop_flip if recipe.augment else None,
        loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing), device=dev, seed=seed, **options))
    return model


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=RECIPES, default="small")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the CPU targets are for 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compiled before timing)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--markdown", action="store_true", help="print one Markdown table (for make bench)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"skipped: --device {args.device} but torch sees no CUDA device")
        return 0
    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.model]
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v}
    recipe = Recipe(**{**recipe.__dict__, **overrides})
    r = train_and_test(recipe, args.device, args.seed, args.amp, args.channels_last, args.compile,
                       progress=not (args.quiet or args.markdown))
    met = r["accuracy"] >= recipe.target and (recipe.budget_s is None or args.device != "cpu"
                                               or r["wall_s"] <= recipe.budget_s)
    options = " ".join(o for o, on in (("amp", args.amp), ("channels_last", args.channels_last),
                                       ("compile", args.compile)) if on) or "-"
    if args.markdown:
        print("| model | recipe | device | options | test acc | with flip TTA | train wall s | train CPU s "
              "| CPU s / wall s | load avg before/after | target | date |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {args.model} ({r['params']:,} params) | {recipe.epochs} epochs, batch {recipe.batch_size}, "
              f"widths {recipe.widths}x{recipe.convs_per_stage} | {device_name(args.device)} | {options} "
              f"| {r['accuracy']:.4f} | {r['accuracy_tta']:.4f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
              f"| {r['cpu_s'] / r['wall_s']:.2f} | {r['load_before']:.1f} / {r['load_after']:.1f} "
              f"| >= {recipe.target:.0%}" + (f" in {recipe.budget_s:.0f} s (CPU)" if recipe.budget_s else "")
              + f": {'met' if met else 'NOT met'} | {datetime.date.today()} |")
        return 0
    print(f"model={args.model} {recipe} device={device_name(args.device)} options={options} params={r['params']}")
    print(f"test accuracy {r['accuracy']:.4f}, with flip TTA {r['accuracy_tta']:.4f} "
          f"(target {recipe.target:.2f}: {'met' if met else 'NOT met'})")
    print(f"training wall time {r['wall_s']:.2f} s, process CPU time {r['cpu_s']:.1f} s "
          f"(≈ {r['cpu_s'] / args.threads:.1f} s on {args.threads} idle cores)")
    print(f"load average before {r['load_before']:.1f}, after {r['load_after']:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
