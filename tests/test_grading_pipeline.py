"""The homework round trip, for real: release, papermill, and what follows autograding assignment 1's
bank (its exact scores are checked with every bank's in ``test_banks.py``): restored test cells, grades
export and feedback.

Everything runs in a temporary course directory (a copy of ``nbgrader_config.py`` and ``solutions/``)
so that no test touches a real gradebook. nbgrader is started once per step for all students
(its start-up alone costs seconds), through the same command the Makefile uses.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from conftest import ROOT
from grading_support import Graded, grade_id, make_course, outputs, papermill_run, read_notebook
from submission_bank import ASSIGNMENT, BANK, EXPECTED, FEEDBACK_MESSAGES, FULL

from course_lib.grading.autograder import cli

SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))
RELEASES = sorted((ROOT / "assignments").glob("*/*.ipynb"))
REMOTE_ASSET = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded(graded_bank) -> Graded:
    """The whole bank, collected and autograded in one call of the instructor's command (once per run)."""
    return graded_bank(BANK)


@pytest.fixture(scope="module")
def course(graded) -> Path:
    """The course directory the bank was graded in; its assignments/ and gradebook come from ``make release``."""
    return graded.course


@pytest.mark.notebook
@pytest.mark.parametrize("source", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_passes_every_test_cell(source, tmp_path):
    nb = papermill_run(source, tmp_path / source.name)
    for cell in nb["cells"]:
        errors = outputs(cell, "error")
        assert not errors, f"{grade_id(cell) or cell['source'][:60]!r} raised {errors[0]['ename']}: {errors[0]['evalue']}"
    tests = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"]
    assert tests, f"{source.name} has no test cells"
    for cell in tests:
        printed = "".join(o["text"] for o in outputs(cell, "stream"))
        assert "cases passed" in printed, f"{grade_id(cell)} ran no check: {printed!r}"


@pytest.mark.notebook
@pytest.mark.parametrize("release", RELEASES, ids=[p.stem for p in RELEASES])
def test_release_runs_to_the_end_without_answers(release, tmp_path):
    nb = papermill_run(release, tmp_path / release.name, allow_errors=True)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code), "execution stopped before the last cell"
    errors = [(grade_id(c), o["ename"]) for c in code for o in outputs(c, "error")]
    assert errors, "an unanswered release raised nothing"
    assert {name for _, name in errors} == {"NotImplementedError"}, f"unexpected errors (a dead kernel?): {errors}"
    assert all(c["metadata"]["nbgrader"]["grade"] for c in code if outputs(c, "error")), (
        "only test cells may fail in a release; a set-up cell raised")


def test_release_is_in_sync_with_solutions(tmp_path):
    course = make_course(tmp_path)
    for name in cli.assignments(ROOT):
        released = sorted((ROOT / "assignments" / name).glob("*.ipynb"))
        regenerated = sorted((course / "assignments" / name).glob("*.ipynb"))
        assert [p.name for p in released] == [p.name for p in regenerated], f"{name}: notebooks differ"
        for committed, fresh in zip(released, regenerated):
            assert committed.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
                f"{committed.relative_to(ROOT)} is out of sync with solutions/: run `make release` and commit it")


def test_warnings_on_stderr_cost_no_points_and_stay_visible(course, graded):
    assert sum(EXPECTED["noisy_stderr"].values()) == FULL  # its exact scores: test_banks.py
    nb = read_notebook(course / "autograded" / "noisy_stderr" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    tests = [c for c in nb["cells"] if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")]
    shown = "".join(o.get("text", "") for c in tests for o in c["outputs"] if o["output_type"] == "stream")
    for noise in ("UserWarning", "RuntimeWarning", "divide by zero", "debug: conv2d_loops"):
        assert f"] {noise}" in shown or noise in shown, f"{noise!r} never reached a test cell's output"
    assert "[stderr]" in shown
    assert not [o for c in tests for o in c["outputs"] if o.get("name") == "stderr"], "stderr left in a test cell"


def test_tampered_test_cells_are_restored(course, graded):
    assert "Missing grade cell test_conv2d_loops encountered, adding to notebook" in graded.log
    assert re.search(r"Attribute 'checksum' for cell test_pool_backward has changed", graded.log)
    nb = read_notebook(course / "autograded" / "tampered_tests" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    restored = {grade_id(c): c["source"] for c in nb["cells"]}
    assert "check_conv2d(conv2d_loops, forbidden=FROM_SCRATCH)" in restored["test_conv2d_loops"]
    assert "check_avg_pool2d_backward(avg_pool2d_backward, forbidden=FROM_SCRATCH)" in restored["test_pool_backward"]


def test_grades_export_as_csv(course, graded, tmp_path):
    import csv

    assert cli.main(["--root", str(course), "grades", "--output", str(tmp_path / "grades.csv")]) == 0
    all_rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    released = {r["assignment"] for r in all_rows}
    assert ASSIGNMENT in released and {r["student_id"] for r in all_rows} == set(EXPECTED)
    # one row per student and released assignment (only this bank was submitted)
    assert len(all_rows) == len(EXPECTED) * len(released)
    rows = {r["student_id"]: r for r in all_rows if r["assignment"] == ASSIGNMENT}
    for student, expected in EXPECTED.items():
        row = rows[student]
        assert float(row["max_score"]) == FULL + 4, row  # + the hand-graded answer
        if expected is None:
            assert (row["autograded"], float(row["score"])) == ("False", 0.0), row
        else:
            assert float(row["score"]) == sum(expected.values()) and row["autograded"] == "True", row
            assert row["needs_manual_grade"] == str(student != "blank"), row


@pytest.fixture(scope="module")
def feedback(course, graded) -> list[Path]:
    return cli.feedback(course, ASSIGNMENT)


def test_feedback_shows_the_score_and_the_failing_message(feedback):
    pages = {p.parents[1].name: p for p in feedback}
    assert set(pages) == {s for s, e in EXPECTED.items() if e is not None}
    for student, page in pages.items():
        text = html.unescape(page.read_text(encoding="utf-8"))
        score = sum(EXPECTED[student].values())
        assert re.search(rf"Score: {score}(\.0)? / 32(\.0)?", text), f"{student}: score {score} not shown"
        if student in FEEDBACK_MESSAGES:
            assert FEEDBACK_MESSAGES[student] in text, f"{student}: feedback lacks {FEEDBACK_MESSAGES[student]!r}"
        # Hidden tests report their score and message, never their code (nor in a traceback).
        for leak in ("HIDDEN TESTS", "SizeCase(", "ConvCase(", "PoolCase("):
            assert leak not in text, f"{student}: the feedback shows hidden test code ({leak!r})"


def test_feedback_typesets_maths_offline(feedback):
    for page in feedback:
        text = page.read_text(encoding="utf-8")
        remote = REMOTE_ASSET.search(text)
        assert remote is None, f"{page.name} loads {text[remote.start():remote.start() + 120]}"
        assert 'src="mathjax/tex-svg.js"' in text and (page.parent / "mathjax" / "tex-svg.js").is_file()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_feedback_maths_renders_in_a_browser_from_disk(feedback):
    from playwright.sync_api import sync_playwright

    page_path = next(p for p in feedback if p.parents[1].name == "forgot_padding")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = browser.new_page()
        errors, foreign = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else foreign.append(r.url))
        page.goto(page_path.as_uri())  # as a student opens it: a file on disk, no server
        page.wait_for_selector("mjx-container svg", timeout=20_000)
        typeset = page.locator("mjx-container").count()
        browser.close()
    assert not errors, f"console errors: {errors}"
    assert not foreign, f"requests to other hosts: {foreign}"
    assert typeset >= 10, f"only {typeset} formulas typeset"
