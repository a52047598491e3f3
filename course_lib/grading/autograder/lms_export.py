"""One assignment's grades for the LMS: every student of the gradebook (the roster), one row each.

    python -m course_lib.grading export ASSIGNMENT [--late-penalty 10%/day] [--output exports/ASSIGNMENT.csv]

``status`` says what the row's numbers mean:

* ``graded``: ``score`` is the gradebook's (autograded, plus hand-graded answers once marked), the
  penalty (:mod:`~course_lib.grading.autograder.lateness`) is taken from it: ``final_score``;
* ``no submission``: on the roster, nothing handed in (or nothing could be collected: the reason
  follows, ``no submission (not collected: ...)``); ``score`` is blank, ``final_score`` is 0;
* ``NOT GRADED: reason``: handed in but not graded (a corrupt notebook, a grader failure): ``score``
  and ``final_score`` are blank, so that no LMS records a number the instructor has not checked.

``needs_manual_grade`` is true until an instructor has marked the hand-graded answers.
:class:`LmsExportPlugin` offers the same table to ``nbgrader export --exporter=...``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.plugins import ExportPlugin

from course_lib.grading.autograder.lateness import LatePolicy, late_days
from course_lib.grading.autograder.results import Store

COLUMNS = ("student_id", "first_name", "last_name", "email", "assignment", "status", "score", "max_score",
           "submitted_at", "due", "late_days", "penalty", "final_score", "needs_manual_grade")


def _iso(when) -> str:
    return when.isoformat(sep=" ") + " UTC" if when is not None else ""


def _number(value: float) -> str:
    return f"{round(value, 6):g}"


def row_for(gb, store: Store | None, assignment, student, policy: LatePolicy, refused: dict[str, str]) -> dict:
    """The export's row of one student (see the module's docstring for what each status means)."""
    from nbgrader.api import MissingEntry

    row = {"student_id": student.id, "first_name": student.first_name or "", "last_name": student.last_name or "",
           "email": student.email or "", "assignment": assignment.name, "max_score": _number(assignment.max_score),
           "due": _iso(assignment.duedate), "score": "", "submitted_at": "", "late_days": "", "penalty": "",
           "final_score": "", "needs_manual_grade": ""}
    try:
        submission = gb.find_submission(assignment.name, student.id)
    except MissingEntry:
        submission = None
    handed_in = store is not None and (store.submission(student.id)).is_dir()
    if submission is None and not handed_in:
        why = refused.get(student.id)
        return {**row, "status": f"no submission (not collected: {why})" if why else "no submission", "final_score": "0"}
    if store is not None and not (store.root / "autograded" / student.id / assignment.name).is_dir():
        why = store.problem(student.id) or "nbgrader could not grade it; see the grading log"
        return {**row, "status": f"NOT GRADED: {why}"}
    seconds = submission.total_seconds_late
    penalty = policy.penalty(submission.score, assignment.max_score, seconds)
    return {**row, "status": "graded", "score": _number(submission.score), "submitted_at": _iso(submission.timestamp),
            "due": _iso(submission.duedate), "late_days": str(late_days(seconds)), "penalty": _number(penalty),
            "final_score": _number(submission.score - penalty),
            "needs_manual_grade": str(bool(submission.needs_manual_grade))}


def export_rows(gb, assignment_name: str, policy: LatePolicy, store: Store | None = None,
                refused: dict[str, str] | None = None) -> list[dict]:
    """Every student of the gradebook, by id, for ``assignment_name``."""
    assignment = gb.find_assignment(assignment_name)
    return [row_for(gb, store, assignment, student, policy, refused or {})
            for student in sorted(gb.students, key=lambda s: s.id)]


def write_csv(rows: list[dict], output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return output


def read_refused(path: Path) -> dict[str, str]:
    """``student -> reason`` of the last collection's refusals (``reports/ASSIGNMENT_not_collected.csv``)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["student_id"]: row["reason"] for row in csv.DictReader(f)}


def write_refused(path: Path, refused: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "reason"])
        writer.writerows(sorted(refused.items()))


class LmsExportPlugin(ExportPlugin):
    """``nbgrader export --exporter=course_lib.grading.autograder.lms_export.LmsExportPlugin
    --LmsExportPlugin.assignment=['a1_convolution']``: this module's table, no late penalty (the
    course's command, ``python -m course_lib.grading export``, adds the penalty and the reasons)."""

    def export(self, gradebook) -> None:
        names = [str(a) for a in self.assignment] or [a.name for a in gradebook.assignments]
        rows = [row for name in names for row in export_rows(gradebook, name, LatePolicy())]
        if self.student:
            rows = [row for row in rows if row["student_id"] in {str(s) for s in self.student}]
        write_csv(rows, Path(self.to or "lms_grades.csv"))
