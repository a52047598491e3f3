"""Assignment 3's plain-data checks give the same verdict on a student's code called directly and sandboxed.

As in ``test_sandbox_remote.py``: the solution's cells and plausible wrong answers run in this
interpreter and in one sandboxed worker; each check call must end the same way on both sides. The
generator that ``check_random_crop_flip`` hands the student crosses as its state; a student who draws
from the global generator instead fails the same way on both sides (the grader's global RNG state
travels with every call and comes back). The fine-tuning check hands the student the grader's own
network, whose head the student replaces: the new layers cross back (``modules.restructure``).
"""
from __future__ import annotations

import json
import re
import textwrap

import pytest
import torch

import course_lib.grading as grading
from conftest import ROOT
from grading_support import check_outcome

from course_lib.grading.autograder.jail import Limits
from course_lib.models.fashion_cnn import fashion_cnn_large, fashion_cnn_small
from course_lib.grading.autograder.session import Session, proxies, unsupported

# an untrained network answers one class on noise: sklearn warns, the verdicts are still exact
pytestmark = pytest.mark.filterwarnings("ignore:(A single label|y_pred contains classes):UserWarning")

SOURCE = ROOT / "solutions" / "a3_training" / "a3_training.ipynb"


def _solution(grade_id: str) -> str:
    nb = json.loads(SOURCE.read_text(encoding="utf-8"))
    return next("".join(c["source"]) for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def variant(cell: str, renames: dict[str, str], old: str, new: str) -> str:
    source = _solution(cell)
    assert old in source, old
    source = source.replace(old, new)
    for a, b in renames.items():
        source = re.sub(rf"\b{a}\b", b, source)
    return source


CODE = [
    "import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n",
    _solution("augment"), _solution("balance"),
    _solution("schedule"), _solution("finetune"),
    variant("schedule", {"warmup_cosine_factor": "cosine_over_all_epochs"},
            "(epoch - warmup_epochs) / (total_epochs - warmup_epochs)", "(epoch - warmup_epochs) / total_epochs"),
    variant("finetune", {"prepare_finetune": "finetune_forgot_freeze"}, "p.requires_grad = not freeze", "pass"),
    variant("finetune", {"prepare_finetune": "finetune_fresh_network"}, "old = model.classifier[-1]",
            "old = model.classifier[-1]\n    model.features[0][0].reset_parameters()"),
    variant("finetune", {"prepare_finetune": "finetune_sequential_head"},
            "nn.Linear(old.in_features, num_classes)", "nn.Sequential(nn.Dropout(0.1), nn.Linear(old.in_features, num_classes))"),
    variant("augment", {"random_crop_flip": "crop_flip_global_rng"}, "generator=generator", "generator=None"),
    variant("augment", {"random_crop_flip": "crop_flip_vertical"}, "crop.flip(-1)", "crop.flip(-2)"),
    variant("balance", {"class_weights": "weights_unnormalised", "sample_weights": "unused1", "balanced_accuracy": "unused2"},
            "len(labels) / (num_classes * counts)", "1.0 / counts"),
    variant("balance", {"balanced_accuracy": "plain_accuracy", "class_weights": "unused1", "sample_weights": "unused2"},
            "recalls = [", "recalls = [(predictions == labels).double().mean()] or ["),
    textwrap.dedent("""
    import random
    import numpy as np
    def draw_three():  # the global generators of Python, NumPy and torch
        return [random.random(), float(np.random.rand()), float(torch.rand(()))]
    def sample_weights_by_count(labels):  # proportional to n_c instead of 1 / n_c
        return torch.bincount(labels).double()[labels]
    def build_small():
        from course_lib.models.fashion_cnn import fashion_cnn_small
        return fashion_cnn_small(num_classes=5)
    """),
]

CASES = [
    ("check_random_crop_flip", ("random_crop_flip",), {}),
    ("check_random_crop_flip", ("crop_flip_global_rng",), {}),
    ("check_random_crop_flip", ("crop_flip_vertical",), {}),
    ("check_class_weights", ("class_weights",), {}),
    ("check_class_weights", ("weights_unnormalised",), {}),
    ("check_sample_weights", ("sample_weights",), {"cases": [((1, 1, 2, 8), 6)]}),
    ("check_sample_weights", ("sample_weights_by_count",), {}),
    ("check_balanced_accuracy", ("balanced_accuracy",), {}),
    ("check_balanced_accuracy", ("plain_accuracy",), {}),
    ("check_warmup_cosine", ("warmup_cosine_factor",), {}),
    ("check_warmup_cosine", ("warmup_cosine_factor",), {"cases": [(0.05, 1, 6), (0.01, 4, 9), (3e-4, 2, 20)]}),
    ("check_warmup_cosine", ("cosine_over_all_epochs",), {}),
    ("check_finetune_setup", ("prepare_finetune", "build_small"), {}),
    ("check_finetune_setup", ("prepare_finetune", "build_large"), {"num_classes": 3}),
    ("check_finetune_setup", ("finetune_sequential_head", "build_small"), {}),
    ("check_finetune_setup", ("finetune_forgot_freeze", "build_small"), {}),
    ("check_finetune_setup", ("finetune_fresh_network", "build_small"), {}),
    ("check_model_balanced_accuracy", ("build_small",), {"min_score": 0.9}),
    ("check_model_balanced_accuracy", ("build_small",), {"min_score": 0.9, "wrong_labels": True}),
]

@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    local: dict = {"__name__": "__main__"}
    for number, cell in enumerate(CODE):
        exec(compile(cell, f"<cell {number}>", "exec"), local)
    torch.manual_seed(0)
    model = local["build_small"]().eval()
    torch.save(model.state_dict(), folder / "a3.pt")
    images = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        labels = model(images).argmax(1)  # balanced accuracy 1 on its own predictions
    session = Session(folder, CODE, Limits(call_timeout=120), slot=6, budget=900)
    session.ensure()
    assert session.events == []
    yield local, proxies(session), (str(folder / "a3.pt"), images, labels)
    session.stop()


GRADER = {  # the grader's own networks (built here on both sides, handed to the student's function)
    "build_small": lambda: fashion_cnn_small(num_classes=5),
    "build_large": lambda: fashion_cnn_large(num_classes=5),
}


def _call(side: dict, check: str, names, kwargs: dict, data) -> tuple[tuple, dict]:
    if check == "check_finetune_setup":
        return (side[names[0]], GRADER[names[1]]), kwargs
    args = tuple(side[n] for n in names)
    if check == "check_model_balanced_accuracy":
        path, images, labels = data
        kwargs = dict(kwargs)
        args += (path, images, (labels + 1) % 5 if kwargs.pop("wrong_labels", False) else labels)
    return args, kwargs


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1][0]}-{i}" for i, c in enumerate(CASES)])
def test_remote_outcome_equals_direct(sides, case):
    check, names, kwargs = case
    local, remote, data = sides
    direct = check_outcome(check, *_call(local, check, names, kwargs, data))
    sandboxed = check_outcome(check, *_call(remote, check, names, kwargs, data))
    assert sandboxed == direct
    assert direct[0] in ("passed", "CheckFailure")


def test_cases_cover_passes_and_failures(sides):
    local, _, data = sides
    outcomes: dict[str, set] = {}
    for check, names, kwargs in CASES:
        outcomes.setdefault(check, set()).add(check_outcome(check, *_call(local, check, names, kwargs, data))[0])
    assert all(o == {"passed", "CheckFailure"} for o in outcomes.values()), outcomes


def test_assignment_3_is_sandbox_ready():
    assert unsupported(SOURCE) == []


def test_generators_cross_as_their_state():
    from course_lib.grading.autograder import protocol

    g = torch.Generator().manual_seed(5)
    torch.rand(7, generator=g)
    back = protocol.decode(json.loads(json.dumps(protocol.encode(g))))
    assert type(back) is torch.Generator and back is not g
    assert torch.equal(torch.rand(4, generator=back), torch.rand(4, generator=g))
    for bad in ({"dtype": "uint8", "shape": [3], "data": "AAAA"}, {"dtype": "float32", "shape": [1], "data": "AAAAAA=="}):
        with pytest.raises(protocol.WireError):
            protocol.decode({"__generator__": bad})


def test_python_numpy_and_torch_random_states_travel_both_ways(sides):
    """Seeded here, drawn there: the same numbers as a direct call, and the next draws here go on
    from where the student's code left the generators."""
    import random

    import numpy as np

    local, remote, _ = sides
    runs = []
    for side in (local, remote):
        random.seed(3)
        np.random.seed(3)
        torch.manual_seed(3)
        runs.append((side["draw_three"](), side["draw_three"](), [random.random(), float(np.random.rand()),
                                                                   float(torch.rand(()))]))
    assert runs[1] == runs[0]
    assert len({x for run in runs[0] for x in run}) == 9  # every draw moved on


def test_a_malformed_random_state_is_refused():
    from course_lib.grading.autograder import protocol

    good = protocol.decode(json.loads(json.dumps(protocol.encode(protocol.random_states()))))
    protocol.set_random_states(good)
    for key, mutate in (("python", lambda s: s["python"].__setitem__(1, s["python"][1][:-1])),
                        ("numpy", lambda s: s["numpy"].__setitem__(0, "PCG64")),
                        ("numpy", lambda s: s["numpy"][1].__setitem__(0, 2**40)),
                        ("torch", lambda s: s.__setitem__("torch", s["torch"].float())),
                        ("keys", lambda s: s.pop("numpy"))):
        bad = protocol.decode(json.loads(json.dumps(protocol.encode(protocol.random_states()))))
        mutate(bad)
        with pytest.raises(protocol.WireError, match=key):
            protocol.set_random_states(bad)
