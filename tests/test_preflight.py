"""A grader that cannot grade refuses before any student is graded (issue 15: a grader fault is not
the student's fault).

Bug caught: run with a ``course_lib`` the sandbox's worker cannot import (a venv that points at
another checkout), every student, honest ones too, was recorded "autograded, 0" with "the student's
code ended the process", and the real error was lost.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

A1 = "a1_convolution"
pytestmark = pytest.mark.slow


def grading(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_lib.grading", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def test_doctor_reports_a_working_sandbox():
    done = grading("doctor", cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ready: a sandbox started, ran a known-good submission" in done.stdout


def test_a_grader_on_another_course_lib_refuses_and_grades_nobody(tmp_path):
    other = tmp_path / "other-checkout"  # a copy of the library the worker (python -I, the venv) never sees
    shutil.copytree(ROOT / "course_lib", other / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / A1, course / "solutions" / A1)
    assert grading("--root", str(course), "release", A1, cwd=ROOT).returncode == 0
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(ROOT / "solutions" / A1 / f"{A1}.ipynb", inbox / "alice.ipynb")  # would score full marks

    env = {"PYTHONPATH": str(other)}
    doctor = grading("doctor", cwd=tmp_path, env=env)
    assert doctor.returncode == 1 and "NOT READY" in doctor.stdout
    assert "No module named 'course_lib'" in doctor.stdout, "the worker's real error is not shown"
    done = grading("--root", str(course), "autograde", A1, "--submissions", str(inbox), cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "grading refused, no submission was graded" in done.stderr and "No module named 'course_lib'" in done.stderr
    assert not (course / "autograded").exists() and "alice" not in done.stdout.replace("collected", "")
