"""Assignment 5 (GANs): its bank of submissions autograded for real, with exact scores per test cell.

The bank (``tests/banks/a5_gans.py``) is released, collected and autograded in one call of the
instructor's command, in a temporary course directory.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from banks.a5_gans import ASSIGNMENT, EXPECTED, FEEDBACK_MESSAGES, MANUAL, POINTS, RELEASE, SOLUTION, write_bank
from grading_support import (assert_exact_scores, assert_feedback_shows, autograde, grade_id, graded_points,
                             make_course, read_notebook)

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
    assert_exact_scores(course, ASSIGNMENT, EXPECTED, MANUAL)
    assert sum(EXPECTED["correct"].values()) == sum(POINTS.values())


def test_failures_are_explained_in_the_graded_notebook(course, graded):
    assert_feedback_shows(course, ASSIGNMENT, FEEDBACK_MESSAGES)
