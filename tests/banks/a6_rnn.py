"""A bank of realistic submissions of assignment 6 (recurrent networks), built from the released notebook.

Each student starts from ``assignments/a6_rnn/a6_rnn.ipynb`` and fills its solution cells with the
reference solution's code, changed the way real students get it wrong; a student who trained hands
in ``rnn_classifier.pt`` next to the notebook, as the assignment asks. The expected score of every
test cell is worked out by hand in ``EXPECTED``.

The weight files are made once (:func:`weight_files`): the solution's own ``train_classifier`` trains
``RowRNNClassifier(**model_config())`` (a minute or two on two idle cores), cached under
``_build/test-grading/`` by the hash of the solution, so that grading never trains. The released
threshold (85 %) is the one the cached weights must pass.

    python tests/banks/a6_rnn.py OUT_DIR     writes OUT_DIR/<student>/a6_rnn.ipynb (+ weights)
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "a6_rnn"
RELEASE = ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SOLUTION = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
CACHE = ROOT / "_build" / "test-grading"
WEIGHTS = "rnn_classifier.pt"
MANUAL = {"long_memory_answer": 4}

#: Points of every autograded test cell.
POINTS = {
    "test_rnn_cell": 2, "test_lstm_cell": 2, "test_gru_cell": 2, "test_cells_hidden": 3,
    "test_rnn_backward": 3, "test_rnn_backward_hidden": 3,
    "test_clip_grad_norm": 2, "test_clip_grad_norm_hidden": 2,
    "test_classifier_model": 1, "test_classifier_accuracy": 5,
}
FULL = sum(POINTS.values())


def _without(*failed: str) -> dict[str, int]:
    return {cell: 0 if cell in failed else points for cell, points in POINTS.items()}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": _without(),
    "blank": _without(*POINTS),
    # The forget and input gates' weights swapped: C_t = i * C_{t-1} + f * C̃.
    "lstm_swapped_gates": _without("test_lstm_cell", "test_cells_hidden"),
    # The lecture's GRU (reset BEFORE the product, W_hn (r * h)) where cuDNN's reset-after is asked for.
    "gru_reset_before": _without("test_gru_cell", "test_cells_hidden"),
    # BPTT without tanh' = 1 - h^2: the gradient skips the nonlinearity at every step.
    "bptt_no_tanh_derivative": _without("test_rnn_backward", "test_rnn_backward_hidden"),
    # Each tensor clipped to max_norm on its own instead of all of them by the global norm: right for
    # one tensor and below the threshold, wrong for several tensors above it.
    "clip_per_tensor": _without("test_clip_grad_norm", "test_clip_grad_norm_hidden"),
    # Saved the weights before training: the file loads, but the accuracy is that of chance.
    "saved_before_training": _without("test_classifier_accuracy"),
    # Saved the whole model with torch.save(model, ...): a pickle, refused by weights_only=True.
    "pickled_model": _without("test_classifier_accuracy"),
}

#: A line of every failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "lstm_swapped_gates": "check_lstm_cell failed on case 'batch 3, 4 inputs, 5 hidden'",
    "gru_reset_before": "check_gru_cell failed on case 'batch 3, 4 inputs, 5 hidden'",
    "bptt_no_tanh_derivative": "check_rnn_backward failed on case 'T=4, gradient at every step'",
    "clip_per_tensor": "clipped gradient 0: tensors are not close!",
    "saved_before_training": "is below the required 85%",
    "pickled_model": "the file is not a plain state_dict (only tensors are read, with weights_only=True",
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


def _answers(student: str) -> dict[str, str]:
    if student == "blank":
        return {}
    code = solution_code()
    if student == "lstm_swapped_gates":
        code["cells"] = _edit(code["cells"], 'f = torch.sigmoid(hx @ params["W_f"].T + params["b_f"])\n'
                              '    i = torch.sigmoid(hx @ params["W_i"].T + params["b_i"])',
                              'i = torch.sigmoid(hx @ params["W_f"].T + params["b_f"])\n'
                              '    f = torch.sigmoid(hx @ params["W_i"].T + params["b_i"])')
    elif student == "gru_reset_before":
        code["cells"] = _edit(code["cells"], 'r * (h @ params["W_hn"].T + params["b_hn"])',
                              '(r * h) @ params["W_hn"].T + params["b_hn"]')
    elif student == "bptt_no_tanh_derivative":
        code["bptt"] = _edit(code["bptt"], "g = delta * (1 - hs[t + 1] ** 2)", "g = delta")
    elif student == "clip_per_tensor":
        code["clipping"] = CLIP_PER_TENSOR
    return code


def _training_cell(cell: dict) -> bool:
    return cell["cell_type"] == "code" and "def submitted_weights" in "".join(cell["source"])


def submission(student: str) -> str:
    """The notebook ``student`` hands in, as text."""
    nb = _load(RELEASE)
    answers = _answers(student)
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
        if grade_id == "long_memory_answer" and student != "blank":
            cell["source"] = "The gradient through T steps is a product of T Jacobians W_hh^T diag(1 - h_t^2) ..."
        if student == "pickled_model" and _training_cell(cell):
            cell["source"] = _edit(cell["source"], "torch.save(model.state_dict(), WEIGHTS)", "torch.save(model, WEIGHTS)")
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _solution_namespace() -> dict:
    """The solution's set-up and solution cells executed (defines model_config, train_classifier);
    not the training cell, which would write into the working directory."""
    namespace: dict = {"__name__": "a6_solution"}
    for cell in _load(SOLUTION)["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and (meta.get("grade_id") == "setup" or meta.get("solution")):
            exec(compile(cell["source"], f"<{meta.get('grade_id')}>", "exec"), namespace)
    return namespace


def weight_files() -> dict[str, Path]:
    """``kind -> file``: ``trained`` (the solution's training), ``untrained`` (saved before training),
    ``pickled`` (the trained model pickled whole by ``torch.save(model, ...)``); cached by the solution's hash."""
    import torch

    from course_lib import data
    from course_lib.models.row_rnn import RowRNNClassifier

    key = hashlib.sha256(SOLUTION.read_bytes()).hexdigest()[:16]
    folder = CACHE / f"{ASSIGNMENT}-{key}"
    files = {kind: folder / f"{kind}.pt" for kind in ("trained", "untrained", "pickled")}
    if all(p.is_file() for p in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    namespace = _solution_namespace()
    torch.manual_seed(0)
    model = RowRNNClassifier(**namespace["model_config"]())
    torch.save(model.state_dict(), files["untrained"])
    images, labels = data.load_fashion_mnist("train")
    namespace["train_classifier"](model, images, labels)
    torch.save(model, files["pickled"])
    torch.save(model.state_dict(), str(files["trained"]) + ".part")
    Path(str(files["trained"]) + ".part").replace(files["trained"])
    return files


#: Which weight file each student hands in (``None``: none, the student never trained).
WEIGHT_FILE = {student: "trained" for student in EXPECTED} | {
    "blank": None, "saved_before_training": "untrained", "pickled_model": "pickled"}


def write_bank(folder: Path) -> list[str]:
    """Write ``folder/<student>/a6_rnn.ipynb`` and the student's ``rnn_classifier.pt``."""
    files = weight_files()
    for student in EXPECTED:
        (folder / student).mkdir(parents=True, exist_ok=True)
        (folder / student / f"{ASSIGNMENT}.ipynb").write_text(submission(student), encoding="utf-8")
        if WEIGHT_FILE[student]:
            shutil.copyfile(files[WEIGHT_FILE[student]], folder / student / WEIGHTS)
    return list(EXPECTED)


if __name__ == "__main__":
    print(*write_bank(Path(sys.argv[1])), sep="\n")
