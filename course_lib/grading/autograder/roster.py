"""The class list: who must appear in the grades, whether they handed anything in or not.

``--roster CSV`` reads the same file as ``nbgrader db student import CSV``: a header row with ``id``
(or ``student_id``) and, optionally, ``first_name``, ``last_name`` and ``email``; one student a row.
The students are put in the gradebook (created, or their names updated), exactly as nbgrader's import
does, so the roster is the gradebook's student list: students imported with nbgrader's own command
count the same, and the export (:mod:`~course_lib.grading.autograder.lms_export`) lists every one of
them, with "no submission" for those who handed in nothing.
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from course_lib.grading.autograder.submission_policy import STUDENT_ID

ID_COLUMNS = ("id", "student_id")
NAME_COLUMNS = ("first_name", "last_name", "email")


@dataclass(frozen=True)
class Student:
    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""


def read_roster(path: Path) -> list[Student]:
    """The students of a roster CSV; a :class:`ValueError` names the row and what is wrong with it."""
    with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a spreadsheet's byte-order mark
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        id_column = next((c for c in ID_COLUMNS if c in columns), None)
        if id_column is None:
            raise ValueError(f"{path}: no 'id' (or 'student_id') column in the header {columns}")
        students, seen = [], set()
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            student = row.get(id_column, "")
            if not STUDENT_ID.match(student):
                raise ValueError(f"{path}, line {line}: {student!r} is not a valid student id "
                                 "(letters, digits, '_', '.', '-')")
            if student in seen:
                raise ValueError(f"{path}, line {line}: {student!r} is listed twice")
            seen.add(student)
            students.append(Student(student, **{c: row.get(c, "") for c in NAME_COLUMNS}))
    return students


def import_roster(db_url: str, students: list[Student]) -> None:
    """Create or update every student in the gradebook (what ``nbgrader db student import`` does)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        for student in students:
            names = {c: getattr(student, c) or None for c in NAME_COLUMNS}
            gb.update_or_create_student(student.id, **names)
    print(f"roster: {len(students)} students in the gradebook", file=sys.stderr)


def warn_unknown(students: list[Student], collected: list[str]) -> list[str]:
    """Students who handed something in but are not on the roster (a typo in the LMS or the roster?)."""
    known = {s.id for s in students}
    unknown = sorted(set(collected) - known)
    for student in unknown:
        print(f"roster: {student} handed in a submission but is not on the roster", file=sys.stderr)
    return unknown
