"""Seconds per submission: sandboxed grading (1 and N jobs, a Dask cluster) against stock nbgrader, same machine, same batch.

As root it also times the rootless path (bubblewrap, ``COURSE_GRADER_ISOLATION=rootless``) with 1 job
next to the root path's; run by an ordinary user, the sandboxed rows are the rootless path.

    .venv/bin/python benchmarks/grading_sandbox.py [--copies 1] [--jobs 2] [--assignment a5_gans] [--markdown] [--no-dask]

The batch is assignment 1's submission bank (tests/submission_bank.py), ``--copies`` times; with
``--assignment`` it is that assignment's bank of realistic submissions (``tests/banks/<name>.py``,
weights files included; a2, a3, a5, a6) or, for one without such a bank, its reference solution and
its blank release, ``--copies`` times. Each
mode grades it from scratch in a fresh course directory with the instructor's command
(``python -m course_lib.grading autograde``), so nbgrader's start-up and gradebook writes are
included. The Dask case (``autograde --scheduler``) grades on a local cluster of ``--jobs`` worker
processes (one thread each), started before the clock runs, as a course's cluster would be: it shows
what shipping the files and the scheduler cost against ``--jobs`` on the same machine. Timings on a
shared machine are noisy: run it on an idle one.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "banks"))

from submission_bank import ASSIGNMENT, EXPECTED, submission  # noqa: E402

from course_lib.grading.autograder import cli, jail, jail_rootless  # noqa: E402


def solution_and_blank(course: Path, assignment: str) -> dict[str, str]:
    """``{"solution": notebook, "blank": notebook}``: the release with the source's solution cells, and as released."""
    release = json.loads((course / "assignments" / assignment / f"{assignment}.ipynb").read_text())
    source = json.loads((course / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in source["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}
    solved = json.loads(json.dumps(release))
    for cell in solved["cells"]:
        cell["source"] = answers.get(cell["metadata"].get("nbgrader", {}).get("grade_id"), cell["source"])
    return {"solution": json.dumps(solved), "blank": json.dumps(release)}


def _bank_writer(assignment: str):
    """``write_bank(folder)`` of the assignment's bank (``tests/banks/<name>.py``), if it has one that
    needs nothing else (A4's also takes its weight files); else ``None``."""
    if assignment == ASSIGNMENT or not (ROOT / "tests" / "banks" / f"{assignment}.py").exists():
        return None
    write_bank = getattr(importlib.import_module(assignment), "write_bank", None)
    return write_bank if write_bank and len(inspect.signature(write_bank).parameters) == 1 else None


def grade(mode: list[str], copies: int, assignment: str = ASSIGNMENT, env: dict | None = None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp) / "course"
        course.mkdir()
        shutil.copy(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment)
        cli.release(course, [assignment])
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        count = 0
        write_bank = _bank_writer(assignment)
        if write_bank is not None:
            for copy in range(copies):  # a folder per student, with the student's files
                written = write_bank(Path(tmp) / f"copy{copy}")
                for student in written:
                    (Path(tmp) / f"copy{copy}" / student).rename(inbox / f"{student}_{copy}")
                count += len(written)
            copies = 0
        batch = {s: submission(s) for s in EXPECTED} if assignment == ASSIGNMENT else solution_and_blank(course, assignment)
        for copy in range(copies):
            for student, text in batch.items():
                (inbox / f"{student}_{copy}.ipynb").write_text(text, encoding="utf-8")
                count += 1
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "autograde", assignment,
                        "--submissions", str(inbox), *mode], check=True, capture_output=True,
                       env={**os.environ, **(env or {})})
        return time.perf_counter() - start, count


@contextlib.contextmanager
def cluster(workers: int):
    """The address of a local Dask cluster of ``workers`` processes, one thread each (the CPU they
    use is not counted in the CPU column: they are not the command's children)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None) as local:
        yield local.scheduler_address


def measure(label: str, mode: list[str], args, env: dict | None = None) -> tuple[str, float, int, float]:
    """``(label, wall seconds, submissions, CPU seconds of the command's children)`` of one grading."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, count = grade(mode, args.copies, args.assignment, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    if not args.markdown:
        print(f"{label:32s} {count} submissions in {seconds:6.1f} s: {seconds / count:5.2f} s each "
              f"(CPU {used:6.1f} s; load {os.getloadavg()[0]:.1f})", flush=True)
    return label, seconds, count, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--assignment", default=ASSIGNMENT)
    parser.add_argument("--markdown", action="store_true", help="print one Markdown table (for make bench)")
    parser.add_argument("--no-dask", dest="dask", action="store_false", help="leave out the Dask cluster case")
    args = parser.parse_args()
    rows = []
    path = jail.isolation() or "none"
    modes = [("stock nbgrader (unsandboxed)", ["--no-sandbox"], None), (f"sandboxed ({path}), 1 job", ["--jobs", "1"], None),
             (f"sandboxed ({path}), {args.jobs} jobs", ["--jobs", str(args.jobs)], None)]
    if path == "root" and jail_rootless.bwrap_problem() is None:
        modes.append(("sandboxed (rootless, as root), 1 job", ["--jobs", "1"], {jail_rootless.ISOLATION_ENV: "rootless"}))
    with contextlib.ExitStack() as stack:
        if args.dask:
            address = stack.enter_context(cluster(args.jobs))
            modes.append((f"Dask LocalCluster, {args.jobs} workers", ["--scheduler", address], None))
        for label, mode, env in modes:
            rows.append(measure(label, mode, args, env))
    one, many = rows[1][1], rows[2][1]
    if args.markdown:
        print(f"| grading ({args.assignment}) | submissions | wall s | s each | CPU s (children) | x stock "
              "| load avg |")
        print("|---|---|---|---|---|---|---|")
        for label, seconds, count, used in rows:
            print(f"| {label} | {count} | {seconds:.1f} | {seconds / count:.2f} | {used:.1f} "
                  f"| {seconds / rows[0][1]:.2f} | {os.getloadavg()[0]:.1f} |")
        return
    print(f"sandboxed/stock: {rows[1][1] / rows[0][1]:.2f}x the time; {args.jobs} jobs: {one / many:.2f}x faster than 1")
    if args.dask:
        print(f"Dask, {args.jobs} workers: {rows[-1][1] / many:.2f}x the time of {args.jobs} local jobs")

if __name__ == "__main__":
    main()
