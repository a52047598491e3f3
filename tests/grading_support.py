"""Helpers shared by the homework round-trip tests of every assignment (``test_banks.py``, ``test_grading_*.py``).

Every assignment has a bank of realistic submissions (``tests/banks/``, a :class:`bank_tools.Bank`);
these release, run and autograde them in a temporary course directory, so no test touches a real
gradebook.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bank_tools import Bank

from conftest import ROOT

from course_lib.grading.autograder import cli


def papermill_run(notebook: Path, out: Path, **kwargs) -> dict:
    """Execute ``notebook`` in a scratch folder; return the executed notebook (also on errors)."""
    import papermill

    work = out.parent / f"{notebook.stem}-work"
    shutil.copytree(notebook.parent, work, dirs_exist_ok=True)
    try:
        papermill.execute_notebook(str(work / notebook.name), str(out), cwd=str(work), kernel_name="python3",
                                   progress_bar=False, **kwargs)
    except papermill.PapermillExecutionError:
        pass  # the caller inspects the outputs
    return read_notebook(out)


def read_notebook(path: Path) -> dict:
    """A notebook with every multi-line string joined (nbformat's reader does that)."""
    import nbformat

    return nbformat.read(str(path), as_version=4)


def outputs(cell: dict, kind: str) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o["output_type"] == kind]


def grade_id(cell: dict) -> str | None:
    return cell["metadata"].get("nbgrader", {}).get("grade_id")


def graded_points(notebook: Path) -> dict[str, float]:
    """``grade_id -> points`` of every graded cell (auto and manual) of a source notebook."""
    nb = read_notebook(notebook)
    return {grade_id(c): c["metadata"]["nbgrader"]["points"] for c in nb["cells"]
            if c["metadata"].get("nbgrader", {}).get("grade")}


def make_course(root: Path) -> Path:
    """A fresh course directory (config + solutions) whose assignments/ and gradebook come from a release."""
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions", root / "solutions")
    cli.release(root, [])
    return root


def autograde(course: Path, assignment: str, submissions: Path) -> dict:
    """Collect and autograde a folder of submissions with the instructor's command (one nbgrader call)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "autograde",
                             assignment, "--submissions", str(submissions)], capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "UNSANDBOXED" not in result.stderr, f"{assignment} fell back to stock nbgrader: {result.stderr[-2000:]}"
    count = len([p for p in submissions.iterdir() if p.is_dir() or p.suffix == ".ipynb"])  # both bank layouts
    print(f"\n{assignment}: autograded {count} submissions in {seconds:.1f} s, {seconds / max(count, 1):.1f} s each "
          "(nbgrader start-up included)")
    return {"log": result.stderr, "stdout": result.stdout, "seconds": seconds}


def gradebook_scores(course: Path, assignment: str, students) -> dict[str, dict[str, float]]:
    """``student -> {grade_id: auto_score}`` for every student that was autograded."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in students:
            if not (course / "autograded" / student).exists():
                continue
            notebook = gb.find_submission_notebook(assignment, assignment, student)
            scores[student] = {g.name: g.auto_score for g in notebook.grades}
    return scores


@dataclass(frozen=True)
class Graded:
    """A bank autograded in its own course directory: the course, and what the command said."""

    course: Path
    log: str
    stdout: str


def grade_bank(bank: Bank, tmp_path_factory) -> Graded:
    """Release every assignment into a fresh course, write ``bank`` and autograde it (one command)."""
    course = make_course(tmp_path_factory.mktemp(f"{bank.assignment}-course"))
    submissions = tmp_path_factory.mktemp(f"{bank.assignment}-bank")
    bank.write(submissions)
    result = autograde(course, bank.assignment, submissions)
    return Graded(course, result["log"], result["stdout"])


def assert_exact_scores(bank: Bank, graded: Graded) -> None:
    """Every student of the bank got exactly ``bank.expected[student]`` per test cell, the hand-graded
    cells (``bank.manual``) got no automatic score (0 where the student wrote nothing), and a student
    expected as ``None`` was reported as not graded."""
    scores = gradebook_scores(graded.course, bank.assignment, bank.expected)
    gradable = {student for student, cells in bank.expected.items() if cells is not None}
    assert set(scores) == gradable, f"not graded: {gradable - set(scores)}; graded: {set(scores) - gradable}"
    for student, cells in bank.expected.items():
        if cells is None:
            assert re.search(rf"{student}\s+NOT GRADED", graded.stdout), f"{student} not reported as ungraded"
            continue
        got = {cell: scores[student][cell] for cell in cells}
        assert got == cells, f"{student}: expected {cells}, got {got}"
        for cell in bank.manual:
            auto = scores[student][cell]
            assert auto == (0 if student == "blank" else None), f"{student}: written answer {cell} auto score {auto}"
    assert sum(bank.expected["correct"].values()) == bank.full, "the correct submission must score full marks"
    assert sum(bank.expected["blank"].values()) == 0, "a blank submission must score 0"


def assert_feedback_shows(bank: Bank, graded: Graded) -> None:
    """The autograded notebook of each student shows (in printed text or an error) ``bank.feedback[student]``."""
    for student, message in bank.feedback.items():
        nb = read_notebook(graded.course / "autograded" / student / bank.assignment / f"{bank.assignment}.ipynb")
        shown = "\n".join(str(o.get("text", "")) + str(o.get("evalue", "")) + "".join(o.get("traceback", []))
                          for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
        shown = re.sub(r"\x1b\[[0-9;]*m", "", shown)  # traceback colours
        assert message in shown, f"{student}: the graded notebook does not say {message!r}"


#: The sandbox says where in the notebook an error was raised; direct calls do not.
WHERE = re.compile(r" \(<cell \d+>, line \d+\)")


def check_outcome(check: str, args: tuple, kwargs: dict) -> tuple[str, str]:
    """``("passed", printed)`` or ``(exception type, message)`` of ``course_lib.grading.<check>(*args, **kwargs)``,
    from the same global torch RNG state every time: compared between direct and sandboxed calls."""
    import contextlib
    import io

    import torch

    import course_lib.grading as grading

    out = io.StringIO()
    torch.manual_seed(1234)  # the seeded checks seed themselves; the others must not depend on it
    try:
        with contextlib.redirect_stdout(out):
            getattr(grading, check)(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - compared between the two runs
        return type(err).__name__, WHERE.sub("", str(err))
    return "passed", re.sub(r"(?m)^Fashion-MNIST read from .*\n", "", out.getvalue())  # printed on first load only
