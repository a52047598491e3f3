"""Every assignment's bank of realistic submissions (``tests/banks/``, ``tests/submission_bank.py``), graded
for real: released, collected and autograded by the instructor's command in a temporary course directory,
with the exact score of every test cell and the message each failing student must see.

One test per question, parametrised over the banks; what only one assignment needs (its checks against
independent references, a threshold that must not be weakened) is in its ``test_grading_<assignment>.py``.
Each bank is autograded once per run (the session fixture ``graded_bank``), and its trained reference
weights are made once per machine (``bank_tools.cached_files``).
"""
from __future__ import annotations

import pytest
from grading_support import assert_exact_scores, assert_feedback_shows, grade_id, graded_points, read_notebook

import a2_architectures
import a3_training
import a4_attention_segmentation
import a5_gans
import a6_rnn
import a7_training
import submission_bank

BANKS = [module.BANK for module in (submission_bank, a2_architectures, a3_training, a4_attention_segmentation,
                                    a5_gans, a6_rnn, a7_training)]
bank_of_each_assignment = pytest.mark.parametrize("bank", BANKS, ids=[bank.assignment for bank in BANKS])


@bank_of_each_assignment
def test_bank_points_match_the_assignment(bank):
    assert graded_points(bank.solution) == {**bank.points, **bank.manual}, \
        f"update POINTS/MANUAL in the bank of {bank.assignment}"


@bank_of_each_assignment
def test_release_hides_solutions_and_hidden_tests(bank):
    text = bank.release.read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "HIDDEN TESTS", *bank.secrets):
        assert marker not in text, f"the release leaks {marker!r}"
    for cell in read_notebook(bank.solution)["cells"]:
        if grade_id(cell) in bank.manual:
            assert cell["source"][:60] not in text, f"the release leaks the model answer of {grade_id(cell)}"


@pytest.mark.slow
@bank_of_each_assignment
def test_bank_gets_exactly_the_expected_scores(bank, graded_bank):
    assert_exact_scores(bank, graded_bank(bank))


@pytest.mark.slow
@bank_of_each_assignment
def test_failures_explain_themselves(bank, graded_bank):
    assert_feedback_shows(bank, graded_bank(bank))
