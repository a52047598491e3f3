"""Seconds per submission: sandboxed grading (1 and N jobs) against stock nbgrader, same machine, same batch.

    .venv/bin/python benchmarks/grading_sandbox.py [--copies 1] [--jobs 2]

The batch is assignment 1's submission bank (tests/submission_bank.py), ``--copies`` times. Each
mode grades it from scratch in a fresh course directory with the instructor's command
(``python -m course_lib.grading autograde``), so nbgrader's start-up and gradebook writes are
included. Timings on a shared machine are noisy: run it on an idle one.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from submission_bank import ASSIGNMENT, EXPECTED, submission  # noqa: E402

from course_lib.grading import cli  # noqa: E402


def grade(mode: list[str], copies: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp) / "course"
        course.mkdir()
        shutil.copy(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
        cli.release(course, [ASSIGNMENT])
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        count = 0
        for copy in range(copies):
            for student in EXPECTED:
                (inbox / f"{student}_{copy}.ipynb").write_text(submission(student), encoding="utf-8")
                count += 1
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "autograde", ASSIGNMENT,
                        "--submissions", str(inbox), *mode], check=True, capture_output=True)
        return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for label, mode in (("stock nbgrader (unsandboxed)", ["--no-sandbox"]), ("sandboxed, 1 job", ["--jobs", "1"]),
                        (f"sandboxed, {args.jobs} jobs", ["--jobs", str(args.jobs)])):
        seconds, count = grade(mode, args.copies)
        rows.append((label, seconds, count))
        print(f"{label:32s} {count} submissions in {seconds:6.1f} s: {seconds / count:5.2f} s each", flush=True)
    one, many = rows[1][1], rows[2][1]
    print(f"sandboxed/stock: {rows[1][1] / rows[0][1]:.2f}x the time; {args.jobs} jobs: {one / many:.2f}x faster than 1")


if __name__ == "__main__":
    main()
