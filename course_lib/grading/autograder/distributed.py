"""Grading a class on many machines: one task per submission on a Dask cluster (``autograde --scheduler``).

    dask scheduler                                              on one machine (prints tcp://HOST:8786)
    dask worker tcp://HOST:8786 --nthreads 1 --nworkers N       on each grading machine
    python -m course_lib.grading autograde A --scheduler tcp://HOST:8786 --db-url URL    on the instructor's

Each task runs :func:`~course_lib.grading.autograder.session.grade_one`, the very unit of work of
``--jobs N`` (a submission in, plain results out), on a worker machine: the student's code in a
sandbox there, the tests in the worker process. Nothing is assumed about shared files: a task gets
the submitted folder's regular files and the instructor's notebooks (hidden tests included) as bytes
in its arguments, and answers with one JSON string (scores come from printed text and errors, never
a pickled object of the student's). Only this process, the one that ran ``autograde``, writes the
gradebook, through nbgrader, exactly as after local grading.

What a worker machine needs: the same ``course_lib`` as the instructor's (``pip install
-e .[grading]`` of the same commit; every answer carries :func:`library_digest` of the worker's
copy, and an answer from another copy is not used), and a sandbox that works (``python -m
course_lib.grading doctor`` there; each worker process also runs that check before its first
submission). ``--nthreads 1``: the tests of a submission change the process's working directory
and ``sys.stdout``, so a worker process grades one submission at a time whatever its threads
(:data:`_ONE_AT_A_TIME`); run several worker processes per machine instead (``--nworkers``).

A submission whose task fails (the worker process died while grading it, more often than the
scheduler's ``allowed-failures``; its sandbox could not start; another ``course_lib``) is marked
:data:`~course_lib.grading.autograder.nbgrader_plugins.NOT_GRADED` with the reason: listed as NOT
GRADED, never scored 0, and the others are graded. The hidden tests travel to the workers: run the
cluster on a network the students cannot reach (or with Dask's TLS options).
"""
from __future__ import annotations

import functools
import hashlib
import json
import stat
import tempfile
import threading
from pathlib import Path

import course_lib
from course_lib.grading.autograder import preflight, session
from course_lib.grading.autograder.jail import Limits
from course_lib.grading.autograder.nbgrader_plugins import NOT_GRADED

#: A task's files: ``{file name: bytes}``; only plain names (no folder, no hidden file).
Files = dict[str, bytes]
#: Seconds to wait for the scheduler and for at least one worker.
CONNECT_TIMEOUT = 60.0

_ONE_AT_A_TIME = threading.Lock()
_worker_problems: list[str] | None = None  # the preflight of this worker process, run once


@functools.lru_cache(maxsize=1)
def library_digest() -> str:
    """SHA-256 of this ``course_lib``'s Python sources (relative paths and bytes): equal on two
    machines when they grade with the same checks, proxies and sandbox."""
    package = Path(course_lib.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def folder_files(folder: Path) -> Files:
    """The regular files directly in ``folder`` (links, folders and hidden files left out), as the
    local path reads them (the sandbox copies the folder without hidden files)."""
    files = {}
    for path in sorted(folder.iterdir()):
        if not path.name.startswith(".") and stat.S_ISREG(path.lstat().st_mode):
            files[path.name] = path.read_bytes()
    return files


def _write(folder: Path, files: Files) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"refusing the file name {name!r}: a task's files are plain names")
        (folder / name).write_bytes(data)


def _check_worker(limits: Limits) -> None:
    """Run the preflight once per worker process; raise (the submission is then NOT GRADED) if it failed."""
    global _worker_problems
    if _worker_problems is None:
        _worker_problems = preflight.preflight(limits)
    if _worker_problems:
        raise RuntimeError("this grading machine cannot sandbox: " + "; ".join(_worker_problems)
                           + " (`python -m course_lib.grading doctor` there)")


def grade_shipped(student: str, files: Files, sources: Files, limits: Limits, budget: float) -> str:
    """On a worker: grade one submission from its shipped files; JSON ``{"library", "notebooks"}``."""
    with _ONE_AT_A_TIME, tempfile.TemporaryDirectory(prefix="dask-grading-") as tmp:
        _check_worker(limits)
        submitted, source = Path(tmp) / "submitted", Path(tmp) / "source"
        _write(submitted, files)
        _write(source, sources)
        notebooks = [(str(submitted / name), str(source / name)) for name in sorted(files) if name in sources]
        _, results = session.grade_one((student, notebooks, limits, budget))
    return json.dumps({"library": library_digest(), "notebooks": results})


def not_graded(notebooks: list[str], reason: str) -> dict[str, dict]:
    """The results of a submission that could not be graded: each notebook fails in nbgrader."""
    return {name: {"tests": {}, "events": [f"NOT GRADED: {reason}"], NOT_GRADED: reason} for name in notebooks}


def outcome(future, notebooks: list[str]) -> dict[str, dict]:
    """A finished task's ``{notebook: results}``, or :func:`not_graded` with the reason it failed
    (``KilledWorker``: worker processes died while grading it; an error raised on the worker)."""
    if future.status == "error":
        error = future.exception()
        return not_graded(notebooks, f"the grading task failed on the cluster: {type(error).__name__}: {error}")
    if future.status != "finished":
        return not_graded(notebooks, f"the grading task was {future.status}")
    return parse_answer(future.result(), notebooks)


def parse_answer(answer, notebooks: list[str]) -> dict[str, dict]:
    """Check a worker's JSON answer: same ``course_lib``, one dict of results per notebook."""
    try:
        payload = json.loads(answer)
        library, results = payload["library"], payload["notebooks"]
    except (TypeError, ValueError, KeyError) as err:
        return not_graded(notebooks, f"the worker's answer is not readable ({type(err).__name__}: {err})")
    if library != library_digest():
        return not_graded(notebooks, f"the worker runs another course_lib (digest {str(library)[:12]}, here "
                                     f"{library_digest()[:12]}): install the same commit on every grading machine")
    if type(results) is not dict or sorted(results) != sorted(notebooks) or \
            not all(type(r) is dict for r in results.values()):
        return not_graded(notebooks, "the worker's answer does not hold one result per notebook")
    return results


def _check_workers(client) -> None:
    """Refuse to grade when no worker comes, or when one runs another ``course_lib`` (the set-up's
    fault: nobody is graded, nobody gets 0); a worker that joins later is checked by its answers."""
    client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    try:
        digests = client.run(library_digest)
    except Exception as err:  # noqa: BLE001 - e.g. a worker without course_lib cannot even load the check
        raise RuntimeError(f"grading refused: a worker cannot run course_lib's grading ({type(err).__name__}: "
                           f"{err}); install course_lib[grading] of the same commit on every grading machine") from err
    other = sorted(worker for worker, digest in digests.items() if digest != library_digest())
    if other:
        raise RuntimeError(f"grading refused: the workers {', '.join(other)} run another course_lib than this "
                           "machine; install the same commit everywhere")


def _tasks(root: Path, assignment: str, students: list[str] | None) -> list[tuple[str, Files, list[str]]]:
    """``(student, submitted files, names of the notebooks to grade)`` for every submission (only
    ``students``' when given)."""
    sources = session.source_notebooks(root, assignment)
    tasks = []
    for folder in sorted((root / "submitted").glob(f"*/{assignment}")):
        if students is not None and folder.parent.name not in students:
            continue
        files = folder_files(folder)
        tasks.append((folder.parent.name, files, [Path(n).stem for n in sorted(files) if n in sources]))
    return tasks


def grade_all(address: str, root: Path, assignment: str, results_dir: Path, limits: Limits = Limits(),
              budget: float = 600.0, students: list[str] | None = None, on_result=None) -> dict[str, dict]:
    """:func:`session.grade_all <course_lib.grading.autograder.session.grade_all>` with the submissions
    graded by the Dask cluster whose scheduler is at ``address``; the same results, each kept here as
    it arrives."""
    from distributed import Client, as_completed  # the grading extra; only instructors import this module

    sources = {name: path.read_bytes() for name, path in session.source_notebooks(root, assignment).items()}
    tasks = _tasks(root, assignment, students)
    on_result = on_result or (lambda student, notebooks: session.write_result(results_dir, student, notebooks))
    with Client(address, timeout=CONNECT_TIMEOUT) as client:
        _check_workers(client)
        [shared_sources] = client.scatter([sources], broadcast=True)
        futures = {client.submit(grade_shipped, student, files, shared_sources, limits, budget, pure=False):
                   (student, notebooks) for student, files, notebooks in tasks}
        done = ((futures[f][0], outcome(f, futures[f][1])) for f in as_completed(futures))
        return session.with_progress(done, len(tasks), assignment, on_result)
