"""A bank of realistic submissions of assignment 2 (architectures), built from the released notebook.

Each student starts from ``assignments/a2_architectures/a2_architectures.ipynb`` and fills its solution
cells with the reference solution's code, changed the way real students get it wrong; a student who
trained hands in ``a2_model.pt`` next to the notebook, as the assignment asks. The expected score of
every test cell is worked out by hand in ``EXPECTED``.

The weight files are made once (:func:`weight_files`): the solution's own ``train_and_save`` trains
the network (about a minute on two idle cores), cached under ``_build/test-grading/`` by the hash of
the solution's code, so that grading never trains.

    python tests/banks/a2_architectures.py OUT_DIR     writes OUT_DIR/<student>/a2_architectures.ipynb (+ weights)
"""
from __future__ import annotations

import sys
from pathlib import Path

import bank_tools
from bank_tools import edit, without

ASSIGNMENT = "a2_architectures"
MANUAL = {"residual_answer": 4}

#: Points of every autograded test cell.
POINTS = {
    "test_basic_block": 3, "test_basic_block_hidden": 2,
    "test_bottleneck": 2, "test_bottleneck_hidden": 2,
    "test_inception": 3, "test_inception_hidden": 2,
    "test_separable": 2, "test_costs": 2, "test_separable_hidden": 2,
    "test_model_file": 2, "test_accuracy_hidden": 6,
    "test_receptive_field": 2, "test_receptive_field_hidden": 2,
    "test_network_cost": 2, "test_network_cost_hidden": 2,
}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": without(POINTS),
    "blank": without(POINTS, *POINTS),
    # Projects only when the stride changes the size, not when only the channels change: the visible
    # cases (identity; stride 2 with more channels) pass, the hidden 8 -> 24 channels at stride 1 fails.
    "no_projection_for_channels": without(POINTS, "test_basic_block_hidden"),
    # The last 1x1 convolution does not expand (channels instead of 4 * channels).
    "bottleneck_no_expansion": without(POINTS, "test_bottleneck", "test_bottleneck_hidden"),
    # The "depthwise" 3x3 convolution forgot groups=in_channels: a full convolution.
    "depthwise_without_groups": without(POINTS, "test_separable", "test_separable_hidden"),
    # Pointwise mult-adds M*N without the D_F^2 factor (the module itself is right).
    "mult_adds_missing_factor": without(POINTS, "test_costs", "test_separable_hidden"),
    # Saved the weights before training: the file loads, but the accuracy is that of chance.
    "saved_before_training": without(POINTS, "test_accuracy_hidden"),
    # Saved the whole model with torch.save(model, ...): a pickle, refused by weights_only=True.
    "pickled_model": without(POINTS, "test_model_file", "test_accuracy_hidden"),
    # The course library's block, subclassed (issue 14): its network is built of it too.
    "library_block": without(POINTS, "test_basic_block", "test_basic_block_hidden", "test_model_file",
                             "test_accuracy_hidden"),
    # Part 7: the kernel's reach without the dilation, (k - 1) * jump.
    "field_ignores_dilation": without(POINTS, "test_receptive_field", "test_receptive_field_hidden"),
    # Part 7: the jump never multiplied by the stride: later layers grow the field by k - 1 only.
    "jump_not_multiplied_by_stride": without(POINTS, "test_receptive_field", "test_receptive_field_hidden"),
    # Part 7: stacks while field <= target ("more than" for "at least"): only a target that a stack
    # reaches exactly (the hidden 101 = 1 + 2 * 50) tells.
    "cover_off_by_one": without(POINTS, "test_receptive_field_hidden"),
    # Part 8: a convolution's parameters without its bias.
    "params_without_bias": without(POINTS, "test_network_cost", "test_network_cost_hidden"),
    # Part 8: FLOPs (2 per multiply-add) counted as mult-adds.
    "mult_adds_as_flops": without(POINTS, "test_network_cost", "test_network_cost_hidden"),
    # Part 8: BatchNorm's gamma and beta not counted: only ResNet-18 (visible) has BatchNorm,
    # VGG-16 and AlexNet (hidden) do not.
    "batchnorm_not_counted": without(POINTS, "test_network_cost"),
    # Part 8: the output size without the dilation: only the hidden dilated convolution tells.
    "output_size_ignores_dilation": without(POINTS, "test_network_cost_hidden"),
}

#: A line of every failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "no_projection_for_channels": "check_basic_block failed on case 'more channels, stride 1: projection shortcut'",
    "bottleneck_no_expansion": "wrong number of parameters: expected 4,544 (torchvision's Bottleneck",
    "depthwise_without_groups": "a depthwise convolution needs groups=in_channels",
    "mult_adds_missing_factor": "separable_mult_adds(M, N, D_K, D_F): expected 12,800",
    "saved_before_training": "is below the required 90%",
    "pickled_model": "is not a plain state_dict: it cannot be read with torch.load(weights_only=True)",
    "library_block": "BasicBlock used course_lib.models.resnet.BasicBlock, the course library's own answer",
    "field_ignores_dilation": "(kernel_size=3, stride=1, dilation=2): expected a receptive field of 7 pixels, got 5",
    "jump_not_multiplied_by_stride": "expected a receptive field of 8 pixels, got 6",
    "cover_off_by_one": "target=101, kernel_size=3, stride=1, dilation=1\nexpected 50 layers (their field: 101 pixels), got 51",
    "params_without_bias": "parameters: expected 224 (measured on real layers), got 216",
    "mult_adds_as_flops": "mult-adds: expected 21,600 (measured on real layers), got 43,200 (off by a factor 2)",
    "batchnorm_not_counted": "parameters: expected 11,689,512 (measured on real layers), got 11,679,912",
    "output_size_ignores_dilation": "check_layer_costs failed on case 'dilated 3x3, padding 2'",
}


def _answers(student: str) -> dict[str, str]:
    if student == "blank":
        return {}
    code = bank_tools.solution_code(ASSIGNMENT)
    if student == "no_projection_for_channels":
        code["basic_block"] = edit(code["basic_block"], "if stride != 1 or in_channels != channels:", "if stride != 1:")
    elif student == "bottleneck_no_expansion":
        code["bottleneck"] = edit(code["bottleneck"], "out_channels = channels * self.expansion",
                                  "out_channels = channels")
    elif student == "depthwise_without_groups":
        code["separable"] = edit(code["separable"], "padding=1, groups=in_channels, bias=False",
                                 "padding=1, bias=False")
    elif student == "mult_adds_missing_factor":
        code["separable"] = edit(code["separable"], "+ M * N * D_F * D_F", "+ M * N")
    elif student == "saved_before_training":
        code["network"] = edit(code["network"], "    torch.save(model.state_dict(), path)\n", "")
        code["network"] = edit(code["network"], "    train_data = load_fashion_mnist",
                                "    torch.save(model.state_dict(), path)\n    train_data = load_fashion_mnist")
    elif student == "pickled_model":
        code["network"] = edit(code["network"], "torch.save(model.state_dict(), path)", "torch.save(model, path)")
    elif student == "library_block":
        code["basic_block"] = ("from course_lib.models import resnet\n\n\nclass BasicBlock(resnet.BasicBlock):\n"
                               '    """The course library block, renamed."""\n')
    elif student == "field_ignores_dilation":
        code["receptive_field"] = edit(code["receptive_field"], "field += (kernel_size - 1) * dilation * jump  #",
                                       "field += (kernel_size - 1) * jump  #")
    elif student == "jump_not_multiplied_by_stride":
        code["receptive_field"] = edit(code["receptive_field"], "        jump *= stride  # neighbouring", "        # neighbouring")
    elif student == "cover_off_by_one":
        code["receptive_field"] = edit(code["receptive_field"], "while field < target:", "while field <= target:")
    elif student == "params_without_bias":
        code["network_cost"] = edit(code["network_cost"], "parameters = weights + (out_channels if bias else 0)",
                                    "parameters = weights")
    elif student == "mult_adds_as_flops":
        code["network_cost"] = edit(code["network_cost"], "return parameters, weights * out_h * out_w",
                                    "return parameters, 2 * weights * out_h * out_w")
    elif student == "batchnorm_not_counted":
        code["network_cost"] = edit(code["network_cost"], 'p, m = 2 * arguments["num_features"], 0', "p, m = 0, 0")
    elif student == "output_size_ignores_dilation":
        code["network_cost"] = edit(code["network_cost"], "(n + 2 * p - d * (k - 1) - 1) // s + 1",
                                    "(n + 2 * p - (k - 1) - 1) // s + 1")
    return code


def weight_files() -> dict[str, Path]:
    """``kind -> file``: ``trained`` (the solution's training), ``untrained`` (saved before training),
    ``pickled`` (a whole model pickled by ``torch.save(model, ...)``); cached by the solution's hash."""
    import torch

    def make(files):
        namespace = bank_tools.solution_namespace(ASSIGNMENT)
        torch.manual_seed(0)
        torch.save(namespace["build_model"]().state_dict(), files["untrained"])
        torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), files["pickled"])
        namespace["train_and_save"](str(files["trained"]))

    return bank_tools.cached_files(ASSIGNMENT, ("trained", "untrained", "pickled"), make)


#: Which weight file each student hands in (``None``: none, the student never trained).
WEIGHT_FILE = {"correct": "trained", "blank": None, "no_projection_for_channels": "trained",
               "bottleneck_no_expansion": "trained", "depthwise_without_groups": "trained",
               "mult_adds_missing_factor": "trained", "saved_before_training": "untrained", "pickled_model": "pickled",
               "library_block": "trained", "field_ignores_dilation": "trained",
               "jump_not_multiplied_by_stride": "trained", "cover_off_by_one": "trained", "params_without_bias": "trained",
               "mult_adds_as_flops": "trained", "batchnorm_not_counted": "trained",
               "output_size_ignores_dilation": "trained"}


BANK = bank_tools.Bank(
    ASSIGNMENT, POINTS, MANUAL, EXPECTED, FEEDBACK_MESSAGES, _answers,
    written={"residual_answer": "The shortcut adds the identity to every block's Jacobian, so ..."},
    secrets=("BlockCase(", "InceptionCase(", "SeparableCase(", "check_test_accuracy(build_model",
             "groups=in_channels, bias=False", "OneCycleLR"),
    weights=bank_tools.Weights("a2_model.pt", weight_files, WEIGHT_FILE))
write_bank = BANK.write  # for benchmarks/grading_sandbox.py

if __name__ == "__main__":
    bank_tools.main(BANK, sys.argv)
