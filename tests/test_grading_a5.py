"""Assignment 5 (GANs): its bank of submissions autograded for real, with exact scores per test cell.

The bank (``tests/banks/a5_gans.py``) is released, collected and autograded in one call of the
instructor's command, in a temporary course directory.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from banks.a5_gans import ASSIGNMENT, EXPECTED, FEEDBACK_MESSAGES, MANUAL, POINTS, RELEASE, SOLUTION, write_bank
from grading_support import autograde, grade_id, gradebook_scores, graded_points, make_course, read_notebook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory) -> dict:
    bank = tmp_path_factory.mktemp("bank")
    write_bank(bank)
    return autograde(course, ASSIGNMENT, bank)


def test_bank_points_match_the_assignment():
    assert graded_points(SOLUTION) == {**POINTS, **MANUAL}, "update POINTS/MANUAL in tests/banks/a5_gans.py"


def test_release_hides_solutions_and_hidden_tests():
    text = RELEASE.read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "HIDDEN TESTS", "NetCase(", "LossCase(", "StepCase(", "TrainingCase(",
                   "G(z_d).detach()", "F.softplus(-fake_logits)"):
        assert marker not in text, f"the release leaks {marker!r}"
    answer = next(c for c in read_notebook(SOLUTION)["cells"] if grade_id(c) == "nonsaturating_answer")["source"]
    assert answer[:60] not in text, "the release leaks the model answer"


def test_bank_gets_exactly_the_expected_scores(course, graded):
    scores = gradebook_scores(course, ASSIGNMENT, EXPECTED)
    assert set(scores) == set(EXPECTED), f"not graded: {set(EXPECTED) - set(scores)}"
    for student, expected in EXPECTED.items():
        got = {cell: scores[student][cell] for cell in POINTS}
        assert got == expected, f"{student}: expected {expected}, got {got}"
        manual = scores[student]["nonsaturating_answer"]
        assert manual == (0 if student == "blank" else None), f"{student}: written answer auto score {manual}"
    assert sum(EXPECTED["correct"].values()) == sum(POINTS.values()) and sum(EXPECTED["blank"].values()) == 0


def test_failures_are_explained_in_the_graded_notebook(course, graded):
    for student, message in FEEDBACK_MESSAGES.items():
        nb = json.loads((course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
        shown = "\n".join(str(o.get("text", "")) + str(o.get("evalue", "")) + "".join(o.get("traceback", []))
                          for c in nb["cells"] for o in c.get("outputs", []))
        shown = re.sub(r"\x1b\[[0-9;]*m", "", shown)
        assert message in shown, f"{student}: the graded notebook does not say {message!r}"
