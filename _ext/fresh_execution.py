"""Executed pages that follow their code: a failed chapter is never served, a library change re-runs.

Sphinx re-reads a page only when its source file changed, and jupyter-cache keys an executed
notebook on its code cells only. Two consequences this extension removes:

* A chapter whose execution failed (a cell timeout, an exception) kept the page with the traceback,
  and the next build printed "build succeeded" because no source changed. Here, every page whose
  last execution failed (myst-nb's execution report, kept in the Sphinx environment) is read
  again on the next build, so it is re-executed until it succeeds, and the build fails each time.
* A change in ``course_lib`` left every executed page as it was. Here, a notebook's key also covers
  the ``course_lib`` modules it imports, followed transitively through their own ``course_lib``
  imports (found by reading the source, nothing is imported): jupyter-cache then finds no cached
  result for the new library and executes the chapter again, and Sphinx reads the page again.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
from pathlib import Path

LIBRARY = "course_lib"


def library_root() -> Path | None:
    """The folder of the ``course_lib`` package that the book's kernel imports (not imported here)."""
    spec = importlib.util.find_spec(LIBRARY)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _module_file(root: Path, name: str) -> Path | None:
    """``course_lib.a.b`` -> root/a/b.py or root/a/b/__init__.py."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.AST, package: str | None) -> set[str]:
    """Dotted ``course_lib`` module names a piece of code imports (``from x import y``: x and x.y)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                if package is None:
                    continue
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{anchor}.{node.module}" if node.module else anchor
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n == LIBRARY or n.startswith(LIBRARY + ".")}


def _with_parents(name: str) -> set[str]:
    """Importing ``course_lib.a.b`` runs ``course_lib/__init__.py`` and ``course_lib/a/__init__.py`` too."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _cell_imports(code: str) -> set[str]:
    """The course_lib modules one code cell names; IPython's magics and shell lines are left out."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())
    try:
        return _imported_names(ast.parse(code), None)
    except SyntaxError:  # other IPython syntax: the import statements are still recognisable
        return set(re.findall(r"^\s*(?:from|import)\s+(%s(?:\.\w+)*)" % LIBRARY, code, re.M))


def library_modules(cells: list[str], root: Path) -> dict[str, Path]:
    """Every ``course_lib`` module the code cells import, directly or through other course_lib modules."""
    todo = set().union(set(), *(_with_parents(n) for cell in cells for n in _cell_imports(cell)))
    found: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _module_file(root, name)
        if path is None:  # ``from course_lib.x import function``: not a module
            continue
        found[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported in _imported_names(ast.parse(path.read_text(encoding="utf-8")), package):
            todo |= _with_parents(imported) - set(found)
    return found


def notebook_code(nb) -> list[str]:
    return [cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            for cell in nb["cells"] if cell["cell_type"] == "code"]


def library_digest(nb) -> str:
    """A hash of the names and contents of the ``course_lib`` modules a notebook imports ("" if none)."""
    root = library_root()
    if root is None:
        return ""
    modules = library_modules(notebook_code(nb), root)
    if not modules:
        return ""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + modules[name].read_bytes() + b"\0")
    return digest.hexdigest()


def _patch_jupyter_cache():
    """jupyter-cache's notebook key (code cells + kernelspec) also covers the imported library."""
    from jupyter_cache.cache.main import JupyterCacheBase

    original = JupyterCacheBase.create_hashed_notebook
    if getattr(original, "_follows_library", False):
        return

    def create_hashed_notebook(self, nb, *args, **kwargs):
        hashed, key = original(self, nb, *args, **kwargs)
        library = library_digest(nb)
        if library:
            key = hashlib.md5(f"{key}:{LIBRARY}:{library}".encode()).hexdigest()
        return hashed, key

    create_hashed_notebook._follows_library = True
    JupyterCacheBase.create_hashed_notebook = create_hashed_notebook


def _executes(app) -> bool:
    return app.config.nb_execution_mode not in ("off", None)


def _is_notebook(env, docname: str) -> bool:
    return Path(env.doc2path(docname)).suffix == ".ipynb"


def _record(app, doctree):
    """After reading a notebook page: remember the library digest it was executed with."""
    env = app.env
    if not _executes(app) or not _is_notebook(env, env.docname):
        return
    import nbformat

    nb = nbformat.read(env.doc2path(env.docname), as_version=4)
    _state(env)[env.docname] = library_digest(nb)


def _state(env) -> dict[str, str]:
    if not hasattr(env, "course_library_digests"):
        env.course_library_digests = {}
    return env.course_library_digests


def _outdated(app, env, added, changed, removed):
    """Pages to read again although their source did not change."""
    if not _executes(app):
        return []
    from myst_nb.sphinx_ import NbMetadataCollector

    again = []
    for docname in sorted(env.all_docs):
        if docname in added or docname in changed or docname in removed or not _is_notebook(env, docname):
            continue
        report = NbMetadataCollector.get_doc_data(env).get(docname, {}).get("exec_data")
        if report is not None and not report.get("succeeded", True):
            again.append(docname)  # its last execution failed: execute it again, fail again if it must
            continue
        import nbformat

        nb = nbformat.read(env.doc2path(docname), as_version=4)
        if _state(env).get(docname) != library_digest(nb):
            again.append(docname)  # a course_lib module it imports changed
    if again:
        from sphinx.util import logging

        logging.getLogger(__name__).info(f"re-reading (failed execution or changed {LIBRARY}): {', '.join(again)}")
    return again


def _purge(app, env, docname):
    _state(env).pop(docname, None)


def _merge(app, env, docnames, other):
    _state(env).update({d: v for d, v in _state(other).items() if d in docnames})


def setup(app):
    _patch_jupyter_cache()
    app.connect("doctree-read", _record)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
