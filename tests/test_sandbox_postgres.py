"""Sandboxed, parallel grading into a PostgreSQL gradebook (nbgrader's ``db_url``), against a real
PostgreSQL server that this test starts (Debian's ``postgresql`` package) on a Unix socket, no TCP.

A class graded two at a time must land in the database exactly once per student with the right
scores, and a submission that tries to reach the database's socket from the sandbox scores 0.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import POSTGRES_BIN, ROOT
from submission_bank import ASSIGNMENT, POINTS, RELEASE, solution_code

from course_lib.grading.autograder import cli, jail

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not POSTGRES_BIN, reason="PostgreSQL is not installed (Debian package postgresql)"),
              pytest.mark.skipif(not jail.can_isolate(), reason="needs root: runs PostgreSQL as its own user "
                                 "and the sandbox; CI runs as root")]


def _notebook(cells: dict[str, str]) -> str:
    nb = json.loads(RELEASE.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in cells:
            cell["source"] = cells[grade_id]
    return json.dumps(nb)


def test_parallel_grading_into_postgresql(postgres, tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    url = postgres["url"]
    os.environ[cli.DB_URL_ENV] = url
    try:
        cli.release(course, [ASSIGNMENT])
    finally:
        del os.environ[cli.DB_URL_ENV]
    reach_db = f"""
import socket
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    s = socket.socket(socket.AF_UNIX)
    s.connect("{postgres['socket']}/.s.PGSQL.5432")
    return 0
"""
    students = {"correct_a": solution_code(), "correct_b": solution_code(), "blank": {},
                "reach_db": {"conv_output_size": reach_db}}
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, cells in students.items():
        (inbox / f"{name}.ipynb").write_text(_notebook(cells), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "--db-url", url,
                             "autograde", ASSIGNMENT, "--submissions", str(inbox), "--jobs", "2"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not (course / "gradebook.db").exists(), "graded into SQLite instead of PostgreSQL"

    from nbgrader.api import Gradebook

    full = sum(POINTS.values())
    with Gradebook(url) as gb:
        assert sorted(s.id for s in gb.students) == sorted(students)
        assert len(gb.find_assignment(ASSIGNMENT).submissions) == len(students), "lost or doubled submissions"
        scores = {s: gb.find_submission(ASSIGNMENT, s).score for s in students}
    assert scores == {"correct_a": full, "correct_b": full, "blank": 0, "reach_db": 0}, scores
    grades = subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "--db-url", url,
                             "grades", "--output", str(tmp_path / "grades.csv")], capture_output=True, text=True)
    assert grades.returncode == 0, grades.stderr
    assert "correct_a,a1_convolution," in (tmp_path / "grades.csv").read_text()
