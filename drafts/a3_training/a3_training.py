"""A bank of realistic submissions of assignment 3 (practical training), built from the released notebook.

Each student starts from ``assignments/a3_training/a3_training.ipynb`` and fills its solution cells
with the reference solution's code, changed the way real students get it wrong; a student who
trained hands in ``a3_model.pt`` next to the notebook. The bugs chosen do not change what the
student's training writes (it uses the class-weighted loss, unfrozen features and no generator),
so those students hand in the solution's own weights. The expected score of every test cell is
worked out by hand in ``EXPECTED``.

The weight file is made once (:func:`weight_files`) by the solution's ``finetune_and_save`` and
cached under ``_build/test-grading/`` by the hash of the solution.

    python tests/banks/a3_training.py OUT_DIR     writes OUT_DIR/<student>/a3_training.ipynb (+ weights)
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "a3_training"
RELEASE = ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SOLUTION = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
CACHE = ROOT / "_build" / "test-grading"
WEIGHTS = "a3_model.pt"
MANUAL = {"finetune_answer": 4}

#: Points of every autograded test cell.
POINTS = {
    "test_augment": 2, "test_augment_hidden": 1,
    "test_class_weights": 2, "test_sample_weights": 2, "test_balanced_accuracy": 1, "test_balance_hidden": 2,
    "test_schedule": 2, "test_schedule_hidden": 1,
    "test_finetune": 2, "test_finetune_hidden": 1,
    "test_model_file": 2, "test_balanced_hidden": 6,
}
FULL = sum(POINTS.values())


def _without(*failed: str) -> dict[str, int]:
    return {cell: 0 if cell in failed else points for cell, points in POINTS.items()}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": _without(),
    "blank": _without(*POINTS),
    # Draws from the global random generator instead of the one passed in: not reproducible.
    "augment_ignores_generator": _without("test_augment", "test_augment_hidden"),
    # Sampler weights n_c instead of 1 / n_c: the frequent classes are drawn even more often.
    "sampler_not_inverted": _without("test_sample_weights", "test_balance_hidden"),
    # "Balanced" accuracy computed as the plain accuracy.
    "plain_accuracy": _without("test_balanced_accuracy", "test_balance_hidden"),
    # Replaces the head but never freezes the features, whatever `freeze` says.
    "forgot_freeze": _without("test_finetune", "test_finetune_hidden"),
    # Saved the whole model with torch.save(model, ...): a pickle, refused by weights_only=True.
    "pickled_model": _without("test_model_file", "test_balanced_hidden"),
}

#: A line of every failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "augment_ignores_generator": "draw every random number from the generator argument",
    "sampler_not_inverted": "draws the classes with probabilities [0.8535, 0.1366, 0.0085, 0.0014], expected 0.2500 each",
    "plain_accuracy": "(that is the plain accuracy)",
    "forgot_freeze": "only the new classifier may be trainable",
    "pickled_model": "is not a plain state_dict: it cannot be read with torch.load(weights_only=True)",
}


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def solution_code() -> dict[str, str]:
    """The reference solution of every solution code cell, as a student would have typed it."""
    code = {}
    for cell in _load(SOLUTION)["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            code[meta["grade_id"]] = re.sub(r"\n *### (BEGIN|END) SOLUTION", "", cell["source"])
    return code


def _edit(source: str, old: str, new: str) -> str:
    if old not in source:
        raise ValueError(f"the solution changed: {old!r} not found; update tests/banks/{ASSIGNMENT}.py")
    return source.replace(old, new)


def _answers(student: str) -> dict[str, str]:
    if student == "blank":
        return {}
    code = solution_code()
    if student == "augment_ignores_generator":
        code["augment"] = _edit(code["augment"], ", generator=generator)", ")")
    elif student == "sampler_not_inverted":
        code["balance"] = _edit(code["balance"], "return 1.0 / counts[labels]", "return counts[labels]")
    elif student == "plain_accuracy":
        code["balance"] = _edit(code["balance"], "return float(torch.stack(recalls).mean())",
                                "return float((predictions == labels).double().mean())")
    elif student == "forgot_freeze":
        code["finetune"] = _edit(code["finetune"], "p.requires_grad = not freeze", "p.requires_grad = True")
    elif student == "pickled_model":
        code["finetune_train"] = _edit(code["finetune_train"], "torch.save(model.state_dict(), path)",
                                       "torch.save(model, path)")
    return code


def submission(student: str) -> str:
    """The notebook ``student`` hands in, as text."""
    nb = _load(RELEASE)
    answers = _answers(student)
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
        if grade_id == "finetune_answer" and student != "blank":
            cell["source"] = "With little data I would freeze the features ..."
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _solution_namespace() -> dict:
    """The solution's set-up and code cells executed, as in the notebook (defines finetune_and_save)."""
    namespace: dict = {"__name__": "a3_solution"}
    nb = _load(SOLUTION)
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and not meta.get("grade"):
            exec(compile(cell["source"], f"<{meta.get('grade_id')}>", "exec"), namespace)
    return namespace


def weight_files() -> dict[str, Path]:
    """``kind -> file``: ``trained`` (the solution's fine-tuning) and ``pickled`` (a whole model, as
    ``torch.save(model, ...)`` writes it); cached by the solution's hash."""
    import torch

    key = hashlib.sha256(SOLUTION.read_bytes()).hexdigest()[:16]
    folder = CACHE / f"{ASSIGNMENT}-{key}"
    files = {kind: folder / f"{kind}.pt" for kind in ("trained", "pickled")}
    if all(p.is_file() for p in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    namespace = _solution_namespace()
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)), files["pickled"])
    namespace["finetune_and_save"](str(files["trained"]) + ".part")
    Path(str(files["trained"]) + ".part").replace(files["trained"])
    return files


#: Which weight file each student hands in (``None``: none, the student never trained).
WEIGHT_FILE = {"correct": "trained", "blank": None, "augment_ignores_generator": "trained",
               "sampler_not_inverted": "trained", "plain_accuracy": "trained", "forgot_freeze": "trained",
               "pickled_model": "pickled"}


def write_bank(folder: Path) -> list[str]:
    """Write ``folder/<student>/a3_training.ipynb`` and the student's ``a3_model.pt``."""
    files = weight_files()
    for student in EXPECTED:
        (folder / student).mkdir(parents=True, exist_ok=True)
        (folder / student / f"{ASSIGNMENT}.ipynb").write_text(submission(student), encoding="utf-8")
        if WEIGHT_FILE[student]:
            shutil.copyfile(files[WEIGHT_FILE[student]], folder / student / WEIGHTS)
    return list(EXPECTED)


if __name__ == "__main__":
    print(*write_bank(Path(sys.argv[1])), sep="\n")
