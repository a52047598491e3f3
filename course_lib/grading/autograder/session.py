"""Grade submissions with the student's code in a sandbox and the tests in the trusted grader.

For every submitted notebook, the student's code cells (never the test cells) run in a
:class:`~course_lib.grading.autograder.jail.Sandbox`. The test cells, taken from the instructor's source
notebook (hidden tests included, which therefore never enter the sandbox), run here, in the
grader's own interpreter, with the assignment's set-up cell and :class:`RemoteFunction` /
:class:`~course_lib.grading.autograder.proxy.RemoteClass` proxies in place of the student's functions and
classes: each call is sent to the worker as plain data, with a timeout, and its result comes back
as exact types; a module the student's code makes stays in the worker and the checks get a mirror
of it (:mod:`course_lib.grading.autograder.proxy`). The ``course_lib.grading`` checks run unchanged. The test
cells run in a private copy of the regular files handed in (a weights file that a test reads, with
``weights_only=True``).

Each test cell's outputs (printed text, or the error that failed it) are saved as JSON per student
and notebook; nbgrader's autograde then puts them in the notebook instead of executing it
(:class:`~course_lib.grading.autograder.nbgrader_plugins.SandboxResults`) and writes the gradebook, so only
the trusted side writes scores. A crash, timeout or protocol violation fails the affected tests and
the batch goes on; with ``jobs > 1`` submissions are graded in parallel processes.
"""
from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

import course_lib.grading
from course_lib.grading.compare import is_sandbox_ready
from course_lib.grading.autograder.jail import Limits, Sandbox, SandboxError, missing_protections
from course_lib.grading.autograder.protocol import SAFE_NAME, CappedText, Ready, Reply
from course_lib.grading.autograder.proxy import Remote, proxies_for
from course_lib.grading.autograder.student_text import student_says


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def split_notebook(student: dict, source: dict) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """``(worker cells, trusted set-up cells, [(grade_id, test source), ...])``.

    Test cells (graded, not solution) come from the source only. Locked non-solution cells (the
    set-up) run from the source on both sides; every other code cell of the student's notebook runs
    in the sandbox, in the student's order.
    """
    tests, locked = [], {}
    setup = []
    for cell in source["cells"]:
        meta = _meta(cell)
        if cell["cell_type"] != "code":
            continue
        if meta.get("grade") and not meta.get("solution"):
            tests.append((meta["grade_id"], cell["source"]))
        elif meta.get("locked") and not meta.get("solution"):
            locked[meta["grade_id"]] = cell["source"]
            setup.append(cell["source"])
    test_ids = {g for g, _ in tests}
    worker, seen_locked = [], set()
    for cell in student.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        grade_id = _meta(cell).get("grade_id")
        if grade_id in test_ids:
            continue
        if grade_id in locked:
            seen_locked.add(grade_id)
            worker.append(locked[grade_id])
        else:
            worker.append(cell["source"] if isinstance(cell.get("source"), str) else "".join(cell.get("source", [])))
    missing = [src for g, src in locked.items() if g not in seen_locked]
    return missing + worker, setup, tests


class Session:
    """The sandbox of one submission, restarted (cells run again) after a crash or a timeout.

    A crash costs only the tests it affects: each test cell (:meth:`begin_test`) may start the
    sandbox once, however many crashes came before, so the correct parts after any number of
    crashing ones are still graded. The bound on a submission is its time budget (every start and
    call comes out of it) and at most one start per test cell; without ``begin_test`` (the
    pre-flight probe, a direct user) three starts in all.
    """

    def __init__(self, files: Path, cells: list[str], limits: Limits, slot: int, budget: float):
        self.files, self.cells, self.limits, self.slot = files, cells, limits, slot
        self.deadline = time.monotonic() + budget
        self.sandbox: Sandbox | None = None
        self.functions: list[str] = []
        self.classes: list[str] = []
        self.events: list[str] = []
        self.starts = 0
        self.start_limit = 3
        self.remote = Remote(self)

    def ensure(self) -> None:
        if self.sandbox is not None and self.sandbox.proc.poll() is None:
            return
        self.stop()
        if self.starts >= self.start_limit:
            raise SandboxError("the sandbox stopped again after it was restarted for this test; the test's "
                               "remaining calls are not run (the next test gets a fresh sandbox)")
        self.starts += 1
        self.sandbox = Sandbox(self.files, replace(self.limits, start_timeout=self._left(self.limits.start_timeout)),
                               self.slot)
        try:
            ready = Ready.from_message(self.sandbox.start(self.cells))
        except SandboxError as err:
            self.events.append(f"running your code: {err}")
            raise
        names = [n for n in ready.functions if type(n) is str and SAFE_NAME.match(n)] \
            if type(ready.functions) is list else []
        self.functions = names
        self.classes = [c for c in ready.classes if type(c) is str and SAFE_NAME.match(c)
                        and c not in self.functions] if type(ready.classes) is list else []
        if self.starts == 1 and type(ready.errors) is list:
            self.events += [f"while running your code, a cell raised:{student_says(str(e)[:500])}"
                            for e in ready.errors[:20]]

    def begin_test(self) -> None:
        """A test cell begins: it may start the sandbox once (the student's cells run again) if a crash stopped it."""
        self.start_limit = self.starts + 1

    def _left(self, want: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SandboxError("this submission used up its time budget")
        return min(want, left)

    def request(self, message, label: str) -> Reply:
        """One :class:`~course_lib.grading.autograder.protocol.Request` to the worker (started if need be)
        and its reply, within the call timeout."""
        self.ensure()
        try:
            return Reply.from_message(self.sandbox.request(message, self._left(self.limits.call_timeout)))
        except SandboxError as err:
            self.events.append(f"calling {label}: {err}")
            self.stop()
            raise

    def stop(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


def proxies(session: Session) -> dict:
    """``name -> proxy`` for every function and class the student's cells defined."""
    return proxies_for(session.remote, session.functions, session.classes)


def declared_names(source: dict) -> set[str]:
    """The functions and classes the instructor's notebook defines outside its test cells: the only
    names under which a student's code enters the tests' namespace. A builtin never does (a student's
    ``def range(...)`` must not run inside a hidden test's ``range(10)``)."""
    names = set()
    for cell in source["cells"]:
        meta = _meta(cell)
        if cell["cell_type"] != "code" or (meta.get("grade") and not meta.get("solution")):
            continue
        text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        try:
            tree = ast.parse(re.sub(r"(?m)^\s*[%!].*$", "", text))
        except SyntaxError:
            continue
        names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return names - set(dir(builtins))


def run_tests(session: Session, setup: list[str], tests: list[tuple[str, str]],
              declared: set[str]) -> dict[str, list[dict]]:
    """Run every test cell here; ``grade_id -> nbformat outputs`` (an ``error`` output fails it).
    The student's functions and classes are visible to the tests under the ``declared`` names only."""
    namespace: dict = {"__name__": "__main__"}
    for source in setup:
        exec(compile(source, "<setup>", "exec"), namespace)
    try:
        session.ensure()
        start_error = None
    except SandboxError as err:
        start_error = str(err)
    for name, proxy in proxies(session).items():
        if name in declared:
            namespace.setdefault(name, proxy)
    results = {}
    for grade_id, source in tests:
        out, err = CappedText(), CappedText()
        error = None
        session.begin_test()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if start_error:
                    raise RuntimeError(f"your notebook could not be run: {start_error}")
                exec(compile(source, f"<test {grade_id}>", "exec"), namespace)
            except BaseException as exc:  # noqa: BLE001 - every failure of a test scores 0 for it
                tb = [line for line in traceback.format_exception(exc) if "course_lib/grading/autograder" not in line]
                error = {"output_type": "error", "ename": type(exc).__name__, "evalue": str(exc)[:20_000],
                         "traceback": tb[-20:]}
        outputs = [{"output_type": "stream", "name": name, "text": buf.getvalue()}
                   for name, buf in (("stdout", out), ("stderr", err)) if buf.getvalue()]
        results[grade_id] = outputs + ([error] if error else [])
    return results


def _submitted_files(folder: Path, limit: int = 512 << 20) -> Path:
    """A private copy of the regular files handed in (no links, no folders), for the tests to read."""
    copy = Path(tempfile.mkdtemp(prefix="submitted-"))
    total = 0
    for path in sorted(folder.iterdir()):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and total + info.st_size <= limit:
            shutil.copyfile(path, copy / path.name, follow_symlinks=False)
            total += info.st_size
    return copy


def grade_notebook(student_nb: Path, source_nb: Path, limits: Limits = Limits(), slot: int = 0,
                   budget: float = 600.0) -> dict:
    """``{"tests": {grade_id: outputs}, "events": [...], "seconds": s}`` for one submitted notebook."""
    start = time.monotonic()
    source = json.loads(source_nb.read_text(encoding="utf-8"))
    try:
        student = json.loads(student_nb.read_text(encoding="utf-8"))
        if type(student) is not dict or type(student.get("cells")) is not list:
            raise ValueError("not a notebook")
    except (ValueError, UnicodeDecodeError) as err:
        _, _, tests = split_notebook({"cells": []}, source)
        error = {"output_type": "error", "ename": "CorruptNotebook", "evalue": f"cannot read your notebook: {err}",
                 "traceback": []}
        return {"tests": {g: [error] for g, _ in tests}, "events": [f"corrupt notebook: {err}"],
                "seconds": time.monotonic() - start}
    cells, setup, tests = split_notebook(student, source)
    session = Session(student_nb.parent, cells, limits, slot, budget)
    here = os.getcwd()
    files = _submitted_files(student_nb.parent)
    try:
        os.chdir(files)  # a test reads the submitted weights by a relative path (with weights_only=True)
        results = run_tests(session, setup, tests, declared_names(source))
    finally:
        os.chdir(here)
        shutil.rmtree(files, ignore_errors=True)
        log = session.sandbox.student_output() if session.sandbox else ""
        session.stop()
    return {"tests": results, "events": session.events, "log": log[-4000:], "seconds": time.monotonic() - start}


def unsupported(source_nb: Path) -> list[str]:
    """Why the sandbox cannot grade this assignment yet (empty: it can).

    The tests may use the student's functions and classes (through proxies), but no other value the
    student's cells define (a constant, an object): it has no proxy. Decided from the instructor's
    source, so a student cannot change how they are graded. A check says itself that it works through
    the proxies (:func:`course_lib.grading.compare.sandbox_ready`).
    """
    source = json.loads(source_nb.read_text(encoding="utf-8"))
    defined: dict[str, str] = {}
    used: set[str] = set()
    for cell in source["cells"]:
        if cell["cell_type"] != "code":
            continue
        meta = _meta(cell)
        text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        try:
            tree = ast.parse(re.sub(r"(?m)^\s*[%!].*$", "", text))
        except SyntaxError:
            continue
        if meta.get("solution"):
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    defined[node.name] = "class"
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    defined[node.name] = "function"
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    defined.update({t.id: "value" for t in targets if isinstance(t, ast.Name)})
        elif meta.get("grade"):
            used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return sorted([f"the tests use {name!r}, a {kind} of the student's" for name, kind in defined.items()
                   if name in used and kind not in ("function", "class")]
                  + [f"{name} is not known to be sandbox-ready" for name in used
                     if name.startswith("check_") and not is_sandbox_ready(getattr(course_lib.grading, name, None))])


# -- a class, in parallel -------------------------------------------------------------------------

_SLOT = 0


def _init_slot(slots) -> None:
    global _SLOT
    _SLOT = slots.get()


def grade_one(task: tuple) -> tuple:
    """The unit of work of every way of grading a class (one process, ``--jobs N``, a Dask cluster):
    ``(student, [(submitted notebook, source notebook), ...], limits, budget)`` in, ``(student,
    {notebook name: plain results})`` out; an error of the grader is recorded, never raised."""
    student, notebooks, limits, budget = task
    out = {}
    for student_nb, source_nb in notebooks:
        try:
            out[Path(student_nb).stem] = grade_notebook(Path(student_nb), Path(source_nb), limits, _SLOT, budget)
        except Exception as err:  # noqa: BLE001 - one submission must never stop the batch
            out[Path(student_nb).stem] = {"tests": {}, "events": [f"grader error: {type(err).__name__}: {err}"]}
    return student, out


def _failed(outputs: list[dict]) -> bool:
    return any(o.get("output_type") == "error" for o in outputs)


def with_progress(done, total: int, assignment: str, on_result) -> dict[str, dict]:
    """``{student: results}`` from ``done`` as submissions finish, with a progress bar on stderr;
    ``on_result(student, results)`` keeps each one the moment it finishes."""
    results, failed = {}, 0
    with tqdm(total=total, desc=f"grading {assignment}", unit="submission", file=sys.stderr, mininterval=1.0) as bar:
        for student, notebooks in done:
            results[student] = notebooks
            on_result(student, notebooks)
            failed += sum(_failed(o) for r in notebooks.values() for o in r.get("tests", {}).values())
            bar.set_postfix(failed_tests=failed, refresh=False)
            bar.update()
    return results


def failure_summary(results: dict[str, dict]) -> list[tuple[str, int, str]]:
    """``(test, how many submissions failed it, its commonest message)``, most failed first."""
    messages: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for notebooks in results.values():
        for result in notebooks.values():
            for grade_id, outputs in result.get("tests", {}).items():
                for out in outputs:
                    if out.get("output_type") == "error":
                        first = (str(out.get("evalue", "")).strip().splitlines() or [""])[0]
                        messages[grade_id][f"{out.get('ename', '?')}: {first}"[:160]] += 1
    rows = [(g, sum(c.values()), c.most_common(1)[0][0]) for g, c in messages.items()]
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def grade_all(root: Path, assignment: str, results_dir: Path, jobs: int = 1, limits: Limits = Limits(),
              budget: float = 600.0, students: list[str] | None = None, on_result=None) -> dict[str, dict]:
    """Sandbox-grade every ``submitted/STUDENT/ASSIGNMENT/*.ipynb`` (only ``students``' when given);
    each submission's ``results_dir/STUDENT/NB.json`` is written as it finishes (or ``on_result``
    called), so that a run cut short keeps what it finished."""
    sources = source_notebooks(root, assignment)
    tasks = []
    for folder in sorted((root / "submitted").glob(f"*/{assignment}")):
        if students is not None and folder.parent.name not in students:
            continue
        notebooks = [(str(p), str(sources[p.name])) for p in sorted(folder.glob("*.ipynb")) if p.name in sources]
        tasks.append((folder.parent.name, notebooks, limits, budget))
    on_result = on_result or (lambda student, notebooks: write_result(results_dir, student, notebooks))
    if jobs <= 1:
        return with_progress(map(grade_one, tasks), len(tasks), assignment, on_result)
    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for i in range(jobs):
        slots.put(i)
    with ctx.Pool(jobs, initializer=_init_slot, initargs=(slots,)) as pool:
        return with_progress(pool.imap_unordered(grade_one, tasks), len(tasks), assignment, on_result)


def source_notebooks(root: Path, assignment: str) -> dict[str, Path]:
    """``{name: path}`` of the instructor's notebooks (hidden tests included) that submissions are graded by."""
    return {p.name: p for p in (root / "source" / assignment).glob("*.ipynb")} or \
        {p.name: p for p in (root / "solutions" / assignment).glob("*.ipynb")}


def write_result(results_dir: Path, student: str, notebooks: dict[str, dict]) -> None:
    """``results_dir/STUDENT/NB.json``: what nbgrader's autograde reads
    (:class:`~course_lib.grading.autograder.nbgrader_plugins.SandboxResults`)."""
    for name, result in notebooks.items():
        path = results_dir / student / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result), encoding="utf-8")


def protections_warning() -> str | None:
    missing = missing_protections()
    if not missing:
        return None
    return ("WARNING: this machine cannot sandbox (grading is refused; `python -m course_lib.grading doctor` says why); missing: "
            + "; ".join(missing))
