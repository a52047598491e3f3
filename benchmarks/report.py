"""Run every benchmark and write ``benchmarks/REPORT.md`` (``make bench``).

    .venv/bin/python benchmarks/report.py [--out benchmarks/REPORT.md]

Each ``benchmarks/*.py`` (but this file and the sweep) is run with ``--markdown`` in its own process;
its table goes into the report under the command that made it, with the wall and CPU time of that
process, the machine (CPU count, GPU if any), the load average before and after, and the date.
Timings on a shared machine are pessimistic: compare the load averages. Nothing in CI reads this file.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNS = [  # (script, arguments besides --markdown)
    ("fashion_mnist_accuracy.py", ["--model", "small", "--device", "cpu"]),
    ("fashion_mnist_accuracy.py", ["--model", "best", "--device", "cpu"]),
    ("fashion_mnist_accuracy.py", ["--model", "best", "--device", "cuda", "--amp", "--channels-last", "--compile",
                                   "--batch-size", "512"]),  # prints "skipped" without a GPU
    ("conv_benchmark.py", []),
    ("conv_benchmark.py", ["--device", "cuda"]),
    ("grading_sandbox.py", []),
]
NOT_RUN = {"report.py", "fashion_mnist_sweep.py"}


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def run(script: str, args: list[str]) -> str:
    command = [sys.executable, str(HERE / script), *args, "--markdown"]
    if "--device" in args and args[args.index("--device") + 1] == "cuda" and not torch.cuda.is_available():
        return f"### `{' '.join(command[1:])}`\n\nskipped: no CUDA device on this machine.\n"
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    failed = f"FAILED (exit {done.returncode}):\n\n```\n{done.stderr[-2000:]}\n```"
    body = done.stdout.strip() if done.returncode == 0 else failed
    return (f"### `{' '.join(['python', *command[1:]]).replace(str(ROOT) + '/', '')}`\n\n{body}\n\n"
            f"Process: {wall:.0f} s wall, {cpu:.0f} s CPU; load average {load:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after.\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "REPORT.md")
    args = parser.parse_args()
    scripts = {p.name for p in HERE.glob("*.py")} - NOT_RUN
    missing = scripts - {s for s, _ in RUNS}
    runs = RUNS + [(s, []) for s in sorted(missing)]  # a new benchmark is run too, with its defaults
    sections = []
    for script, script_args in runs:
        print(f"running {script} {' '.join(script_args)} ...", flush=True)
        sections.append(run(script, script_args))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# Benchmark report\n\nWritten by `make bench` (`benchmarks/report.py`) on {now}.\n"
              f"Machine: {machine()}. Load average at the start: {os.getloadavg()[0]:.1f}.\n\n"
              "Targets (issue 18): the small CNN >= 90 % Fashion-MNIST test accuracy in <= 60 s and the best "
              "model >= 93 % in <= 180 s on 2 CPU cores; >= 93 % in <= 3 s of training on an H100/H200-class GPU. "
              "On a shared machine wall times are pessimistic: compare the CPU times and load averages. "
              "Recipe sweeps: `benchmarks/fashion_mnist_sweep.py`.\n\n")
    args.out.write_text(header + "\n".join(sections))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
