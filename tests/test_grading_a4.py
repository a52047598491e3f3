"""Assignment 4 (attention and segmentation): its checks, and its bank of submissions autograded for real.

The bank (``tests/banks/a4_attention_segmentation.py``) is released, collected with each student's
weights file and autograded in one call of the instructor's command, in a temporary course
directory. Part 5 grades a trained U-Net: the reference solution's model is trained once (a minute
on a laptop CPU) and cached by pytest, keyed by the solution's code, so reruns skip it.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from banks.a4_attention_segmentation import (ASSIGNMENT, EXPECTED, FEEDBACK_MESSAGES, MANUAL, POINTS, RELEASE, SOLUTION,
                                             setup_code, solution_code, write_bank)
from grading_support import (assert_exact_scores, assert_feedback_shows, autograde, grade_id, graded_points,
                             make_course, read_notebook)

from course_lib.grading import CheckFailure, load_state_dict_file
from course_lib.grading.segmentation_checks import SEGMENTATION_TASK

pytestmark = pytest.mark.slow


def _train_reference(path: Path) -> None:
    namespace: dict = {"__name__": "__main__"}
    exec(setup_code(), namespace)
    code = solution_code()
    for cell in ("unet", "dice_iou", "train_unet"):
        exec(code[cell], namespace)
    namespace["train_segmentation_model"](str(path))


@pytest.fixture(scope="module")
def reference_weights(request, tmp_path_factory) -> Path:
    """The reference solution's trained state_dict (trained once per version of the solution)."""
    code = solution_code()
    key = hashlib.sha256("\n".join([setup_code(), code["unet"], code["dice_iou"], code["train_unet"],
                                    repr(SEGMENTATION_TASK), torch.__version__]).encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("a4-reference-weights")) if cache else tmp_path_factory.mktemp("a4-weights")
    path = folder / f"{key}.pt"
    if not path.exists():
        _train_reference(folder / "training.pt")
        (folder / "training.pt").replace(path)
    return path


@pytest.fixture(scope="module")
def pickled_model(tmp_path_factory) -> Path:
    """What ``torch.save(model, path)`` writes: a whole pickled module."""
    from course_lib.models.unet import UNet

    path = tmp_path_factory.mktemp("pickled") / "model.pt"
    torch.save(UNet(**SEGMENTATION_TASK.unet_kwargs()), path)
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def graded(course, reference_weights, pickled_model, tmp_path_factory) -> dict:
    bank = tmp_path_factory.mktemp("bank")
    write_bank(bank, reference_weights, pickled_model)
    return autograde(course, ASSIGNMENT, bank)


def test_bank_points_match_the_assignment():
    assert graded_points(SOLUTION) == {**POINTS, **MANUAL}, "update POINTS/MANUAL in tests/banks/a4_attention_segmentation.py"


def test_release_hides_solutions_and_hidden_tests():
    text = RELEASE.read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "HIDDEN TESTS", "SECase(", "UNetCase(", "MaskCase(", "seed=2718",
                   "torch.cat([skip", "dims = (0, 2, 3)"):
        assert marker not in text, f"the release leaks {marker!r}"
    answer = next(c for c in read_notebook(SOLUTION)["cells"] if grade_id(c) == "imbalance_answer")["source"]
    assert answer[:60] not in text, "the release leaks the model answer"


def test_weights_are_loaded_without_unpickling(pickled_model, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(CheckFailure, match=r"weights_only=True\), so it is not graded.*torch.save\(model.state_dict\(\), path\)"):
        load_state_dict_file(pickled_model)
    with pytest.raises(CheckFailure, match="no weights file"):
        load_state_dict_file(tmp_path / "missing.pt")
    state = {"w": torch.arange(3.0)}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        assert torch.equal(load_state_dict_file(tmp_path / name)["w"], state["w"])
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckFailure, match="must hold a state_dict"):
        load_state_dict_file(tmp_path / "list.pt")


def test_reference_model_clears_the_threshold_and_an_untrained_one_does_not(reference_weights, tmp_path):
    from course_lib.grading import SEGMENTATION_MIN_IOU, check_segmentation_model
    from course_lib.models.unet import UNet

    namespace: dict = {"__name__": "__main__"}
    exec(setup_code(), namespace)
    exec(solution_code()["unet"], namespace)
    assert check_segmentation_model(namespace["build_unet"], reference_weights, num_samples=400, seed=2718) is None
    assert SEGMENTATION_MIN_IOU >= 0.4, "the released threshold must not be weakened"
    untrained = tmp_path / "untrained.pt"
    torch.manual_seed(0)
    torch.save(UNet(**SEGMENTATION_TASK.unet_kwargs()).state_dict(), untrained)
    with pytest.raises(CheckFailure, match="mean IoU .* is below the required"):
        check_segmentation_model(namespace["build_unet"], untrained)


def test_bank_gets_exactly_the_expected_scores(course, graded):
    assert_exact_scores(course, ASSIGNMENT, EXPECTED, MANUAL)
    assert sum(EXPECTED["correct"].values()) == sum(POINTS.values())


def test_failures_are_explained_in_the_graded_notebook(course, graded):
    assert_feedback_shows(course, ASSIGNMENT, FEEDBACK_MESSAGES)
