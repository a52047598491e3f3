"""A bank of realistic submissions of assignment 6 (recurrent networks), built from the released notebook.

Each student starts from ``assignments/a6_rnn/a6_rnn.ipynb`` and fills its solution cells with the
reference solution's code, changed the way real students get it wrong; a student who trained hands
in ``rnn_classifier.pt`` next to the notebook, as the assignment asks. The expected score of every
test cell is worked out by hand in ``EXPECTED``.

The weight files are made once (:func:`weight_files`): the solution's own ``train_classifier`` trains
``RowRNNClassifier(**model_config())`` (a GRU with 128 hidden units, two epochs of one-cycle Adam on
one thread: about 20 s of CPU, 87 % test accuracy), cached under ``_build/test-grading/`` by the
hash of the solution, so that grading never trains. The released threshold (85 %) is the one the
cached weights must pass.

    python tests/banks/a6_rnn.py OUT_DIR     writes OUT_DIR/<student>/a6_rnn.ipynb (+ weights)
"""
from __future__ import annotations

import sys
from pathlib import Path

import bank_tools
from bank_tools import edit, without

ASSIGNMENT = "a6_rnn"
MANUAL = {"long_memory_answer": 4}

#: Points of every autograded test cell.
POINTS = {
    "test_rnn_cell": 2, "test_lstm_cell": 2, "test_gru_cell": 2, "test_cells_hidden": 3,
    "test_rnn_backward": 3, "test_rnn_backward_hidden": 3,
    "test_clip_grad_norm": 2, "test_clip_grad_norm_hidden": 2,
    "test_classifier_model": 1, "test_classifier_accuracy": 5,
}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": without(POINTS),
    "blank": without(POINTS, *POINTS),
    # The forget and input gates' weights swapped: C_t = i * C_{t-1} + f * C̃.
    "lstm_swapped_gates": without(POINTS, "test_lstm_cell", "test_cells_hidden"),
    # The lecture's GRU (reset BEFORE the product, W_hn (r * h)) where cuDNN's reset-after is asked for.
    "gru_reset_before": without(POINTS, "test_gru_cell", "test_cells_hidden"),
    # BPTT without tanh' = 1 - h^2: the gradient skips the nonlinearity at every step.
    "bptt_no_tanh_derivative": without(POINTS, "test_rnn_backward", "test_rnn_backward_hidden"),
    # Each tensor clipped to max_norm on its own instead of all of them by the global norm: right for
    # one tensor and below the threshold, wrong for several tensors above it.
    "clip_per_tensor": without(POINTS, "test_clip_grad_norm", "test_clip_grad_norm_hidden"),
    # The same bug, and a `range` of their own that shortens the hidden test's `range(10)` to one tensor
    # (the case per-tensor clipping gets right): the tests see the builtin, not the student's name.
    "clip_shadows_range": without(POINTS, "test_clip_grad_norm", "test_clip_grad_norm_hidden"),
    # Saved the weights before training: the file loads, but the accuracy is that of chance.
    "saved_before_training": without(POINTS, "test_classifier_accuracy"),
    # Saved the whole model with torch.save(model, ...): a pickle, refused by weights_only=True.
    "pickled_model": without(POINTS, "test_classifier_accuracy"),
    # The LSTM step by the course library's own cell (issue 14): right, but the library's answer.
    "library_lstm_cell": without(POINTS, "test_lstm_cell", "test_cells_hidden"),
}

#: A line of every failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "lstm_swapped_gates": "check_lstm_cell failed on case 'batch 3, 4 inputs, 5 hidden'",
    "gru_reset_before": "check_gru_cell failed on case 'batch 3, 4 inputs, 5 hidden'",
    "bptt_no_tanh_derivative": "check_rnn_backward failed on case 'T=4, gradient at every step'",
    "clip_per_tensor": "clipped gradient 0: tensors are not close!",
    "clip_shadows_range": "clipped gradient 0: tensors are not close!",
    "saved_before_training": "is below the required 85%",
    "pickled_model": "is not a plain state_dict: it cannot be read with torch.load(weights_only=True)",
    "library_lstm_cell": "lstm_cell used course_lib.rnn.LSTMCell, the course library's own answer",
}

LIBRARY_LSTM = '''

import course_lib.rnn


def lstm_cell(x, state, params):
    cell = course_lib.rnn.LSTMCell(x.shape[1], params["b_f"].shape[0]).to(x.dtype)
    with torch.no_grad():
        for gate in ("f", "i", "C", "o"):
            getattr(cell, f"W_{gate}").weight.copy_(params[f"W_{gate}"])
            getattr(cell, f"W_{gate}").bias.copy_(params[f"b_{gate}"])
    return cell(x, state)
'''


CLIP_PER_TENSOR = '''def clip_grad_norm(grads, max_norm):
    clipped, total = [], 0.0
    for g in grads:
        if g is None:
            clipped.append(None)
            continue
        norm = torch.sqrt((g ** 2).sum())
        total = total + norm ** 2
        clipped.append(g * torch.clamp(max_norm / (norm + 1e-6), max=1.0))  # each tensor on its own
    return clipped, torch.sqrt(total)
'''

SHADOWED_RANGE = '''import builtins


def range(*args):
    """The builtin, except for the hidden test's range(10)."""
    return builtins.range(1) if args == (10,) else builtins.range(*args)
'''


def _answers(student: str) -> dict[str, str]:
    if student == "blank":
        return {}
    code = bank_tools.solution_code(ASSIGNMENT)
    if student == "lstm_swapped_gates":
        code["cells"] = edit(code["cells"], 'f = torch.sigmoid(hx @ params["W_f"].T + params["b_f"])\n'
                             '    i = torch.sigmoid(hx @ params["W_i"].T + params["b_i"])',
                             'i = torch.sigmoid(hx @ params["W_f"].T + params["b_f"])\n'
                             '    f = torch.sigmoid(hx @ params["W_i"].T + params["b_i"])')
    elif student == "gru_reset_before":
        code["cells"] = edit(code["cells"], 'r * (h @ params["W_hn"].T + params["b_hn"])',
                             '(r * h) @ params["W_hn"].T + params["b_hn"]')
    elif student == "bptt_no_tanh_derivative":
        code["bptt"] = edit(code["bptt"], "g = delta * (1 - hs[t + 1] ** 2)", "g = delta")
    elif student == "clip_per_tensor":
        code["clipping"] = CLIP_PER_TENSOR
    elif student == "clip_shadows_range":
        code["clipping"] = SHADOWED_RANGE + "\n\n" + CLIP_PER_TENSOR
    elif student == "library_lstm_cell":
        code["cells"] += LIBRARY_LSTM
    return code


def _pickle_the_model(student: str, cell: dict) -> None:
    """The training cell of a student who saved the whole model (``torch.save(model, ...)``)."""
    if student == "pickled_model" and cell["cell_type"] == "code" and "def submitted_weights" in bank_tools.source(cell):
        cell["source"] = edit(bank_tools.source(cell), "torch.save(model.state_dict(), WEIGHTS)",
                              "torch.save(model, WEIGHTS)")


def _setup_or_solution(cell: dict) -> bool:
    """The set-up and solution cells (define model_config, train_classifier); not the training cell,
    which would write into the working directory."""
    meta = cell["metadata"].get("nbgrader", {})
    return meta.get("grade_id") == "setup" or bool(meta.get("solution"))


def weight_files() -> dict[str, Path]:
    """``kind -> file``: ``trained`` (the solution's ``train_classifier``), ``untrained`` (saved before
    training), ``pickled`` (the trained model pickled whole by ``torch.save(model, ...)``); cached by
    the solution's hash."""
    import torch

    from course_lib import data
    from course_lib.models.row_rnn import RowRNNClassifier

    def make(files: dict[str, Path]) -> None:
        namespace = bank_tools.solution_namespace(ASSIGNMENT, keep=_setup_or_solution)
        torch.manual_seed(0)
        model = RowRNNClassifier(**namespace["model_config"]())
        torch.save(model.state_dict(), files["untrained"])
        images, labels = data.load_fashion_mnist("train")
        namespace["train_classifier"](model, images, labels)
        torch.save(model, files["pickled"])
        torch.save(model.state_dict(), files["trained"])

    return bank_tools.cached_files(ASSIGNMENT, ("trained", "untrained", "pickled"), make)


def solution_model_config() -> dict:
    """The solution's ``model_config()``."""
    return bank_tools.solution_namespace(ASSIGNMENT, keep=_setup_or_solution)["model_config"]()


#: Which weight file each student hands in (``None``: none, the student never trained).
WEIGHT_FILE = {student: "trained" for student in EXPECTED} | {
    "blank": None, "saved_before_training": "untrained", "pickled_model": "pickled"}


BANK = bank_tools.Bank(
    ASSIGNMENT, POINTS, MANUAL, EXPECTED, FEEDBACK_MESSAGES, _answers,
    written={"long_memory_answer": "The gradient through T steps is a product of T Jacobians W_hh^T diag(1 - h_t^2) ..."},
    secrets=("CellCase(", "BPTTCase(", "ClipCase(", "check_classifier_accuracy(model_config", "r * (h @ params",
             "1 - hs[t + 1] ** 2"),
    weights=bank_tools.Weights("rnn_classifier.pt", weight_files, WEIGHT_FILE), change=_pickle_the_model)
write_bank = BANK.write  # for benchmarks/grading_sandbox.py

if __name__ == "__main__":
    bank_tools.main(BANK, sys.argv)
