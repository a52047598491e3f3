"""A bank of realistic submissions of assignment 7 (training from the ground up), built from the released notebook.

Each student starts from ``assignments/a7_training/a7_training.ipynb`` and fills its solution cells with the
reference solution's code, changed the way real students get it wrong; a student who trained hands in
``a7_model.pt`` next to the notebook, as part 7 asks. The expected score of every test cell is worked
out by hand in ``EXPECTED``.

The weight files are made once (:func:`weight_files`): the solution's own ``train_model`` trains
``build_model()`` (three epochs of its AdamW on 20 000 images, under a minute of CPU, about 88 % test
accuracy), cached under ``_build/test-grading/`` by the hash of the solution, so that grading never trains.
A student's mistakes in parts 1-6 do not change the weights they hand in (all use the cached ones):
part 7 is graded on the file.

    python tests/banks/a7_training.py OUT_DIR     writes OUT_DIR/<student>/a7_training.ipynb (+ weights)
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import bank_tools
from bank_tools import edit, without

ASSIGNMENT = "a7_training"
MANUAL = {"adamw_answer": 3}

#: Points of every autograded test cell.
POINTS = {
    "test_relative_error": 1, "test_numerical_gradient": 2, "test_gradcheck_hidden": 2,
    "test_batchnorm_forward": 3, "test_batchnorm_backward": 3, "test_batchnorm_hidden": 3,
    "test_dropout": 2, "test_dropout_hidden": 2,
    "test_sgd_step": 2, "test_adam_step": 2, "test_adamw_step": 2, "test_optimizers_hidden": 3,
    "test_init_std": 2, "test_deep_stack": 2, "test_init_hidden": 2,
    "test_smoothed_cross_entropy": 2, "test_smoothing_hidden": 2,
    "test_model_file": 1, "test_model_accuracy": 4,
}

#: ``student -> [(solution cell, old, new), ...]``: the mistake, as an edit of the reference solution.
MISTAKES: dict[str, list[tuple[str, str, str]]] = {
    # The gradient checker with a forward difference (f(x + h) - f(x)) / h: its error is O(h), not O(h²).
    "one_sided_difference": [("gradcheck", "flat[i] = old - h\n            minus", "flat[i] = old\n            minus"),
                             ("gradcheck", "/ (2 * h)", "/ h")],
    # BatchNorm normalising with torch's default unbiased variance (divided by m - 1), and keeping it as running_var.
    "bn_unbiased_variance": [("batchnorm", "var = ((x - mean.view(shape)) ** 2).mean(dim=(0, 2, 3))",
                              "var = x.var(dim=(0, 2, 3))"),
                             ("batchnorm", "momentum * var * m / (m - 1)", "momentum * var")],
    # In eval mode the output is right, but the running statistics are still updated from the batch.
    "bn_running_stats_in_eval": [("batchnorm", "        mean, var = running_mean, running_var\n"
                                  "        new_mean, new_var = running_mean.clone(), running_var.clone()",
                                  "        new_mean = (1 - momentum) * running_mean + momentum * x.mean(dim=(0, 2, 3))\n"
                                  "        new_var = (1 - momentum) * running_var + momentum * x.var(dim=(0, 2, 3))\n"
                                  "        mean, var = running_mean, running_var")],
    # The backward pass treats the mean and variance as constants: only the direct path from x to x_hat.
    "bn_backward_direct_path_only": [("batchnorm", "grad_x = inv_std / m * (m * grad_x_hat - grad_x_hat.sum(dim=dims, "
                                      "keepdim=True)\n                            - x_hat * (grad_x_hat * x_hat).sum("
                                      "dim=dims, keepdim=True))", "grad_x = inv_std * grad_x_hat")],
    # Dropout without the 1 / (1 - p) scaling of the survivors.
    "dropout_no_rescale": [("dropout", "return x * keep / (1 - p)", "return x * keep")],
    # Momentum multiplies the new gradient instead of the old velocity: b = b + mu * d.
    "sgd_momentum_on_gradient": [("optimizers", 'momentum * state["velocity"] + d', 'state["velocity"] + momentum * d')],
    # Adam without bias correction (also breaks AdamW, which shares the update).
    "adam_no_bias_correction": [("optimizers", "m_hat = m / (1 - beta1 ** t)", "m_hat = m"),
                                ("optimizers", "v_hat = v / (1 - beta2 ** t)", "v_hat = v")],
    # AdamW with the decay added to the gradient, i.e. inside the moments: Adam + L2 again.
    "adamw_decay_in_moments": [("optimizers", "param = param * (1 - lr * weight_decay)",
                                "grad = grad + weight_decay * param")],
    # fan_in and fan_out swapped: out * k and in * k.
    "fans_swapped": [("init", "return shape[1] * receptive, shape[0] * receptive",
                      "return shape[0] * receptive, shape[1] * receptive")],
    # Smoothing spread over the K - 1 wrong classes, the true one getting exactly 1 - epsilon.
    "smoothing_k_minus_1": [("smoothing", "q = torch.full_like(log_p, epsilon / K)\n"
                             "    q[torch.arange(len(targets)), targets] += 1 - epsilon",
                             "q = torch.full_like(log_p, epsilon / (K - 1))\n"
                             "    q[torch.arange(len(targets)), targets] = 1 - epsilon")],
    # Calls the op the part asks for (switched off by the tests).
    "calls_torch_cross_entropy": [("smoothing", "    log_p = logits", "    return torch.nn.functional.cross_entropy("
                                   "logits, targets, label_smoothing=epsilon)\n    log_p = logits")],
    # The course library's answers: its fans for fan_in_and_fan_out (used by both stds), its label smoothing.
    "library_answers": [("init", "    receptive = math.prod(shape[2:])  # 1 for a linear layer\n"
                         "    return shape[1] * receptive, shape[0] * receptive",
                         "    from course_lib.init import fans\n    return fans(torch.empty(shape))"),
                        ("smoothing", "    log_p = logits", "    from course_lib.losses import label_smoothing_cross_entropy\n"
                         "    return label_smoothing_cross_entropy(logits, targets, epsilon)\n    log_p = logits")],
}

#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": without(POINTS),
    "blank": without(POINTS, *POINTS),
    "one_sided_difference": without(POINTS, "test_numerical_gradient", "test_gradcheck_hidden"),
    "bn_unbiased_variance": without(POINTS, "test_batchnorm_forward", "test_batchnorm_hidden"),
    "bn_running_stats_in_eval": without(POINTS, "test_batchnorm_forward", "test_batchnorm_hidden"),
    "bn_backward_direct_path_only": without(POINTS, "test_batchnorm_backward", "test_batchnorm_hidden"),
    "dropout_no_rescale": without(POINTS, "test_dropout", "test_dropout_hidden"),
    "sgd_momentum_on_gradient": without(POINTS, "test_sgd_step", "test_optimizers_hidden"),
    "adam_no_bias_correction": without(POINTS, "test_adam_step", "test_adamw_step", "test_optimizers_hidden"),
    "adamw_decay_in_moments": without(POINTS, "test_adamw_step", "test_optimizers_hidden"),
    "fans_swapped": without(POINTS, "test_init_std", "test_deep_stack", "test_init_hidden"),
    "smoothing_k_minus_1": without(POINTS, "test_smoothed_cross_entropy", "test_smoothing_hidden"),
    "calls_torch_cross_entropy": without(POINTS, "test_smoothed_cross_entropy", "test_smoothing_hidden"),
    # Saved the weights before training: the file loads, but the accuracy is that of chance.
    "saved_before_training": without(POINTS, "test_model_accuracy"),
    # Saved the whole model with torch.save(model, ...): a pickle, refused by weights_only=True.
    "pickled_model": without(POINTS, "test_model_file", "test_model_accuracy"),
    # course_lib.init.fans and course_lib.losses.label_smoothing_cross_entropy answer parts 5 and 6 (issue 14).
    "library_answers": without(POINTS, "test_init_std", "test_deep_stack", "test_init_hidden",
                               "test_smoothed_cross_entropy", "test_smoothing_hidden"),
}

#: A line of every failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "one_sided_difference": "not accurate enough for centred differences",
    "bn_unbiased_variance": "check_batchnorm_forward failed on case 'train, batch 4, 3 channels, 5x5'",
    "bn_running_stats_in_eval": "new_running_mean: tensors are not close!",
    "bn_backward_direct_path_only": "grad_x: tensors are not close!",
    "dropout_no_rescale": "check_dropout failed on case 'p=0.5, training'",
    "sgd_momentum_on_gradient": "check_sgd_step failed on case 'momentum 0.9'",
    "adam_no_bias_correction": "new_param after step 1: tensors are not close!",
    "adamw_decay_in_moments": "check_adamw_step failed on case 'weight decay 0.1'",
    "fans_swapped": "fan_in_and_fan_out: expected (50, 20) as torch.nn.init computes them, got (20, 50)",
    "smoothing_k_minus_1": "check_smoothed_cross_entropy failed on case '10 classes, epsilon 0.1'",
    "calls_torch_cross_entropy": "ForbiddenCall: torch.nn.functional.cross_entropy is what this part asks you to write",
    "saved_before_training": "is below the required 85%",
    "pickled_model": "is not a plain state_dict: it cannot be read with torch.load(weights_only=True)",
    "library_answers": "smoothed_cross_entropy used course_lib.losses.label_smoothing_cross_entropy",
}


def _answers(student: str) -> dict[str, str]:
    if student == "blank":
        return {}
    code = bank_tools.solution_code(ASSIGNMENT)
    for cell, old, new in MISTAKES.get(student, []):
        code[cell] = edit(code[cell], old, new)
    return code


def _setup_or_solution(cell: dict) -> bool:
    """The set-up, the given ScratchBatchNorm2d and the solution cells; not the training cell, which
    would write into the working directory."""
    meta = cell["metadata"].get("nbgrader", {})
    return meta.get("grade_id") in ("setup", "given_model") or bool(meta.get("solution"))


def weight_files() -> dict[str, Path]:
    """``kind -> file``: ``trained`` (the solution's ``train_model``), ``untrained`` (saved before
    training), ``pickled`` (the trained model pickled whole); cached by the solution's hash."""
    import torch

    from course_lib import data

    def make(files: dict[str, Path]) -> None:
        namespace = bank_tools.solution_namespace(ASSIGNMENT, keep=_setup_or_solution)
        torch.manual_seed(0)
        model = namespace["build_model"]()
        torch.save(model.state_dict(), files["untrained"])
        images, labels = data.load_fashion_mnist("train")
        namespace["train_model"](model, images[:20000], labels[:20000])
        module = types.ModuleType(namespace["__name__"])  # so that pickle finds ScratchBatchNorm2d by name
        module.__dict__.update(namespace)
        sys.modules[module.__name__] = module
        try:
            torch.save(model, files["pickled"])
        finally:
            del sys.modules[module.__name__]
        torch.save(model.state_dict(), files["trained"])

    return bank_tools.cached_files(ASSIGNMENT, ("trained", "untrained", "pickled"), make)


def solution_build_model():
    """The solution's ``build_model`` (with its ScratchBatchNorm2d)."""
    return bank_tools.solution_namespace(ASSIGNMENT, keep=_setup_or_solution)["build_model"]


#: Which weight file each student hands in (``None``: none, the student never trained).
WEIGHT_FILE = {student: "trained" for student in EXPECTED} | {
    "blank": None, "saved_before_training": "untrained", "pickled_model": "pickled"}


BANK = bank_tools.Bank(
    ASSIGNMENT, POINTS, MANUAL, EXPECTED, FEEDBACK_MESSAGES, _answers,
    written={"adamw_answer": "Adam divides the L2 term by sqrt(v_hat) too, so weights with large gradients decay less ..."},
    secrets=("BNCase(", "OptimCase(", "InitCase(", "SmoothingCase(", "GradCase(", "DropoutCase(",
             "m / (1 - beta1 ** t)", "(plus - minus) / (2 * h)", "var * m / (m - 1)"),
    weights=bank_tools.Weights("a7_model.pt", weight_files, WEIGHT_FILE))
write_bank = BANK.write  # for benchmarks/grading_sandbox.py

if __name__ == "__main__":
    bank_tools.main(BANK, sys.argv)
