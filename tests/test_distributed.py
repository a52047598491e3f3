"""Grading a class on a Dask cluster (``autograde --scheduler``), into a real PostgreSQL gradebook.

A local cluster of two worker processes (one thread each, as the README tells to start workers)
grades part of assignment 1's bank through the instructor's command: every submission must get
exactly the per-test scores that the bank's hand-worked ``EXPECTED`` gives (those of the local path,
``tests/test_grading_pipeline.py``), and the grading must have happened on the cluster. A worker
killed while grading a submission leaves that one NOT GRADED (not 0), with the ones the scheduler had
already handed it (Dask gives a worker more than one task when there are few), and the others are graded.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from submission_bank import ASSIGNMENT, EXPECTED, submission

from course_lib.grading.autograder import cli, distributed, jail
from course_lib.grading.autograder.nbgrader_plugins import NOT_GRADED

pytest.importorskip("distributed")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not jail.can_isolate(), reason="needs root: the sandbox and PostgreSQL's own user; "
                                 "CI runs as root")]

#: A sixth of the bank, each for another reason: right, blank, wrong in two ways, tampered tests, unreadable.
BANK = ["correct", "blank", "forgot_padding", "off_by_one", "tampered_tests", "corrupt_json"]


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each. A worker's death fails the tasks it holds at once, with
    no retry on another worker (the scheduler's ``allowed-failures``: 0)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as local, \
            Client(local) as client:
        yield client


def _course(tmp_path, url):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    os.environ[cli.DB_URL_ENV] = url
    try:
        cli.release(course, [ASSIGNMENT])
    finally:
        del os.environ[cli.DB_URL_ENV]
    return course


def _inbox(tmp_path, students: dict[str, str]):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for student, bank_entry in students.items():
        (inbox / f"{student}.ipynb").write_text(submission(bank_entry), encoding="utf-8")
    return inbox


def _command(course, inbox, client, url) -> list[str]:
    return [sys.executable, "-m", "course_lib.grading", "--root", str(course), "--db-url", url, "autograde",
            ASSIGNMENT, "--submissions", str(inbox), "--scheduler", client.scheduler.address]


def _cell_scores(course, url, students) -> dict[str, dict[str, float] | None]:
    """``student -> {grade_id: auto_score}`` from the PostgreSQL gradebook; ``None``: not autograded."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(url) as gb:
        for student in students:
            if not (course / "autograded" / student / ASSIGNMENT).is_dir():
                scores[student] = None
                continue
            notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {g.name: g.auto_score for g in notebook.grades}
    return scores


def _assert_bank_scores(course, url, students: dict[str, str]) -> None:
    got = _cell_scores(course, url, students)
    for student, bank_entry in students.items():
        expected = EXPECTED[bank_entry]
        if expected is None:
            assert got[student] is None, f"{student}: graded, but the bank says it cannot be"
        else:
            assert got[student] is not None, f"{student}: not graded"
            assert {c: got[student][c] for c in expected} == expected, student


def test_the_cluster_grades_with_the_local_paths_exact_scores(cluster, postgres, tmp_path):
    from distributed import get_task_stream

    course = _course(tmp_path, postgres["url"])
    inbox = _inbox(tmp_path, {s: s for s in BANK})
    with get_task_stream(cluster) as stream:
        result = subprocess.run(_command(course, inbox, cluster, postgres["url"]), capture_output=True, text=True,
                                timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    assert not (course / "gradebook.db").exists(), "graded into SQLite instead of PostgreSQL"
    ran = [t for t in stream.data if str(t["key"]).startswith("grade_shipped")]
    assert len(ran) == len(BANK), f"{len(ran)} grading tasks ran on the cluster, for {len(BANK)} submissions"
    _assert_bank_scores(course, postgres["url"], {s: s for s in BANK})
    assert f"{'corrupt_json':24s} NOT GRADED" in result.stdout, result.stdout


def _kill_a_grading_worker(client, deadline: float) -> None:
    """SIGKILL the worker process that runs a grading task, as soon as one does."""
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(str(k).startswith("grade_shipped") for k in keys):
                time.sleep(2)  # inside the task: its sandbox starting or its tests running
                os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
                return
        time.sleep(0.2)
    pytest.fail("no grading task started on the cluster")


def test_a_worker_killed_mid_task_leaves_only_its_submissions_not_graded(cluster, postgres, tmp_path):
    students = {"killed_correct": "correct", "killed_off_by_one": "off_by_one", "killed_blank": "blank"}
    course = _course(tmp_path, postgres["url"])
    inbox = _inbox(tmp_path, students)
    with subprocess.Popen(_command(course, inbox, cluster, postgres["url"]), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        _kill_a_grading_worker(cluster, time.monotonic() + 600)
        stdout, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-6000:]
    scores = _cell_scores(course, postgres["url"], students)
    lost = [s for s, cells in scores.items() if cells is None]
    assert 1 <= len(lost) < len(students), f"not graded: {lost} (one of two workers was killed while grading)"
    for student in lost:
        assert f"{student:24s} NOT GRADED" in stdout, stdout
        assert f"[sandbox] {student}/{ASSIGNMENT}: NOT GRADED: the grading task failed on the cluster: KilledWorker" \
            in stderr, stderr[-6000:]
    _assert_bank_scores(course, postgres["url"], {s: b for s, b in students.items() if s not in lost})


def test_an_answer_from_another_course_lib_is_not_used():
    results = {ASSIGNMENT: {"tests": {"test_im2col": []}, "events": []}}
    same = json.dumps({"library": distributed.library_digest(), "notebooks": results})
    assert distributed.parse_answer(same, [ASSIGNMENT]) == results
    other = json.dumps({"library": "0" * 64, "notebooks": results})
    refused = distributed.parse_answer(other, [ASSIGNMENT])[ASSIGNMENT]
    assert "another course_lib" in refused[NOT_GRADED] and refused["tests"] == {}
    unreadable = distributed.parse_answer("{", [ASSIGNMENT])[ASSIGNMENT]
    assert "not readable" in unreadable[NOT_GRADED]
