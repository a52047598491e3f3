"""The one way a check reads a submitted model's weights: nothing in the file is ever unpickled.

A ``.safetensors`` file is read with safetensors; any other file with ``torch.load(weights_only=True)``,
which refuses every object but tensors and plain containers. A whole pickled model
(``torch.save(model, path)``), a file with custom classes or a missing file fails the check with a
:class:`~course_lib.grading.compare.CheckFailure` that says what to save instead.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from course_lib.grading.compare import fail

SAVE_HINT = "torch.save(model.state_dict(), path) or safetensors.torch.save_file(model.state_dict(), path)"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict saved in ``path`` (``name -> tensor``, as a plain dict), read without unpickling."""
    path = Path(path)
    check, params = "load_state_dict_file", f"path={str(path)!r}"
    if not path.is_file():
        raise fail(check, path.name, params, f"no weights file {path.name} next to the notebook: train your model, "
                   f"save its state_dict there ({SAVE_HINT}) and submit the file with the notebook")
    try:
        state = load_file(str(path), device="cpu") if path.suffix == ".safetensors" else \
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever the loader refuses, the student gets one clear reason
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise fail(check, path.name, params,
                   f"{path.name} is not a plain state_dict: it cannot be read with torch.load(weights_only=True), "
                   f"so it is not graded (the grader never unpickles code). Save only the tensors: {SAVE_HINT}. "
                   f"The loader said: {first}") from None
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                           for k, v in state.items()):
        raise fail(check, path.name, params, f"{path.name} must hold a state_dict (a dict of names to tensors), "
                   f"got {type(state).__name__}; save it with {SAVE_HINT}")
    return dict(state)  # a plain dict (torch.load gives an OrderedDict)
