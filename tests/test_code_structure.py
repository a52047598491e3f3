"""The shape of the code, measured: no import circle in ``course_lib``, short files and functions in
``course_lib/grading`` (issue 13: a newcomer can repeat these numbers).

Each test fails on the bug it names: an import of ``course_lib.grading.autograder.session`` added to
``proxy.py`` (even inside a function) closes a circle; a 401-line file or a 51-line function in
``course_lib/grading`` exceeds its limit. :func:`test_the_measurements_can_fail` shows each measure
catching such a case on made-up sources.
"""
from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_lib"
GRADING = PACKAGE / "grading"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 50


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The ``known`` modules that ``tree`` (the module ``name``) imports anywhere, functions included.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``; a
    relative import is resolved against ``name``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                       for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def import_graph(files: dict[str, str]) -> dict[str, set[str]]:
    """``module -> modules it imports`` for ``{module name: source}`` (packages named ``x/__init__``)."""
    names = {n.removesuffix(".__init__"): n.endswith(".__init__") for n in files}
    graph = {}
    for raw, source in files.items():
        name = raw.removesuffix(".__init__")
        # A submodule's import of its (already initialising) parent package is not an edge; an import of
        # a name from the package itself (``from course_lib.grading import check_x``) is.
        graph[name] = imported(ast.parse(source), name, names[name], set(names))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``), or ``None``; depth-first search with colours."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    """``(name, lines)`` of every function or method of ``source`` longer than ``limit`` lines."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]


def _sources(folder: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.py"))}


def test_course_lib_has_no_import_circle():
    graph = import_graph({module_name(p).replace(".__init__", "") + (".__init__" if p.name == "__init__.py" else ""): s
                          for p, s in _sources(PACKAGE).items()})
    assert "course_lib.grading.autograder.session" in graph["course_lib.grading.autograder.cli"]
    assert (cycle := find_cycle(graph)) is None, "import circle: " + " -> ".join(cycle)


def test_grading_files_are_short():
    long = {str(p.relative_to(ROOT)): s.count("\n") for p, s in _sources(GRADING).items()
            if s.count("\n") > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_grading_functions_are_short():
    long = {str(p.relative_to(ROOT)): found for p, s in _sources(GRADING).items()
            if (found := long_functions(s, MAX_FUNCTION_LINES))}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_measurements_can_fail():
    # a circle through an import inside a function, and one through a package's __init__
    assert find_cycle(import_graph({"p.__init__": "", "p.a": "from p import b\n",
                                    "p.b": "def f():\n    from p.a import x\n"})) == ["p.a", "p.b", "p.a"]
    assert find_cycle(import_graph({"p.__init__": "from p.a import x\n", "p.a": "import p.b\n",
                                    "p.b": "x = 1\n"})) is None
    assert find_cycle(import_graph({"p.__init__": "from p.a import x\n", "p.a": "from p import y\n"})) \
        == ["p", "p.a", "p"]
    assert find_cycle(import_graph({"p.__init__": "from p.a import x\n", "p.a": "from .b import y\n",
                                    "p.b": "from . import a\n"})) is not None
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}\n", MAX_FUNCTION_LINES) == [("f", MAX_FUNCTION_LINES + 1)]
    assert long_functions(f"class C:\n    def g(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n",
                          MAX_FUNCTION_LINES) == [("g", MAX_FUNCTION_LINES + 1)]
