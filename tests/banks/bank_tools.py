"""What every bank of realistic submissions does the same way (``tests/banks/*.py``, ``tests/submission_bank.py``).

A bank starts from the released notebook, fills its solution cells with the reference solution's
code changed the way real students get it wrong, and (for assignments with a trained part) hands in
a weight file made once by the solution's own code and cached by the solution's hash.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

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
    a manually graded answer) filled in; ``change(cell)`` may edit any other cell in place."""
    nb = load(release_path(assignment))
    for cell in nb["cells"]:
        gid = grade_id(cell)
        if gid in answers:
            cell["source"] = answers[gid]
        if written and gid in written:
            cell["source"] = written[gid]
        if change is not None:
            change(cell)
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


def cached_files(assignment: str, kinds: Iterable[str], make: Callable[[dict[str, Path]], None]) -> dict[str, Path]:
    """``kind -> file`` under ``_build/test-grading/<assignment>-<hash of the solution>/``; ``make(files)``
    writes them when any is missing (each is written to ``.part`` first, so a crash leaves no half file)."""
    key = hashlib.sha256(solution_path(assignment).read_bytes()).hexdigest()[:16]
    folder = CACHE / f"{assignment}-{key}"
    files = {kind: folder / f"{kind}.pt" for kind in kinds}
    if all(p.is_file() for p in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    parts = {kind: p.with_suffix(".pt.part") for kind, p in files.items()}
    make(parts)
    for kind, part in parts.items():
        part.replace(files[kind])
    return files


def write_bank(folder: Path, assignment: str, notebooks: dict[str, str], weights: dict[str, Path | None] | None = None,
               weights_name: str | None = None) -> list[str]:
    """Write ``folder/<student>/<assignment>.ipynb`` and, where ``weights[student]`` is a file, copy
    it to ``folder/<student>/<weights_name>``."""
    for student, text in notebooks.items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        (folder / student / f"{assignment}.ipynb").write_text(text, encoding="utf-8")
        if weights and weights.get(student):
            shutil.copyfile(weights[student], folder / student / weights_name)
    return list(notebooks)
