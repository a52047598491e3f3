"""course_lib's im2col convolution against torch.nn.functional.conv2d, forward and backward.

    .venv/bin/python benchmarks/conv_benchmark.py [--device cpu|cuda] [--repeats 20]

Prints, for a few layer shapes typical of the course's networks, the time per call of each and
the ratio course_lib / torch (1.0 = as fast as PyTorch). Both run in the same process on the same
inputs, so the ratio is meaningful even on a busy machine; the absolute times are not.
"""
from __future__ import annotations

import argparse
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


def time_per_call(fn, repeats: int, device: torch.device) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def forward_backward(fn, x, w, b, stride, padding):
    def step():
        x.grad = w.grad = b.grad = None
        fn(x, w, b, stride=stride, padding=padding).sum().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = course_lib.device(args.device)
    course_lib.seed_everything(0)
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"{'layer':32s} {'pass':9s} {'course_lib ms':>14s} {'torch ms':>10s} {'ratio':>7s}")
    for name, (N, C, H, W), (C_out, kH, kW), stride, padding in SHAPES:
        x = torch.randn(N, C, H, W, device=device, requires_grad=True)
        w = torch.randn(C_out, C, kH, kW, device=device, requires_grad=True)
        b = torch.randn(C_out, device=device, requires_grad=True)
        with torch.no_grad():
            ours = time_per_call(lambda: conv.conv2d(x, w, b, stride, padding), args.repeats, device)
            ref = time_per_call(lambda: F.conv2d(x, w, b, stride, padding), args.repeats, device)
        print(f"{name:32s} {'forward':9s} {1e3 * ours:14.2f} {1e3 * ref:10.2f} {ours / ref:7.2f}")
        ours = time_per_call(forward_backward(conv.conv2d, x, w, b, stride, padding), args.repeats, device)
        ref = time_per_call(forward_backward(F.conv2d, x, w, b, stride, padding), args.repeats, device)
        print(f"{'':32s} {'fwd+bwd':9s} {1e3 * ours:14.2f} {1e3 * ref:10.2f} {ours / ref:7.2f}")


if __name__ == "__main__":
    main()
