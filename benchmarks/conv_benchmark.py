"""course_lib's im2col convolution against torch.nn.functional.conv2d, forward and backward.

    .venv/bin/python benchmarks/conv_benchmark.py [--device cpu|cuda] [--repeats 15] [--markdown] [--tf32]

For a few layer shapes typical of the course's networks, prints the time per call of each and the
ratio course_lib / torch (1.0 = as fast as PyTorch). Both run in the same process on the same
inputs, and their repetitions are interleaved (ours, torch, ours, torch, ...) so that a burst of
load from other processes hits both alike; each time is the median over the repetitions. The
ratio is therefore meaningful on a shared machine; the absolute times are not, so the load
average is printed with them. ``--markdown`` prints one Markdown table instead (for ``make bench``).

On Linux, glibc hands every buffer over 32 MB (the ResNet and AlexNet column matrices) fresh from
the kernel and returns it on free, so each call pays page faults that F.conv2d, which allocates no
such matrix, does not; on a loaded machine that is most of the gap. ``MALLOC_MMAP_MAX_=0`` in the
environment keeps such buffers in the heap and shows the ratio without that cost.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import course_lib
from course_lib import conv

SHAPES = [  # name, (N, C_in, H, W), (C_out, kH, kW), stride, padding
    ("Fashion-MNIST first layer", (128, 1, 28, 28), (32, 3, 3), 1, 1),
    ("Fashion-MNIST second layer", (128, 32, 14, 14), (64, 3, 3), 1, 1),
    ("ResNet stage, 56x56", (8, 64, 56, 56), (64, 3, 3), 1, 1),
    ("AlexNet stem, 11x11 stride 4", (8, 3, 224, 224), (64, 11, 11), 4, 2),
]
MIN_SAMPLE_S = 0.005  # on a GPU one call takes microseconds: time enough calls to outlast the clock's noise


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _calls_per_sample(fn, device: torch.device) -> int:
    fn()  # warm-up: allocator, cuDNN/oneDNN algorithm choice
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return max(1, round(MIN_SAMPLE_S / max(time.perf_counter() - start, 1e-9)))


def interleaved_medians(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, its repetitions interleaved with the others'."""
    calls = {name: _calls_per_sample(fn, device) for name, fn in fns.items()}
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            _synchronize(device)
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(times) for name, times in samples.items()}


def forward(fn, x, w, b, stride, padding):
    def run():
        with torch.no_grad():
            fn(x, w, b, stride=stride, padding=padding)
    return run


def forward_backward(fn, x, w, b, stride, padding):
    def run():
        x.grad = w.grad = b.grad = None
        fn(x, w, b, stride=stride, padding=padding).sum().backward()
    return run


def measure(device: torch.device, repeats: int) -> list[dict]:
    """One row per layer shape: median milliseconds of each pass and the ratios."""
    rows = []
    for name, (N, C, H, W), (C_out, kH, kW), stride, padding in SHAPES:
        x = torch.randn(N, C, H, W, device=device, requires_grad=True)
        w = torch.randn(C_out, C, kH, kW, device=device, requires_grad=True)
        b = torch.randn(C_out, device=device, requires_grad=True)
        t = interleaved_medians({
            "ours forward": forward(conv.conv2d, x, w, b, stride, padding),
            "torch forward": forward(F.conv2d, x, w, b, stride, padding),
            "ours fwd+bwd": forward_backward(conv.conv2d, x, w, b, stride, padding),
            "torch fwd+bwd": forward_backward(F.conv2d, x, w, b, stride, padding),
        }, repeats, device)
        shape = f"{name}: {(N, C, H, W)} -> {C_out}x{kH}x{kW}, stride {stride}, padding {padding}"
        rows.append(dict(name=name, shape=shape, ms={k: 1e3 * v for k, v in t.items()},
                         forward=t["ours forward"] / t["torch forward"],
                         fwd_bwd=t["ours fwd+bwd"] / t["torch fwd+bwd"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved samples per pass (median)")
    parser.add_argument("--markdown", action="store_true", help="print one Markdown table")
    parser.add_argument("--tf32", action="store_true", help="on a GPU, let both cuDNN and matmul round to TF32")
    args = parser.parse_args()
    device = course_lib.device(args.device)
    # cuDNN rounds to TF32 by default and matmul does not: same precision for both, or the ratio
    # compares arithmetic rather than algorithms.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    course_lib.seed_everything(0)
    load_before = os.getloadavg()[0]
    rows = measure(device, args.repeats)
    load = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    where = (f"{torch.cuda.get_device_name(device)}, {'tf32' if args.tf32 else 'float32'}" if device.type == "cuda"
             else f"cpu, {torch.get_num_threads()} threads")
    if args.markdown:
        print("| layer shape | forward ratio | forward+backward ratio | device | load average |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['shape']} | {row['forward']:.2f} | {row['fwd_bwd']:.2f} | {where} | {load} |")
        return
    print(f"torch {torch.__version__} on {where}, median of {args.repeats} interleaved samples, "
          f"load average {load}")
    print(f"{'layer':30s} {'pass':8s} {'course_lib ms':>14s} {'torch ms':>10s} {'ratio':>7s}")
    for row in rows:
        ms = row["ms"]
        print(f"{row['name']:30s} {'forward':8s} {ms['ours forward']:14.3f} {ms['torch forward']:10.3f} "
              f"{row['forward']:7.2f}")
        print(f"{'':30s} {'fwd+bwd':8s} {ms['ours fwd+bwd']:14.3f} {ms['torch fwd+bwd']:10.3f} "
              f"{row['fwd_bwd']:7.2f}")


if __name__ == "__main__":
    main()
