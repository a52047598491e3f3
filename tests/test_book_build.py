"""The book command never passes with a stale or broken page (_ext/fresh_execution.py).

Each test builds a tiny book (the project's _config.yml and extensions, a toc of one or two small
notebooks, execution on as in `make book`) several times in a temporary folder, with the book
command of the Makefile (`jupyter-book build ... -W --keep-going`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT

JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"

# the strings the tests look for are assembled at run time, so that they appear only in outputs
FAILS_ON_REQUEST = """import os
assert not os.path.exists("FAIL"), "this chapter was told " + "to fail"
print("ran " + "to the end")"""

# course_lib.pool takes conv_output_size from course_lib.conv: the chapter imports conv only through pool
USES_THE_LIBRARY = """from course_lib import pool
print("pooled " + "size:", pool.conv_output_size(28, 2, 2))"""


def make_book(folder: Path, chapters: dict[str, str]) -> Path:
    """A book with the project's configuration and one one-cell notebook per chapter."""
    folder.mkdir()
    shutil.copytree(ROOT / "_ext", folder / "_ext")
    (folder / "_extra").symlink_to(ROOT / "_extra")
    for name in ("references.bib", "_static"):  # named by _config.yml (bibtex_bibfiles, html_static_path)
        (folder / name).symlink_to(ROOT / name)
    (folder / "intro.md").write_text("# A tiny book\n\nFor the build tests.\n")
    (folder / "chapters").mkdir()
    for name, code in chapters.items():
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
        nb.cells = [nbformat.v4.new_markdown_cell(f"# Chapter {name}"), nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, folder / "chapters" / f"{name}.ipynb")
    toc = {"format": "jb-book", "root": "intro", "chapters": [{"file": f"chapters/{n}"} for n in chapters]}
    (folder / "_toc.yml").write_text(yaml.safe_dump(toc))
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache", "the book is expected to execute with jupyter-cache"
    assert "fresh_execution" in config["sphinx"]["local_extensions"], "_config.yml must load _ext/fresh_execution.py"
    config["execute"]["timeout"] = 120
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    return folder


def build(book: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(JUPYTER_BOOK), "build", str(book), "-W", "--keep-going"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def page(book: Path, name: str) -> str:
    return (book / "_build" / "html" / "chapters" / f"{name}.html").read_text(encoding="utf-8")


def log(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-3000:]


@pytest.mark.notebook
def test_a_failed_chapter_fails_every_build_until_it_runs(tmp_path):
    # Bug caught: Sphinx sees no changed source after a failed execution and the second build
    # "succeeds" with the traceback still on the page (issue 18).
    book = make_book(tmp_path / "book", {"fails": FAILS_ON_REQUEST, "fine": 'print("nothing to see")'})
    (book / "chapters" / "FAIL").touch()  # the failure is outside the source, like a cell timeout
    first = build(book)
    assert first.returncode != 0, "the chapter raised, yet the build passed:\n" + log(first)
    assert "told to fail" in page(book, "fails")
    second = build(book)
    assert second.returncode != 0, "the second build passed with the failed chapter's page:\n" + log(second)
    assert "Executing notebook" in second.stdout, "the failed chapter was not executed again:\n" + log(second)
    (book / "chapters" / "FAIL").unlink()
    third = build(book)
    assert third.returncode == 0, "the chapter runs now, yet the build failed:\n" + log(third)
    html = page(book, "fails")
    assert "ran to the end" in html and "told to fail" not in html and "Traceback" not in html
    fourth = build(book)  # nothing failed or changed: nothing is executed again
    assert fourth.returncode == 0 and "Executing notebook" not in fourth.stdout, log(fourth)


@pytest.mark.notebook
def test_a_library_change_re_executes_the_chapters_that_import_it(tmp_path):
    # Bug caught: jupyter-cache keys on the code cells only, so the page kept the old library's
    # output until `make clean` (issue 19). The change is in course_lib.conv, which the chapter
    # reaches only through course_lib.pool (transitive import).
    library = tmp_path / "lib"
    shutil.copytree(ROOT / "course_lib", library / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(library)}  # the build and its kernels import this copy
    book = make_book(tmp_path / "book", {"pooling": USES_THE_LIBRARY, "plain": 'print("no library here")'})
    first = build(book, env)
    assert first.returncode == 0, log(first)
    assert "pooled size: 14" in page(book, "pooling")
    unchanged = build(book, env)
    assert unchanged.returncode == 0 and "Executing notebook" not in unchanged.stdout, (
        "nothing changed, yet a chapter was executed again:\n" + log(unchanged))
    with (library / "course_lib" / "conv.py").open("a") as conv:
        conv.write("\n\ndef conv_output_size(*args, **kwargs):  # the test's change\n    return 12345\n")
    second = build(book, env)
    assert second.returncode == 0, log(second)
    assert "pooled size: 12345" in page(book, "pooling"), "the page still shows the old library's output"
    assert second.stdout.count("Executing notebook") == 1, (
        "only the chapter that imports course_lib should run again:\n" + log(second))
    (library / "course_lib" / "unused_module.py").write_text("X = 1\n")  # a module nobody imports
    third = build(book, env)
    assert third.returncode == 0 and "Executing notebook" not in third.stdout, log(third)


def test_nbnormalize_keeps_alt_text_and_caption_metadata():
    # Bug caught: normalising a chapter dropped the cell metadata that gives its plots alt text and
    # captions on the site (nbnormalize kept only tags and nbgrader's keys).
    sys.path.insert(0, str(ROOT / "tools"))
    from nbnormalize import normalize

    mystnb = {"image": {"alt": "a line plot"}, "figure": {"caption": "Loss per epoch", "name": "fig-loss"}}
    nb = {"cells": [{"cell_type": "code", "metadata": {"mystnb": mystnb, "collapsed": True}, "source": "1",
                     "outputs": [], "execution_count": 3}], "metadata": {}}
    assert normalize(nb)["cells"][0]["metadata"] == {"mystnb": mystnb}
