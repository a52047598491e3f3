"""A bank of realistic submissions of assignment 5 (GANs), built from the released notebook.

Each student starts from ``assignments/a5_gans/a5_gans.ipynb`` and fills its solution cells with the
reference solution's code, changed the way real students get it wrong. The expected scores per test
cell are worked out in ``EXPECTED`` (the short training run of part 4 is seeded, so its outcome for
a wrong submission is as reproducible as the others).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "a5_gans"
RELEASE = ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SOLUTION = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

#: Points of every autograded test cell.
POINTS = {
    "test_generator": 2, "test_discriminator": 1, "test_networks_hidden": 2,
    "test_losses": 2, "test_losses_hidden": 2,
    "test_train_step": 3, "test_train_step_hidden": 2,
    "test_short_training": 2, "test_short_training_hidden": 2,
}
#: The hand-graded written answer.
MANUAL = {"nonsaturating_answer": 4}
FULL = sum(POINTS.values())


def _without(*failed: str) -> dict[str, int]:
    return {cell: 0 if cell in failed else points for cell, points in POINTS.items()}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": _without(),
    "blank": _without(*POINTS),
    # The minimax generator loss log(1 - D(G(z))) instead of -log D(G(z)): wrong values, so the loss
    # and step checks fail. Its gradient is small when D is confident, but Adam's steps do not scale
    # with the gradient, so in the short run (Adam) it still fools a frozen D: part 4 passes.
    "saturating_generator": _without("test_losses", "test_losses_hidden", "test_train_step", "test_train_step_hidden"),
    # Real labelled 0 and fake 1 in the discriminator's loss: D learns the opposite of its job.
    "labels_swapped": _without("test_losses", "test_losses_hidden", "test_train_step", "test_train_step_hidden",
                               "test_short_training", "test_short_training_hidden"),
    # The fakes of the D step are not detached and both optimisers are zeroed once at the start:
    # the D loss's gradient reaches G and is added to G's update. The losses are right; the step is
    # not, but in the short run the G update still fools a frozen D.
    "no_detach": _without("test_train_step", "test_train_step_hidden"),
    # Padding forgotten in the middle transposed convolution: 7 -> 16 -> 32, 32x32 images.
    "padding_forgotten": _without("test_generator", "test_networks_hidden"),
}

#: A line of a failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "saturating_generator": "generator_loss: tensors are not close!",
    "labels_swapped": "discriminator_loss: tensors are not close!",
    "no_detach": "generator parameter",
    "padding_forgotten": "wrong output shape: expected (4, 1, 28, 28), got (4, 1, 32, 32)",
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
        raise ValueError(f"the solution changed: {old!r} not found; update {Path(__file__).name}")
    return source.replace(old, new)


def _answers(student: str) -> dict[str, str]:
    """Source of each solution cell for ``student`` (cells left out stay as released)."""
    if student == "blank":
        return {}
    code = solution_code()
    if student == "saturating_generator":
        code["losses"] = _edit(code["losses"], "    return F.softplus(-fake_logits).mean()",
                               "    return -F.softplus(fake_logits).mean()  # log(1 - D(G(z)))")
    elif student == "labels_swapped":
        code["losses"] = _edit(code["losses"], "return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()",
                               "return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()")
    elif student == "no_detach":
        step = _edit(code["train_step"], "fake = G(z_d).detach()  # no gradient into G in the discriminator's step",
                     "opt_D.zero_grad()\n    opt_G.zero_grad()\n    fake = G(z_d)")
        step = _edit(step, "    opt_D.zero_grad()\n    d_loss.backward()", "    d_loss.backward()")
        code["train_step"] = _edit(step, "    opt_G.zero_grad()\n    g_loss.backward()", "    g_loss.backward()")
    elif student == "padding_forgotten":
        code["networks"] = _edit(code["networks"], "nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False)",
                                 "nn.ConvTranspose2d(2 * width, width, 4, stride=2, bias=False)")
    return code


def submission(student: str) -> str:
    """The notebook file ``student`` hands in, as text."""
    nb = _load(RELEASE)
    answers = _answers(student)
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
        if grade_id in MANUAL and student != "blank":
            cell["source"] = "The derivative of log(1 - sigmoid(l)) is -sigmoid(l), which vanishes when ..."
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def write_bank(folder: Path) -> list[str]:
    """Write ``folder/<student>.ipynb`` for every student of the bank."""
    folder.mkdir(parents=True, exist_ok=True)
    for student in EXPECTED:
        (folder / f"{student}.ipynb").write_text(submission(student), encoding="utf-8")
    return list(EXPECTED)
