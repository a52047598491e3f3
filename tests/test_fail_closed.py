"""Grading fails closed (issue 15): nbgrader started by hand never runs students' code unsandboxed.

Bug caught: a bare `nbgrader autograde` (or the formgrader's button) ran every notebook with its
hidden tests in one kernel, as the instructor, with no warning.
"""
from __future__ import annotations

from nbgrader.preprocessors import Execute

from course_lib.grading.autograder import nbgrader_plugins as plugins


def test_nbgrader_by_hand_refuses_to_execute(monkeypatch):
    monkeypatch.delenv(plugins.SANDBOX_RESULTS_ENV, raising=False)
    monkeypatch.delenv(plugins.UNSANDBOXED_ENV, raising=False)
    steps = plugins.autograde_preprocessors()
    assert Execute not in steps and plugins.RefuseUnsandboxed in steps
    try:
        plugins.RefuseUnsandboxed().preprocess(None, {})
    except RuntimeError as err:
        assert "python -m course_lib.grading autograde" in str(err)
    else:
        raise AssertionError("nbgrader's execution was not refused")


def test_the_grading_command_picks_sandbox_results_or_the_explicit_unsafe_mode(monkeypatch):
    monkeypatch.setenv(plugins.SANDBOX_RESULTS_ENV, "/tmp/results")
    assert plugins.SandboxResults in plugins.autograde_preprocessors()
    monkeypatch.delenv(plugins.SANDBOX_RESULTS_ENV)
    monkeypatch.setenv(plugins.UNSANDBOXED_ENV, "1")
    assert Execute in plugins.autograde_preprocessors()
