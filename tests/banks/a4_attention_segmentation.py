"""A bank of realistic submissions of assignment 4 (attention and segmentation), built from the release.

Each student starts from ``assignments/a4_attention_segmentation/a4_attention_segmentation.ipynb`` and
fills its solution cells with the reference solution's code, changed the way real students get it
wrong. Part 5 is graded on a weights file handed in next to the notebook, so every student is a folder
``<student>/`` holding the notebook and (except ``blank``) a weights file: the trained reference
weights (``write_bank(folder, weights=...)``), or, for ``pickled_model``, a whole pickled module.
The expected scores per test cell are worked out by hand in ``EXPECTED``.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "a4_attention_segmentation"
RELEASE = ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SOLUTION = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
WEIGHTS = "segmentation_unet.pt"

#: Points of every autograded test cell.
POINTS = {
    "test_squeeze_excitation": 2, "test_squeeze_excitation_hidden": 2,
    "test_spatial_attention": 2, "test_spatial_attention_hidden": 2,
    "test_unet": 3, "test_unet_hidden": 2,
    "test_dice": 1, "test_iou": 1, "test_dice_iou_hidden": 3,
    "test_trained_unet": 2, "test_trained_unet_hidden": 4,
}
#: The hand-graded written answer.
MANUAL = {"imbalance_answer": 4}
FULL = sum(POINTS.values())


def _without(*failed: str) -> dict[str, int]:
    return {cell: 0 if cell in failed else points for cell, points in POINTS.items()}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": _without(),
    "blank": _without(*POINTS),
    # ReLU instead of the sigmoid as the gate (gates not in (0, 1)); and mean_iou counts a class absent
    # from both prediction and target as IoU 1, which only the hidden tests (absent classes) catch.
    "relu_gate_absent_iou": _without("test_squeeze_excitation", "test_squeeze_excitation_hidden",
                                     "test_dice_iou_hidden"),
    # softmax over the channel axis of (N, 1, H, W) scores: every weight is 1, attention pooling sums.
    "softmax_over_channels": _without("test_spatial_attention", "test_spatial_attention_hidden"),
    # Dice summed over each image's pixels only (dims (2, 3)), then averaged over images and classes:
    # right for one image, wrong for a batch.
    "dice_per_image": _without("test_dice", "test_dice_iou_hidden"),
    # The skip connection concatenated along the height instead of the channels: every forward pass
    # fails, including the trained model's (whose weights load: the layers are the right ones).
    "cat_wrong_axis": _without("test_unet", "test_unet_hidden", "test_trained_unet", "test_trained_unet_hidden"),
    # Everything right, but the model was saved whole (torch.save(model, path)): the grader refuses
    # to unpickle it.
    "pickled_model": _without("test_trained_unet", "test_trained_unet_hidden"),
}

#: A line of a failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "relu_gate_absent_iou": "check_squeeze_excitation failed on case '8 channels squeezed to 2'",
    "softmax_over_channels": "they must sum to 1",
    "dice_per_image": "check_soft_dice_loss failed on case '4 classes, batch of 2'",
    "cat_wrong_axis": "check_unet_shapes failed on case 'depth 2, 16x16 input'",
    "pickled_model": "cannot be loaded with torch.load(..., weights_only=True)",
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


def setup_code() -> str:
    """The locked set-up cell (imports, constants)."""
    return next(c["source"] for c in _load(SOLUTION)["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "setup")


def _edit(source: str, old: str, new: str) -> str:
    if old not in source:
        raise ValueError(f"the solution changed: {old!r} not found; update {Path(__file__).name}")
    return source.replace(old, new)


def _answers(student: str) -> dict[str, str]:
    """Source of each solution cell for ``student`` (cells left out stay as released)."""
    if student == "blank":
        return {}
    code = solution_code()
    if student == "relu_gate_absent_iou":
        code["squeeze_excitation"] = _edit(code["squeeze_excitation"], "s = torch.sigmoid(self.fc2(",
                                           "s = torch.relu(self.fc2(")
        code["dice_iou"] = _edit(code["dice_iou"],
                                 "        if union > 0:  # a class in neither prediction nor target does not count\n"
                                 "            ious.append((p & t).sum().item() / union)",
                                 "        ious.append((p & t).sum().item() / union if union > 0 else 1.0)")
    elif student == "softmax_over_channels":
        code["spatial_attention"] = _edit(code["spatial_attention"],
                                          "return scores.reshape(N, C, H * W).softmax(dim=-1).reshape(N, C, H, W)",
                                          "return scores.softmax(dim=1)")
    elif student == "dice_per_image":
        code["dice_iou"] = _edit(code["dice_iou"], "dims = (0, 2, 3)", "dims = (2, 3)")
    elif student == "cat_wrong_axis":
        code["unet"] = _edit(code["unet"], "torch.cat([skip, self.up(x)], dim=1)", "torch.cat([skip, self.up(x)], dim=2)")
    elif student == "pickled_model":
        code["train_unet"] = _edit(code["train_unet"], "torch.save(model.state_dict(), path)", "torch.save(model, path)")
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
            cell["source"] = "Predicting background everywhere gives a high pixel accuracy but a low mean IoU ..."
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def write_bank(folder: Path, weights: Path, pickled: Path) -> list[str]:
    """Write ``folder/<student>/`` (the notebook and its weights file) for every student of the bank.

    Args:
        weights: a state_dict of the reference solution's trained U-Net (``torch.save``).
        pickled: a file holding a whole pickled ``nn.Module`` (what ``torch.save(model, path)`` writes).
    """
    for student in EXPECTED:
        (folder / student).mkdir(parents=True, exist_ok=True)
        (folder / student / f"{ASSIGNMENT}.ipynb").write_text(submission(student), encoding="utf-8")
        if student == "pickled_model":
            shutil.copyfile(pickled, folder / student / WEIGHTS)
        elif student != "blank":
            shutil.copyfile(weights, folder / student / WEIGHTS)
    return list(EXPECTED)
