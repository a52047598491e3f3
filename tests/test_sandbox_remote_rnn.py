"""Assignment 6's checks give the same verdict on a student's code called directly and through the sandbox.

As in ``test_sandbox_remote.py``: the solution's cells and plausible wrong answers run both in this
interpreter and in one sandboxed worker (whose functions the checks get as proxies); every check call
must end the same way on both sides — both pass, or both raise the same exception with the same
message. The cases cover dicts of tensors in, lists with ``None`` out, the forbidden references
(forwarded to the worker), and the state_dict that ``submitted_weights()`` reads in the worker from
its copy of the submission.
"""
from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

import course_lib.grading as grading
from conftest import ROOT
from grading_support import check_outcome

from course_lib.grading import RNN_FROM_SCRATCH, ClipCase
from course_lib.grading.autograder.jail import Limits
from course_lib.grading.compare import is_sandbox_ready
from course_lib.grading.autograder.session import Session, proxies


def _cells() -> dict[str, str]:
    nb = json.loads((ROOT / "solutions" / "a6_rnn" / "a6_rnn.ipynb").read_text(encoding="utf-8"))
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and (c["metadata"].get("nbgrader", {}).get("solution")
                                              or c["metadata"].get("nbgrader", {}).get("grade_id") == "setup")}


SOLUTION = _cells()


def variant(cell: str, renames: dict[str, str], old: str, new: str) -> str:
    """A solution cell with one mistake edited in and its functions renamed."""
    assert old in SOLUTION[cell], old
    source = SOLUTION[cell].replace(old, new)
    for a, b in renames.items():
        source = re.sub(rf"\b{a}\b", b, source)
    return source


WRONG = [
    variant("cells", {"lstm_cell": "lstm_swapped", "rnn_cell": "unused1", "gru_cell": "unused2"},
            'f = torch.sigmoid(hx @ params["W_f"]', 'f = torch.sigmoid(hx @ params["W_i"]'),
    variant("cells", {"gru_cell": "gru_reset_before", "rnn_cell": "unused1", "lstm_cell": "unused2"},
            'r * (h @ params["W_hn"].T + params["b_hn"])', '(r * h) @ params["W_hn"].T + params["b_hn"]'),
    variant("bptt", {"rnn_backward": "bptt_no_tanh"}, "g = delta * (1 - hs[t + 1] ** 2)", "g = delta"),
    textwrap.dedent("""
    import torch
    from course_lib.grading import load_state_dict_file
    def rnn_cell_via_torch(x, h, params):
        cell = torch.nn.RNNCell(x.shape[1], h.shape[1]).to(x.dtype)
        return cell(x, h)
    def bptt_autograd(grad_hs, xs, h0, params):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        h = h0.clone().requires_grad_(True)
        hs, state = [], h
        for x_t in xs:
            state = torch.tanh(x_t @ p["W_xh"].T + state @ p["W_hh"].T + p["b"])
            hs.append(state)
        return torch.autograd.grad(torch.stack(hs), (p["W_xh"], p["W_hh"], p["b"], h), grad_hs)
    def clip_per_tensor(grads, max_norm):
        out = [None if g is None else g * torch.clamp(max_norm / (g.norm() + 1e-6), max=1.0) for g in grads]
        return out, torch.sqrt(sum(g.norm() ** 2 for g in grads if g is not None))
    def config_lstm8():
        return {"mode": "lstm", "hidden_size": 8}
    def config_dropout():
        return {"mode": "gru", "dropout": 0.5}
    def submitted_weights():
        return load_state_dict_file("rnn_classifier.pt")
    def weights_torch_load():  # an OrderedDict
        return torch.load("rnn_classifier.pt", weights_only=True)
    def weights_pickled():
        return load_state_dict_file("pickled.pt")
    """),
]

IMAGES = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(1))
NONE_CASES = [ClipCase("some gradients are None", ((4, 2), (4,), (5,), (2, 4)), max_norm=1.5, none=(1, 2), seed=31)]
F = {"forbidden": RNN_FROM_SCRATCH}

CASES = [
    ("check_rnn_cell", ("rnn_cell",), F),
    ("check_rnn_cell", ("rnn_cell_via_torch",), F),
    ("check_lstm_cell", ("lstm_cell",), {**F, "dtype": torch.float64}),
    ("check_lstm_cell", ("lstm_swapped",), F),
    ("check_gru_cell", ("gru_cell",), F),
    ("check_gru_cell", ("gru_reset_before",), F),
    ("check_rnn_backward", ("rnn_backward",), F),
    ("check_rnn_backward", ("bptt_no_tanh",), F),
    ("check_rnn_backward", ("bptt_autograd",), F),
    ("check_clip_grad_norm", ("clip_grad_norm",), {**F, "cases": NONE_CASES}),
    ("check_clip_grad_norm", ("clip_per_tensor",), F),
    ("check_sequence_classifier", ("model_config",), {}),
    ("check_sequence_classifier", ("config_dropout",), {}),
    ("check_classifier_accuracy", ("config_lstm8", "submitted_weights"), {"threshold": 1.0}),
    ("check_classifier_accuracy", ("config_lstm8", "weights_torch_load"), {"threshold": 1.0}),
    ("check_classifier_accuracy", ("model_config", "submitted_weights"), {"threshold": 0.5}),
    ("check_classifier_accuracy", ("config_lstm8", "weights_pickled"), {"threshold": 0.5}),
]

@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    """``(direct namespace, proxies, labels)``; the submission folder holds the student's weight files."""
    from course_lib.models.row_rnn import RowRNNClassifier

    folder = tmp_path_factory.mktemp("submission")
    torch.manual_seed(0)
    model = RowRNNClassifier("lstm", hidden_size=8)
    torch.save(model.state_dict(), folder / "rnn_classifier.pt")
    torch.save(model, folder / "pickled.pt")  # the whole model, pickled: refused by weights_only=True
    with torch.no_grad():
        labels = model.eval()(IMAGES).argmax(1)  # the saved model is right on its own predictions
    code = list(SOLUTION.values()) + WRONG
    local: dict = {"__name__": "__main__"}
    for number, cell in enumerate(code):
        exec(compile(cell, f"<cell {number}>", "exec"), local)
    session = Session(folder, code, Limits(call_timeout=120), slot=4, budget=900)
    session.ensure()
    assert session.events == []
    yield local, proxies(session), labels, folder
    session.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1][-1]}" for c in CASES])
def test_remote_outcome_equals_direct(sides, case, monkeypatch):
    check, names, kwargs = case
    local, remote, labels, folder = sides
    if check == "check_classifier_accuracy":
        kwargs = {**kwargs, "images": IMAGES, "labels": labels}
    monkeypatch.chdir(folder)  # the direct call reads the weights where the worker's copy has them
    direct = check_outcome(check, tuple(local[n] for n in names), kwargs)
    sandboxed = check_outcome(check, tuple(remote[n] for n in names), kwargs)
    assert sandboxed == direct
    assert direct[0] in ("passed", "CheckFailure")


def test_cases_cover_passes_and_failures(sides, monkeypatch):
    local, _, labels, folder = sides
    monkeypatch.chdir(folder)
    outcomes: dict[str, set] = {}
    for check, names, kwargs in CASES:
        if check == "check_classifier_accuracy":
            kwargs = {**kwargs, "images": IMAGES, "labels": labels}
        outcomes.setdefault(check, set()).add(check_outcome(check, tuple(local[n] for n in names), kwargs)[0])
    assert all(o == {"passed", "CheckFailure"} for o in outcomes.values()), outcomes
    assert set(outcomes) == {n for module in (grading.rnn_checks, grading.sequence_checks)
                             for n, f in vars(module).items() if is_sandbox_ready(f)}
