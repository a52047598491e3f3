"""A bank of realistic submissions of assignment 4 (attention and segmentation), built from the release.

Each student starts from ``assignments/a4_attention_segmentation/a4_attention_segmentation.ipynb`` and
fills its solution cells with the reference solution's code, changed the way real students get it
wrong. Part 5 is graded on a weights file handed in next to the notebook, so every student is a folder
``<student>/`` holding the notebook and (except ``blank``) a weights file: the reference solution's
trained U-Net (:func:`weight_files`: trained once, about a minute of CPU, cached under
``_build/test-grading/`` by the hash of the solution and of the task's settings), or, for
``pickled_model``, a whole pickled module. The expected scores per test cell are worked out by hand in
``EXPECTED``.

    python tests/banks/a4_attention_segmentation.py OUT_DIR     writes OUT_DIR/<student>/ (notebook + weights)
"""
from __future__ import annotations

import sys
from pathlib import Path

import bank_tools
from bank_tools import edit, without

ASSIGNMENT = "a4_attention_segmentation"

#: Points of every autograded test cell.
POINTS = {
    "test_squeeze_excitation": 2, "test_squeeze_excitation_hidden": 2,
    "test_spatial_attention": 2, "test_spatial_attention_hidden": 2,
    "test_unet": 3, "test_unet_hidden": 2,
    "test_dice": 1, "test_iou": 1, "test_dice_iou_hidden": 3,
    "test_trained_unet": 2, "test_trained_unet_hidden": 4,
    "test_cam": 1, "test_grad_cam": 2, "test_cam_hidden": 2,
}
#: The hand-graded written answer.
MANUAL = {"imbalance_answer": 4}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": without(POINTS),
    "blank": without(POINTS, *POINTS),
    # ReLU instead of the sigmoid as the gate (gates not in (0, 1)); and mean_iou counts a class absent
    # from both prediction and target as IoU 1, which only the hidden tests (absent classes) catch.
    "relu_gate_absent_iou": without(POINTS, "test_squeeze_excitation", "test_squeeze_excitation_hidden",
                                     "test_dice_iou_hidden"),
    # softmax over the channel axis of (N, 1, H, W) scores: every weight is 1, attention pooling sums.
    "softmax_over_channels": without(POINTS, "test_spatial_attention", "test_spatial_attention_hidden"),
    # Dice summed over each image's pixels only (dims (2, 3)), then averaged over images and classes:
    # right for one image, wrong for a batch.
    "dice_per_image": without(POINTS, "test_dice", "test_dice_iou_hidden"),
    # The skip connection concatenated along the height instead of the channels: every forward pass
    # fails, including the trained model's (whose weights load: the layers are the right ones).
    "cat_wrong_axis": without(POINTS, "test_unet", "test_unet_hidden", "test_trained_unet", "test_trained_unet_hidden"),
    # Everything right, but the model was saved whole (torch.save(model, path)): the grader refuses
    # to unpickle it.
    "pickled_model": without(POINTS, "test_trained_unet", "test_trained_unet_hidden"),
    # The course library's answers (issue 14): squeeze-excitation as a subclass of course_lib.attention's,
    # its spatial_softmax (attention_pool calls it), course_lib.models.unet.UNet (also for the trained part,
    # whatever the weights) and course_lib.segmentation.mean_iou. Only the own Dice loss scores.
    "library_answers": without(POINTS, "test_squeeze_excitation", "test_squeeze_excitation_hidden",
                               "test_spatial_attention", "test_spatial_attention_hidden", "test_unet",
                               "test_unet_hidden", "test_iou", "test_dice_iou_hidden", "test_trained_unet",
                               "test_trained_unet_hidden"),
    # Part 7: Grad-CAM without the ReLU: the negative evidence stays in the map.
    "grad_cam_without_relu": without(POINTS, "test_grad_cam", "test_cam_hidden"),
    # Part 7: the gradient used position by position (no spatial average): right only where the head
    # spreads it evenly (global average pooling + linear), wrong after a 1x1 conv + ReLU or max pooling.
    "gradients_not_averaged": without(POINTS, "test_grad_cam", "test_cam_hidden"),
    # Part 7: the gradient summed over the positions instead of averaged: every map h*w times too large.
    "gradients_summed": without(POINTS, "test_grad_cam", "test_cam_hidden"),
    # Part 7: CAM with the first image's class for every image: right only when all images share it
    # (the visible second case and the hidden 1-image case), wrong in the others.
    "cam_first_class_for_all": without(POINTS, "test_cam", "test_cam_hidden"),
    # Part 7: CAM divided by h*w (Grad-CAM's scale for this head): right only on a 1x1 map.
    "cam_divided_by_positions": without(POINTS, "test_cam", "test_cam_hidden"),
}

#: A line of a failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "relu_gate_absent_iou": "check_squeeze_excitation failed on case '8 channels squeezed to 2'",
    "softmax_over_channels": "they must sum to 1",
    "dice_per_image": "check_soft_dice_loss failed on case '4 classes, batch of 2'",
    "cat_wrong_axis": "check_unet_shapes failed on case 'depth 2, 16x16 input'",
    "pickled_model": "is not a plain state_dict: it cannot be read with torch.load(weights_only=True)",
    "library_answers": "used course_lib.attention.SqueezeExcitation, the course library's own answer",
    "grad_cam_without_relu": "check_grad_cam failed on case 'global average pooling + linear'",
    "gradients_not_averaged": "check_grad_cam failed on case '1x1 conv + ReLU before pooling'",
    "gradients_summed": "Grad-CAM: tensors are not close!",
    "cam_first_class_for_all": "check_class_activation_map failed on case 'global average pooling + linear'",
    "cam_divided_by_positions": "CAM: tensors are not close!",
}


def solution_code() -> dict[str, str]:
    """The reference solution of every solution code cell, as a student would have typed it."""
    return bank_tools.solution_code(ASSIGNMENT)


def setup_code() -> str:
    """The locked set-up cell (imports, constants)."""
    cells = bank_tools.load(bank_tools.solution_path(ASSIGNMENT))["cells"]
    return next(bank_tools.source(c) for c in cells if bank_tools.grade_id(c) == "setup")


def _answers(student: str) -> dict[str, str]:
    """Source of each solution cell for ``student`` (cells left out stay as released)."""
    if student == "blank":
        return {}
    code = solution_code()
    if student == "relu_gate_absent_iou":
        code["squeeze_excitation"] = edit(code["squeeze_excitation"], "s = torch.sigmoid(self.fc2(",
                                          "s = torch.relu(self.fc2(")
        code["dice_iou"] = edit(code["dice_iou"],
                                "        if union > 0:  # a class in neither prediction nor target does not count\n"
                                "            ious.append((p & t).sum().item() / union)",
                                "        ious.append((p & t).sum().item() / union if union > 0 else 1.0)")
    elif student == "softmax_over_channels":
        code["spatial_attention"] = edit(code["spatial_attention"],
                                         "return scores.reshape(N, C, H * W).softmax(dim=-1).reshape(N, C, H, W)",
                                         "return scores.softmax(dim=1)")
    elif student == "dice_per_image":
        code["dice_iou"] = edit(code["dice_iou"], "dims = (0, 2, 3)", "dims = (2, 3)")
    elif student == "cat_wrong_axis":
        code["unet"] = edit(code["unet"], "torch.cat([skip, self.up(x)], dim=1)",
                            "torch.cat([skip, self.up(x)], dim=2)")
    elif student == "pickled_model":
        code["train_unet"] = edit(code["train_unet"], "torch.save(model.state_dict(), path)", "torch.save(model, path)")
    elif student == "library_answers":
        code["squeeze_excitation"] = ("from course_lib.attention import SqueezeExcitation as LibrarySE\n\n\n"
                                      "class SqueezeExcitation(LibrarySE):\n    pass\n")
        code["spatial_attention"] += "\n\nfrom course_lib.attention import spatial_softmax\n"
        code["unet"] += ("\n\nfrom course_lib.models.unet import UNet as LibraryUNet\n\n\n"
                         "def build_unet(in_channels=1, num_classes=2, base_channels=8, depth=2):\n"
                         "    return LibraryUNet(in_channels, num_classes, base_channels, depth)\n")
        code["dice_iou"] += "\n\nfrom course_lib.segmentation import mean_iou\n"
    elif student == "grad_cam_without_relu":
        code["cam"] = edit(code["cam"], "return torch.relu((alpha * A).sum(dim=1)).detach()",
                           "return (alpha * A).sum(dim=1).detach()")
    elif student == "gradients_not_averaged":
        code["cam"] = edit(code["cam"], "alpha = grads.mean(dim=(2, 3), keepdim=True)", "alpha = grads")
    elif student == "gradients_summed":
        code["cam"] = edit(code["cam"], "alpha = grads.mean(dim=(2, 3), keepdim=True)",
                           "alpha = grads.sum(dim=(2, 3), keepdim=True)")
    elif student == "cam_first_class_for_all":
        code["cam"] = edit(code["cam"], "w = weight[class_idx]  #", "w = weight[class_idx[0]].expand(len(class_idx), -1)  #")
    elif student == "cam_divided_by_positions":
        code["cam"] = edit(code["cam"], "return (w[:, :, None, None] * features).sum(dim=1)",
                           "return (w[:, :, None, None] * features).sum(dim=1) / features[0, 0].numel()")
    return code


def solution_namespace() -> dict:
    """The solution's set-up cell and its U-Net, Dice/IoU and training cells, executed."""
    namespace: dict = {"__name__": "__main__"}
    exec(setup_code(), namespace)
    code = solution_code()
    for cell in ("unet", "dice_iou", "train_unet"):
        exec(code[cell], namespace)
    return namespace


def weight_files() -> dict[str, Path]:
    """``kind -> file``: ``trained`` (the solution's ``train_segmentation_model``), ``pickled`` (a whole
    U-Net pickled by ``torch.save(model, path)``); cached by the solution's hash and the task's settings."""
    import torch

    from course_lib.grading.segmentation_checks import SEGMENTATION_TASK
    from course_lib.models.unet import UNet

    def make(files: dict[str, Path]) -> None:
        torch.save(UNet(**SEGMENTATION_TASK.unet_kwargs()), files["pickled"])
        solution_namespace()["train_segmentation_model"](str(files["trained"]))

    return bank_tools.cached_files(ASSIGNMENT, ("trained", "pickled"), make,
                                   depends_on=repr(SEGMENTATION_TASK) + torch.__version__)


BANK = bank_tools.Bank(
    ASSIGNMENT, POINTS, MANUAL, EXPECTED, FEEDBACK_MESSAGES, _answers,
    written={"imbalance_answer": "Predicting background everywhere gives a high pixel accuracy but a low mean IoU ..."},
    secrets=("SECase(", "UNetCase(", "MaskCase(", "seed=2718", "torch.cat([skip", "dims = (0, 2, 3)"),
    weights=bank_tools.Weights("segmentation_unet.pt", weight_files, {"blank": None, "pickled_model": "pickled"}))
write_bank = BANK.write  # for benchmarks/grading_sandbox.py

if __name__ == "__main__":
    bank_tools.main(BANK, sys.argv)
