"""The tests' namespace sees a student's code under the assignment's names only (issue 14, point 5).

Bug caught: a student's ``def range(...)`` replaced the builtin inside the trusted test cells, so a
hidden test's ``range(10)`` ran the student's code (A6: a wrong ``clip_grad_norm`` scored 20 of 22).
The bank entry ``clip_shadows_range`` (tests/banks/a6_rnn.py) checks the same through the real command.
"""
from __future__ import annotations

import nbformat

from course_lib.grading.autograder import session as grading_session


def _source() -> dict:
    nb = nbformat.v4.new_notebook()
    solution = {"nbgrader": {"solution": True, "grade": False, "grade_id": "answer", "locked": False}}
    given = {"nbgrader": {"solution": False, "grade": False, "grade_id": "given", "locked": True}}
    test = {"nbgrader": {"solution": False, "grade": True, "grade_id": "t1", "points": 1, "locked": True}}
    nb.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\ndef helper():\n    pass", metadata=given),
        nbformat.v4.new_code_cell("def clip(x):\n    raise NotImplementedError\n\nclass Net:\n    pass\n\n"
                                  "def range(n):\n    pass", metadata=solution),
        nbformat.v4.new_code_cell("def only_in_a_test():\n    pass", metadata=test),
    ]
    return nb


def test_declared_names_are_the_sources_functions_and_classes_without_builtins():
    assert grading_session.declared_names(_source()) == {"helper", "clip", "Net"}


class _Started:
    def ensure(self) -> None:
        pass

    def begin_test(self) -> None:
        pass


def test_a_students_builtin_or_undeclared_name_never_reaches_a_test(monkeypatch):
    student = {"range": lambda *args: [0], "clip": lambda x: 2 * x, "only_in_a_test": lambda: "student's"}
    monkeypatch.setattr(grading_session, "proxies", lambda session: student)
    test = ("assert list(range(3)) == [0, 1, 2], 'the student replaced range'\n"
            "assert clip(2) == 4\n"
            "assert 'only_in_a_test' not in globals()")
    results = grading_session.run_tests(_Started(), [], [("t1", test)], grading_session.declared_names(_source()))
    assert not [o for o in results["t1"] if o["output_type"] == "error"], results["t1"]
