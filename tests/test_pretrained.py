"""course_lib.pretrained: the course's own pretrained network (Fashion-MNIST classes 0–4) trains to a
sensible accuracy, is cached as a plain state_dict and read back with ``weights_only=True``."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from course_lib import pretrained
from course_lib.data import load_fashion_mnist


def _accuracy(model: nn.Module, classes) -> float:
    """Plain accuracy on the test images of ``classes`` (labels unchanged: classes 0–4 are 0–4)."""
    images, labels = load_fashion_mnist("test")
    keep = torch.isin(labels, torch.tensor(list(classes)))
    with torch.no_grad():
        return float((model(images[keep]).argmax(1) == labels[keep]).double().mean())


def test_trains_caches_and_reloads_without_training(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "data_root", lambda: tmp_path)
    model = pretrained.fashion_cnn_clothes_0_4(train_size=2000, epochs=1)
    path = tmp_path / "checkpoints" / "fashion_cnn_small_classes0-4_n2000_e1_seed0.pt"
    assert path.is_file(), "the checkpoint was not cached under data_root()/checkpoints"
    assert not model.training and model.classifier[-1].out_features == 5
    assert _accuracy(model, range(5)) > 0.6, "chance is 0.2: the small budget did not learn"

    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setattr(pretrained, "fit", lambda *a, **k: pytest.fail("trained again although the cache exists"))
    again = pretrained.fashion_cnn_clothes_0_4(train_size=2000, epochs=1)
    assert loads == [True], f"the cache must be read with torch.load(weights_only=True), got {loads}"
    state = again.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()), "the reloaded weights differ"


def test_a_pickled_cache_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "data_root", lambda: tmp_path)
    path = pretrained.checkpoint_path(500, 1, 0)
    path.parent.mkdir(parents=True)
    torch.save(nn.Linear(2, 2), path)  # a whole pickled module, not a state_dict
    with pytest.raises(pickle.UnpicklingError):
        pretrained.fashion_cnn_clothes_0_4(train_size=500, epochs=1)


def test_the_assignments_network_is_a_good_clothes_classifier():
    """The default budget (what assignment 3 fine-tunes; trained once per machine, ~35 s of CPU)."""
    model = pretrained.fashion_cnn_clothes_0_4()
    assert pretrained.checkpoint_path(10_000, 2, 0).is_file()
    assert _accuracy(model, range(5)) > 0.88  # measured 0.908 (pullover vs coat is the hard pair)
    assert _accuracy(model, range(5)) == _accuracy(pretrained.fashion_cnn_clothes_0_4(), range(5))


def test_bad_budget_is_refused():
    with pytest.raises(ValueError, match="must be positive, got 0, 2"):
        pretrained.fashion_cnn_clothes_0_4(train_size=0)
