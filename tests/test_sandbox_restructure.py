"""The student's code changes the layers of a module; the grader's side must see the same module after the call.

Fine-tuning replaces a layer of the network it is given (``model.classifier[-1] = nn.Linear(...)``);
a student's function may also add or delete layers of its own model. Without structural sync the
grader would go on with the old layers (only tensor values crossed back). Reference: the same
change made directly to a twin module in this interpreter.
"""
from __future__ import annotations

import copy
import json
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib.grading.autograder import module_codec, module_sync, protocol
from course_lib.grading.autograder.mirror import StudentModule, resolve_mirror
from course_lib.grading.autograder.jail import Limits
from course_lib.grading.autograder.session import Session, proxies
from course_lib.models.fashion_cnn import fashion_cnn_small

CODE = [textwrap.dedent("""
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self, inputs, outputs):
            super().__init__()
            self.fc = nn.Linear(inputs, outputs)

        def forward(self, x):
            return self.fc(x)

    def new_head(model, num_classes):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
        for p in model.features.parameters():
            p.requires_grad = False
        return model

    def own_head(model, num_classes):
        model.classifier[-1] = Head(model.classifier[-1].in_features, num_classes)
        return model

    def new_head_then_fail(model, num_classes):
        new_head(model, num_classes)
        raise ValueError("changed my mind")

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def grow(model):
        del model[1]
        model.insert(1, nn.Tanh())
        model.append(Head(3, 2))
        return None

    def build_square():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))

    def tie(model):
        model[2].weight = model[0].weight  # one tensor in two places
        return None
""")]


@pytest.fixture(scope="module")
def remote():
    session = Session(Path(tempfile.mkdtemp()), CODE, Limits(call_timeout=60), slot=7, budget=600)
    session.ensure()
    assert session.events == []
    yield proxies(session)
    session.stop()


def _direct() -> dict:
    namespace: dict = {"__name__": "__main__"}
    exec(compile(CODE[0], "<cell 0>", "exec"), namespace)
    return namespace


def test_a_layer_replaced_in_the_graders_module(remote):
    """The grader's own network, passed to the student, comes back with the new head, in place."""
    torch.manual_seed(1)
    model = fashion_cnn_small(num_classes=5)
    twin = copy.deepcopy(model)
    first_conv, classifier = model.features[0][0].weight, model.classifier
    out = remote["new_head"](model, 3)
    _direct()["new_head"](twin, 3)
    assert out is model and model.classifier is classifier and model.features[0][0].weight is first_conv
    assert type(model.classifier[-1]) is nn.Linear and model.classifier[-1].out_features == 3
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.2.weight", "classifier.2.bias"]
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}
    x = torch.rand(2, 1, 28, 28)
    twin.classifier[-1].load_state_dict(model.classifier[-1].state_dict())  # the new head's weights are random
    torch.testing.assert_close(model.eval()(x), twin.eval()(x))


def test_a_change_before_an_exception_still_crosses(remote):
    model = fashion_cnn_small(num_classes=5)
    with pytest.raises(ValueError, match="changed my mind"):
        remote["new_head_then_fail"](model, 2)
    assert model.classifier[-1].out_features == 2  # as it would be after a direct call


def test_a_students_layer_cannot_enter_the_graders_module(remote):
    """The grader's module runs here: it may take torch.nn layers only, never a student's class."""
    model = fashion_cnn_small(num_classes=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match="only torch.nn layers .* not the class Head"):
        remote["own_head"](model, 3)
    assert type(model.classifier[-1]) is nn.Linear and model.classifier[-1].out_features == 5
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_students_own_model_changed_by_another_call(remote):
    """A remote module (the student's, behind a handle) gains, loses and replaces layers; its mirror follows,
    forward runs the new layers, and a layer taken out no longer answers."""
    model, twin = remote["build"](), _direct()["build"]()
    removed, kept = model[1], model[0]
    assert remote["grow"](model) is None
    _direct()["grow"](twin)
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear", "Head"]
    assert model[0] is kept and isinstance(model[3], StudentModule)
    twin[3].load_state_dict(model[3].state_dict())  # the new Head's weights are random
    x = torch.randn(5, 4)
    torch.testing.assert_close(model(x), twin(x))
    torch.testing.assert_close(model[3](model[2](model[1](model[0](x)))), twin(x))  # layer by layer
    with pytest.raises(RuntimeError, match="taken out of its module"):
        removed(x)
    model[0].weight.data.fill_(0.5)  # a change here still reaches the worker's module
    twin[0].weight.data.fill_(0.5)
    torch.testing.assert_close(model(x), twin(x))


def test_a_tensor_tied_to_another_layer(remote):
    model, twin = remote["build_square"](), _direct()["build_square"]()
    remote["tie"](model)
    _direct()["tie"](twin)
    assert model[2].weight is model[0].weight
    with torch.no_grad():
        model[0].weight.mul_(-1)  # both places change, here and in the worker
        twin[0].weight.mul_(-1)
    x = torch.randn(2, 4)
    torch.testing.assert_close(model(x), twin(x))


# --------------------------------------------------------------------------------------------- no sandbox
def _described(module):
    description, nodes = module_codec.describe(module)
    return module_codec.validate(protocol.decode(json.loads(json.dumps(protocol.encode(description))), grad=[])), nodes


def test_restructure_keeps_the_objects_it_can():
    old = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    copy_here = module_codec.rebuild(_described(old)[0], resolve_mirror)
    weight = copy_here[1].weight
    new = copy.deepcopy(old)
    new[2] = nn.Linear(8, 5)
    with torch.no_grad():
        new[0].weight.add_(1)
    description, nodes = _described(new)
    provenance = [0, 1, 2, None]
    out = module_sync.restructure(copy_here, description, provenance, module_codec.torch_class)
    assert out[0] is copy_here[0] and out[0][0] is out[1] and out[1].weight is weight
    torch.testing.assert_close(weight, new[0].weight)
    assert out[0][2] is out[3] and out[3].out_features == 5


@pytest.mark.parametrize("provenance, why", [
    ([1, 1, 2, None], "malformed provenance"),   # the root replaced
    ([0, 1, 1, None], "malformed provenance"),   # one old layer twice
    ([0, 1, 2, 9], "malformed provenance"),      # no such layer
    ([0, 1, 2], "malformed provenance"),         # too short
    ([0, 2, 1, None], "claims to be"),           # a ReLU that says it is a Linear
])
def test_a_forged_provenance_is_refused_and_changes_nothing(provenance, why):
    old = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    before = copy.deepcopy(old)
    new = copy.deepcopy(old)
    new[2] = nn.Linear(8, 5)
    description, _ = _described(new)
    nodes = [old] + list(old)
    with pytest.raises(module_codec.ModuleError, match=why):
        module_sync.restructure(nodes, description, provenance, module_codec.torch_class)
    assert [type(m) for m in old] == [type(m) for m in before] and old[2].out_features == 3


def test_only_torch_layers_by_their_exact_name():
    assert module_codec.torch_class("torch.nn.modules.linear.Linear") is nn.Linear
    for name in ("__main__.Linear", "torch.nn.modules.conv.Linear", "course_lib.models.fashion_cnn.FashionCNN",
                 "torch.nn.modules.module.Module.__subclasses__"):
        with pytest.raises(module_codec.ModuleError, match="only torch.nn layers"):
            module_codec.torch_class(name)


# --------------------------------------------------------------------------------------------- forged replies
FORGER = textwrap.dedent("""
    import sys

    def forge(model, evil_class, provenance):
        worker = sys.modules["__main__"]  # the worker module itself: the student can patch it
        real = worker.Objects.finish

        def finish(self, reply):
            real(self, reply)
            description, nodes = worker.module_codec.describe(self.uploads[0].nodes[0])
            if evil_class:
                description["nodes"][-1]["class"] = evil_class
            order = provenance or [0] + [None] * (len(nodes) - 1)
            reply.restructure = [["u", 0, worker.protocol.encode({"module": description, "provenance": order})]]
            worker.Objects.finish = real

        worker.Objects.finish = finish
        return model
""")


@pytest.mark.parametrize("evil_class, provenance, error", [
    ("course_lib.grading.autograder.cli.Anything", None, "only torch.nn layers"),       # a class the grader would import
    (None, "swapped", "cannot accept"),                                     # a ReLU claiming to be a Conv2d
])
def test_a_forged_restructure_changes_nothing_of_the_graders(evil_class, provenance, error):
    session = Session(Path(tempfile.mkdtemp()), [FORGER], Limits(call_timeout=60), slot=7, budget=600)
    try:
        session.ensure()
        model = fashion_cnn_small(num_classes=5)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        layers = [type(m) for m in model.modules()]
        if provenance == "swapped":
            n = len(layers)
            provenance = [0, 1, 2, 4, 3] + list(range(5, n))  # conv and BN of the first stage swapped
        with pytest.raises((TypeError, RuntimeError), match=error):
            proxies(session)["forge"](model, evil_class, provenance)
        assert [type(m) for m in model.modules()] == layers
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    finally:
        session.stop()
