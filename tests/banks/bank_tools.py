"""What every bank of realistic submissions does the same way (``tests/banks/*.py``, ``tests/submission_bank.py``).

A bank starts from the released notebook, fills its solution cells with the reference solution's
code changed the way real students get it wrong, and (for assignments with a trained part) hands in
a weight file made once by the solution's own code and cached by the solution's hash.

Each bank module describes itself as one :class:`Bank` (its module-level ``BANK``): the points of
the test cells, the expected score of every student, the message each failing student must see.
``tests/test_banks.py`` grades every ``BANK`` through the instructor's autograde command.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.checkpoint import made_once

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "_build" / "test-grading"


def release_path(assignment: str) -> Path:
    return ROOT / "assignments" / assignment / f"{assignment}.ipynb"


def solution_path(assignment: str) -> Path:
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def grade_id(cell: dict) -> str | None:
    return cell["metadata"].get("nbgrader", {}).get("grade_id")


def source(cell: dict) -> str:
    text = cell["source"]
    return text if isinstance(text, str) else "".join(text)


def without(points: dict[str, int], *failed: str) -> dict[str, int]:
    """Expected scores: full points except 0 for the ``failed`` test cells."""
    unknown = set(failed) - set(points)
    if unknown:
        raise KeyError(f"no such test cells: {sorted(unknown)}")
    return {cell: 0 if cell in failed else p for cell, p in points.items()}


def solution_code(assignment: str) -> dict[str, str]:
    """The reference solution of every solution code cell, as a student would have typed it."""
    code = {}
    for cell in load(solution_path(assignment))["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            code[meta["grade_id"]] = re.sub(r"\n *### (BEGIN|END) SOLUTION", "", source(cell))
    return code


def edit(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; fails loudly when the solution no longer contains ``old``."""
    if old not in text:
        raise ValueError(f"the solution changed: {old!r} not found; update the bank that edits it")
    return text.replace(old, new)


def submission(assignment: str, answers: dict[str, str], written: dict[str, str] | None = None,
               change: Callable[[dict], None] | None = None) -> str:
    """The released notebook with ``answers`` (grade_id -> code) and ``written`` (grade_id -> text of
    a manually graded answer) filled in; ``change(cell)`` may edit any other cell in place (or empty it:
    ``cell.clear()`` deletes it)."""
    nb = load(release_path(assignment))
    for cell in nb["cells"]:
        gid = grade_id(cell)
        if gid in answers:
            cell["source"] = answers[gid]
        if written and gid in written:
            cell["source"] = written[gid]
        if change is not None:
            change(cell)
    nb["cells"] = [cell for cell in nb["cells"] if cell]  # a cell that ``change`` emptied is deleted
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def solution_namespace(assignment: str, keep: Callable[[dict], bool] | None = None) -> dict:
    """The solution's code cells executed in order (by default every cell but the test cells), as
    the notebook would run them; ``keep(cell)`` chooses other cells."""
    keep = keep or (lambda cell: not cell["metadata"].get("nbgrader", {}).get("grade"))
    namespace: dict = {"__name__": f"{assignment}_solution"}
    for cell in load(solution_path(assignment))["cells"]:
        if cell["cell_type"] == "code" and keep(cell):
            exec(compile(source(cell), f"<{grade_id(cell)}>", "exec"), namespace)
    return namespace


def cached_files(assignment: str, kinds: Iterable[str], make: Callable[[dict[str, Path]], None],
                 depends_on: str = "") -> dict[str, Path]:
    """``kind -> file`` under ``_build/test-grading/<assignment>-<hash>/``, the hash of the solution
    (and of ``depends_on``: whatever else the training reads, e.g. a task's settings in course_lib);
    ``make(files)`` writes them when any is missing, through :func:`course_lib.checkpoint.made_once`
    (written to ``.part`` files first, so a crash leaves no half file)."""
    key = hashlib.sha256(solution_path(assignment).read_bytes() + depends_on.encode()).hexdigest()[:16]
    folder = CACHE / f"{assignment}-{key}"
    return made_once({kind: folder / f"{kind}.pt" for kind in kinds}, make)


@dataclass(frozen=True)
class Weights:
    """The weight file a bank's students hand in next to the notebook."""

    name: str  #: its file name, as the assignment asks for it (e.g. ``a2_model.pt``)
    files: Callable[[], dict[str, Path]]  #: ``kind -> file``, made once (:func:`cached_files`)
    handed_in: dict[str, str | None] = field(default_factory=dict)  #: ``student -> kind`` (None: no file); default "trained"

    def of(self, student: str, files: dict[str, Path]) -> Path | None:
        kind = self.handed_in.get(student, "trained")
        return files[kind] if kind else None


@dataclass(frozen=True)
class Bank:
    """One assignment's bank of submissions: what ``tests/test_banks.py`` grades and what it expects.

    ``expected`` maps each student to ``{test cell: score}`` (``None``: the file cannot be graded);
    ``feedback`` to a line the student's graded notebook must show; ``answers(student)`` gives the
    student's solution cells (``grade_id -> code``); every student but ``blank`` writes ``written``
    (``grade_id -> text``) into the hand-graded cells; ``change(student, cell)`` may edit any other cell.
    ``secrets`` are texts of the solution that the release must not show.
    """

    assignment: str
    points: dict[str, int]
    manual: dict[str, int]
    expected: dict[str, dict[str, int] | None]
    feedback: dict[str, str]
    answers: Callable[[str], dict[str, str]]
    written: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    weights: Weights | None = None
    change: Callable[[str, dict], None] | None = None

    @property
    def release(self) -> Path:
        return release_path(self.assignment)

    @property
    def solution(self) -> Path:
        return solution_path(self.assignment)

    @property
    def full(self) -> int:
        return sum(self.points.values())

    def submission(self, student: str) -> str:
        """The notebook ``student`` hands in, as text."""
        change = None if self.change is None else (lambda cell: self.change(student, cell))
        return submission(self.assignment, self.answers(student), {} if student == "blank" else self.written, change)

    def write(self, folder: Path) -> list[str]:
        """Write ``folder/<student>/<assignment>.ipynb`` (and the student's weight file) for every student."""
        files = self.weights.files() if self.weights else {}
        for student in self.expected:
            (folder / student).mkdir(parents=True, exist_ok=True)
            (folder / student / f"{self.assignment}.ipynb").write_text(self.submission(student), encoding="utf-8")
            handed_in = self.weights.of(student, files) if self.weights else None
            if handed_in:
                shutil.copyfile(handed_in, folder / student / self.weights.name)
        return list(self.expected)


def main(bank: Bank, argv: list[str]) -> None:
    """``python tests/banks/<bank>.py OUT_DIR``: write the bank there, to look at or to grade."""
    print(*bank.write(Path(argv[1])), sep="\n")
