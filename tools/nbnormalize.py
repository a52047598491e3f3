"""Strip outputs and normalise metadata of notebooks, so that diffs stay readable.

    python tools/nbnormalize.py [--check] [NOTEBOOK ...]   (default: every tracked *.ipynb)

Keeps the cell tags (``parameters``, ``hide-input``), myst-nb's figure metadata, nbgrader's cell metadata, Jupyter's ``deletable``/``editable``
locks and the notebook's ``course`` metadata (its fast test parameters); drops outputs, execution
counts, ids and editor state.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}
# "deletable"/"editable" lock nbgrader cells in Jupyter; "mystnb" holds a figure's caption, name and alt text
KEPT_CELL_METADATA = ("tags", "nbgrader", "deletable", "editable", "mystnb")
KEPT_NOTEBOOK_METADATA = ("course",)


def normalize(nb: dict) -> dict:
    """The notebook as it must be committed."""
    cells = []
    for index, cell in enumerate(nb["cells"]):
        source = cell["source"]
        if isinstance(source, list):
            source = "".join(source)
        meta = {k: cell.get("metadata", {})[k] for k in KEPT_CELL_METADATA if k in cell.get("metadata", {})}
        out = {"cell_type": cell["cell_type"], "id": f"c{index:03d}", "metadata": meta, "source": source.rstrip("\n")}
        if cell["cell_type"] == "code":
            out.update(execution_count=None, outputs=[])
        cells.append(out)
    metadata = {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO}
    metadata.update({k: nb["metadata"][k] for k in KEPT_NOTEBOOK_METADATA if k in nb.get("metadata", {})})
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def tracked_notebooks() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.ipynb"], capture_output=True, text=True, check=True).stdout
    return [Path(p) for p in out.split()]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or tracked_notebooks()
    bad = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        wanted = dumps(normalize(json.loads(text)))
        if text != wanted:
            bad.append(path)
            if not check:
                path.write_text(wanted, encoding="utf-8")
    if check and bad:
        print("not normalised (run: python tools/nbnormalize.py):", *map(str, bad), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
