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


def test_the_failure_summary_counts_each_test_and_its_commonest_message():
    from course_lib.grading.autograder.session import failure_summary

    def error(message):
        return [{"output_type": "stream", "name": "stdout", "text": "x"},
                {"output_type": "error", "ename": "CheckFailure", "evalue": message + "\n  inputs: ..."}]

    results = {"ann": {"a1": {"tests": {"t_pool": error("pool wrong"), "t_conv": []}}},
               "bob": {"a1": {"tests": {"t_pool": error("pool wrong"), "t_conv": error("conv wrong")}}},
               "cat": {"a1": {"tests": {"t_pool": error("pool shape"), "t_conv": []}}},
               "dan": {"a1": {"tests": {}, "events": ["grader error"]}}}
    assert failure_summary(results) == [("t_pool", 3, "CheckFailure: pool wrong"),
                                        ("t_conv", 1, "CheckFailure: conv wrong")]
