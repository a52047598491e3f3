"""The book's cross-references that no build catches by itself.

* every ``{cite}`` key of the chapters is an entry of ``references.bib`` (a typo would only show as a
  Sphinx warning in a full build), and the bibliography is configured and in the table of contents;
* every chapter an assignment says it mirrors exists in the book under that title (the title is the
  chapter's first heading, without its number);
* no chapter prints, with ``show_source``, the course library's code that an assignment grades as
  the student's answer (:data:`course_lib.grading.forbidden_ops.ANSWERS`).
"""
from __future__ import annotations

import ast
import importlib
import json
import re
import types
from pathlib import Path

import pytest
import yaml
from pybtex.database import parse_file

from conftest import ROOT

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
ITALIC = re.compile(r"(?<![*\w])\*([^*\n]+(?:\n[^*\n]+)?)\*(?![*\w])")


def markdown_sources():
    """(page, text) for every Markdown cell of the chapters and every Markdown page of the book."""
    for notebook in sorted((ROOT / "chapters").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "markdown":
                yield notebook.name, "".join(cell["source"])
    for page in [ROOT / "intro.md", ROOT / "references.md", *sorted((ROOT / "chapters").glob("*.md"))]:
        yield page.name, page.read_text(encoding="utf-8")


def cited_keys():
    return {(page, key.strip()) for page, text in markdown_sources()
            for group in CITE.findall(text) for key in group.split(",")}


def test_every_citation_is_in_references_bib():
    entries = set(parse_file(str(ROOT / "references.bib")).entries)
    cited = cited_keys()
    assert len({key for _, key in cited}) >= 40, "the chapters should cite the papers they mention"
    missing = sorted(f"{page}: {key}" for page, key in cited if key not in entries)
    assert not missing, f"cited but not in references.bib: {missing}"


def test_bibliography_is_configured_and_in_the_toc():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "references.bib" in config.get("bibtex_bibfiles", []), "_config.yml: bibtex_bibfiles must list references.bib"
    toc = (ROOT / "_toc.yml").read_text()
    assert re.search(r"file:\s*references\b", toc), "_toc.yml has no references page"
    assert "{bibliography}" in (ROOT / "references.md").read_text(), "references.md has no {bibliography}"


def test_reading_list_of_the_lectures_is_in_the_bibliography():
    entries = parse_file(str(ROOT / "references.bib")).entries
    reading = [k for k, e in entries.items() if "reading" in e.fields.get("keywords", "")]
    # the six "Полезные материалы" of the lecture on training in practice
    assert len(reading) == 6, f"expected the lecture's 6 reading-list entries, found {reading}"


def chapter_titles() -> dict[str, str]:
    """Chapter title (first heading without its number) -> file, for every chapter in _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    titles = {}
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            path = ROOT / chapter["file"]
            if path.with_suffix(".ipynb").is_file():
                first = json.loads(path.with_suffix(".ipynb").read_text(encoding="utf-8"))["cells"][0]["source"]
                text = "".join(first)
            else:
                text = path.with_suffix(".md").read_text(encoding="utf-8")
            heading = next(line for line in text.splitlines() if line.startswith("# "))
            titles[re.sub(r"^#\s+(\d+\.\s+)?", "", heading).strip()] = chapter["file"]
    return titles


ASSIGNMENTS = sorted((ROOT / "assignments").glob("*/*.ipynb")) + sorted((ROOT / "solutions").glob("*/*.ipynb"))


@pytest.mark.parametrize("notebook", ASSIGNMENTS, ids=[f"{nb.parent.parent.name}/{nb.stem}" for nb in ASSIGNMENTS])
def test_assignment_names_chapters_that_exist(notebook):
    intro = "".join(json.loads(notebook.read_text(encoding="utf-8"))["cells"][0]["source"])
    sentence = re.search(r"mirrors the chapters? (.+?)\. ", intro, re.S)
    assert sentence, f"{notebook.name}: the first cell should say which chapter(s) it mirrors"
    named = [" ".join(name.split()) for name in ITALIC.findall(sentence.group(1))]
    assert named, f"{notebook.name}: no chapter title in italics in {sentence.group(0)!r}"
    titles = chapter_titles()
    unknown = [name for name in named if name not in titles]
    assert not unknown, f"{notebook.name} names chapters that are not in the book: {unknown}; the book's are {sorted(titles)}"


GRADED_IN = re.compile(r"\{download\}`assignment (\d), part (\d+) <\.\./(assignments/(a(\d)_\w+)/\4\.ipynb)>`")
PART = re.compile(r"^## Part (\d+) — .*$", re.M)


def assignment_parts(notebook: Path) -> dict[int, str]:
    """Part number -> its heading, for the released ``notebook``."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return {int(m.group(1)): m.group(0) for m in PART.finditer(text)}


def test_chapter_links_to_assignment_parts_resolve_and_cover_every_autograded_part():
    linked = set()
    for page, text in markdown_sources():
        for number, part, path, name, prefix in GRADED_IN.findall(text):
            notebook = ROOT / path
            assert notebook.is_file(), f"{page} links to {path}, which is not a released assignment"
            assert number == prefix, f"{page}: 'assignment {number}' links to {name}"
            assert int(part) in assignment_parts(notebook), f"{page} links to part {part} of {name}, which has no such part"
            linked.add((name, int(part)))
    for notebook in sorted((ROOT / "assignments").glob("*/*.ipynb")):
        for part, heading in assignment_parts(notebook).items():
            if "graded by hand" not in heading:  # the written answers are linked through their topic's parts
                assert (notebook.stem, part) in linked, f"no chapter section links to {notebook.stem}, {heading!r}"


def imported_names(tree: ast.Module) -> dict[str, str]:
    """Name bound by an import of the chapter -> the dotted name it stands for."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def chapter_code(notebook: Path) -> ast.Module:
    """All the code cells of ``notebook`` as one module (IPython's %magic and !shell lines left out)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    source = "\n".join(line for cell in cells if cell["cell_type"] == "code"
                       for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
    return ast.parse(source, filename=str(notebook))


def shown_sources(notebook: Path) -> list[str]:
    """The dotted name behind every ``show_source(X)`` of ``notebook``, X traced through its imports."""
    tree = chapter_code(notebook)
    bound = imported_names(tree)
    shown = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "show_source":
            expr = ast.unparse(node.args[0])
            head, _, rest = expr.partition(".")
            assert head in bound, f"{notebook.name}: show_source({expr}) shows a name not imported from a module"
            shown.append(".".join(filter(None, [bound[head], rest])))
    return shown


def find(dotted: str):
    """The object of a dotted name: the longest importable prefix is the module, the rest attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def code_of(obj) -> set:
    """The code objects whose source printing ``obj`` shows: its own (and what it wraps), or a class's methods'."""
    members = vars(obj).values() if isinstance(obj, type) else [obj]
    codes = set()
    for member in members:
        member = getattr(member, "__func__", member)  # staticmethod, classmethod
        member = getattr(member, "fget", member)  # property
        while isinstance(member, types.FunctionType):
            codes.add(member.__code__)
            member = getattr(member, "__wrapped__", None)
    return codes


CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[nb.stem for nb in CHAPTERS])
def test_chapter_prints_no_graded_answer(notebook):
    """Issue 14: the chapter states the idea; the code that an assignment grades is the reader's to write."""
    from course_lib.grading.forbidden_ops import ANSWERS

    answers = {name: code_of(find(name)) for names in ANSWERS.values() for name in names}
    printed = [(shown, name) for shown in shown_sources(notebook) for name, codes in answers.items()
               if code_of(find(shown)) & codes]
    assert not printed, (f"{notebook.name} prints graded answers with show_source: "
                         + "; ".join(f"{shown} (the answer {name})" for shown, name in printed))
