"""The sandbox's results, kept as each submission finishes, so that an interrupted run can resume.

    ROOT/grading-results/ASSIGNMENT/STUDENT/NOTEBOOK.json   the test cells' outputs (what nbgrader records)
    ROOT/grading-results/ASSIGNMENT/STUDENT/.graded          the fingerprint of the files that were graded
    ROOT/grading-results/ASSIGNMENT/STUDENT/.recorded        the fingerprint nbgrader recorded in the gradebook

A submission is graded in two steps: the sandbox runs it (seconds each: the expensive part), then
nbgrader records the saved outputs in the gradebook (one call for the batch). Each result is written
(to a temporary name, then renamed) the moment its submission finishes, and ``.graded`` last: a
kill loses only the submissions in flight, whose ``.graded`` is missing. A rerun grades in the sandbox
only the submissions without a ``.graded`` that matches what is in ``submitted/`` now (a re-collected,
changed submission is graded again), and asks nbgrader (with ``--force``, which replaces the
student's gradebook entry and ``autograded/`` folder) to record only those whose ``.recorded`` does
not match: the gradebook never keeps a half-recorded student, since nbgrader records a student anew
each time. ``--force`` forgets the results first: everything selected is graded again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from course_lib.grading.autograder.nbgrader_plugins import NOT_GRADED

FOLDER = "grading-results"
GRADED, RECORDED = ".graded", ".recorded"


def fingerprint(submission: Path, with_time: bool = False) -> str:
    """SHA-256 of the regular files of ``submitted/STUDENT/ASSIGNMENT/`` (names and bytes); the time of
    submission (``timestamp.txt``) counts only ``with_time`` (it changes the record, not the grading)."""
    digest = hashlib.sha256()
    for path in sorted(submission.iterdir()):
        if path.is_file() and not path.is_symlink() and (with_time or path.name != "timestamp.txt"):
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a kill leaves the old file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


class Store:
    """The results of one assignment (``ROOT/grading-results/ASSIGNMENT/``)."""

    def __init__(self, root: Path, assignment: str):
        self.root, self.assignment = root, assignment
        self.folder = root / FOLDER / assignment

    def submission(self, student: str) -> Path:
        return self.root / "submitted" / student / self.assignment

    def submitted(self, student: str | None = None) -> list[str]:
        """Every student with a submission (or just ``student``: an error when it has none)."""
        found = sorted(p.parent.name for p in (self.root / "submitted").glob(f"*/{self.assignment}") if p.is_dir())
        if student is None:
            return found
        if student not in found:
            raise ValueError(f"{student!r} has no submission of {self.assignment} in {self.root / 'submitted'}")
        return [student]

    def _mark(self, student: str, name: str) -> str | None:
        try:
            return (self.folder / student / name).read_text(encoding="utf-8")
        except OSError:
            return None

    def to_grade(self, student: str | None = None, force: bool = False) -> list[str]:
        """The students to run in the sandbox: those not finished yet (all selected ones with ``force``)."""
        selected = self.submitted(student)
        if force:
            for name in selected:
                shutil.rmtree(self.folder / name, ignore_errors=True)
        todo = [s for s in selected if self._mark(s, GRADED) != fingerprint(self.submission(s))]
        if len(todo) < len(selected):
            print(f"{len(selected) - len(todo)} submission(s) already graded in an earlier run, not graded again "
                  "(--force grades them again)", file=sys.stderr)
        return todo

    def graded(self, student: str, notebooks: dict[str, dict]) -> None:
        """Keep one student's sandbox results (called as the submission finishes); ``.graded`` last,
        and not at all when the grading itself failed (a lost cluster worker): a rerun tries again."""
        for name, result in notebooks.items():
            write_atomic(self.folder / student / f"{name}.json", json.dumps(result))
        (self.folder / student / RECORDED).unlink(missing_ok=True)
        if any(result.get(NOT_GRADED) for result in notebooks.values()):
            return
        write_atomic(self.folder / student / GRADED, fingerprint(self.submission(student)))

    def to_record(self, student: str | None = None) -> tuple[list[str], list[str]]:
        """``(to record, to leave out)``: the graded students whose gradebook entry is out of date, and
        the others (recorded already, or with no result to record: nbgrader must not give them 0)."""
        todo, leave = [], []
        for name in self.submitted(student):
            recorded = self._mark(name, RECORDED) == fingerprint(self.submission(name), with_time=True)
            ready = self._mark(name, GRADED) is not None and not (recorded and self._autograded(name))
            (todo if ready else leave).append(name)
        return todo, leave

    def _autograded(self, student: str) -> bool:
        return (self.root / "autograded" / student / self.assignment).is_dir()

    def recorded(self, students: list[str]) -> None:
        """After nbgrader's call: remember which of ``students`` it recorded (its ``autograded/`` folder)."""
        for name in students:
            if self._autograded(name):
                write_atomic(self.folder / name / RECORDED, fingerprint(self.submission(name), with_time=True))

    def load(self, student: str) -> dict[str, dict]:
        """``notebook -> result`` kept for ``student`` ({} when none)."""
        out = {}
        for path in sorted((self.folder / student).glob("*.json")):
            try:
                out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return out

    def load_all(self) -> dict[str, dict[str, dict]]:
        return {s: self.load(s) for s in self.submitted() if self._mark(s, GRADED) is not None}

    def problem(self, student: str) -> str | None:
        """Why a submission could not be graded, in a few words (its first event), or ``None``."""
        for result in self.load(student).values():
            for event in result.get("events", []):
                return str(event)[:200]
        return None
