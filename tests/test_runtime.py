"""course_lib.device and seed_everything."""
from __future__ import annotations

import pytest
import torch

import course_lib


def test_device_defaults_and_overrides(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert course_lib.device().type == expected
    assert course_lib.device("cpu").type == "cpu"
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert course_lib.device().type == "cpu"
    assert course_lib.device("auto").type == "cpu"  # "auto" lets the variable decide
    monkeypatch.setenv("COURSE_DEVICE", "auto")
    assert course_lib.device("auto").type == expected
    monkeypatch.setenv("COURSE_DEVICE", "meta")
    assert course_lib.device("cpu").type == "cpu"  # a device the notebook names beats the variable


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        course_lib.device("cuda")


def test_seed_everything_repeats_runs():
    course_lib.seed_everything(3)
    a = torch.randn(5)
    gen = course_lib.seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    assert torch.equal(torch.randn(2, generator=gen), torch.randn(2, generator=torch.Generator().manual_seed(3)))
