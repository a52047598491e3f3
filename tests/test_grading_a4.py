"""Assignment 4 (attention and segmentation): the reference solution's trained U-Net against the released
threshold (how the checks read a submitted file: ``test_grading_checks.py``).

Its bank of submissions (``tests/banks/a4_attention_segmentation.py``) is graded in ``test_banks.py``.
Part 5 grades a trained U-Net: the reference solution's model is trained once per machine (a minute of
CPU) and cached by ``bank_tools.cached_files``, keyed by the solution and the task's settings.
"""
from __future__ import annotations

import pytest
import torch

from banks.a4_attention_segmentation import solution_namespace, weight_files
from course_lib.grading import CheckFailure
from course_lib.grading.segmentation_checks import SEGMENTATION_TASK

pytestmark = pytest.mark.slow


def test_reference_model_clears_the_threshold_and_an_untrained_one_does_not(tmp_path):
    from course_lib.grading import SEGMENTATION_MIN_IOU, check_segmentation_model
    from course_lib.models.unet import UNet

    build_unet = solution_namespace()["build_unet"]
    assert check_segmentation_model(build_unet, weight_files()["trained"], num_samples=400, seed=2718) is None
    assert SEGMENTATION_MIN_IOU >= 0.4, "the released threshold must not be weakened"
    untrained = tmp_path / "untrained.pt"
    torch.manual_seed(0)
    torch.save(UNet(**SEGMENTATION_TASK.unet_kwargs()).state_dict(), untrained)
    with pytest.raises(CheckFailure, match="mean IoU .* is below the required"):
        check_segmentation_model(build_unet, untrained)
