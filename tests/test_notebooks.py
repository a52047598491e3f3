"""Every chapter runs top to bottom under papermill with its small test parameters."""
from __future__ import annotations

import json

import pytest

from conftest import chapter_notebooks, execute_chapter, fast_parameters

NOTEBOOKS = chapter_notebooks()


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_chapter_executes(notebook):
    executed = json.loads(execute_chapter(notebook).read_text(encoding="utf-8"))
    code_cells = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert code_cells, f"{notebook.name} has no code"
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{notebook.name} raised: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    images = [o for c in code_cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{notebook.name} produced no figure"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_chapter_has_parameters_cell(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name} needs exactly one cell tagged 'parameters', found {len(tagged)}"
    params = fast_parameters(notebook)
    for name in params:
        assert f"{name} =" in tagged[0]["source"], (
            f"{notebook.name}: test parameter {name!r} is not set in its parameters cell")
