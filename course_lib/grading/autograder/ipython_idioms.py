"""IPython idioms in a student's cells, for the worker's plain interpreter (issue 14, point 7).

The worker runs no IPython kernel, yet honest notebooks say ``display(x)``, ``files = !ls``,
``%time f()`` in a loop or ``%%capture`` around noisy training. Commenting such lines out broke the
cell (an empty loop body, ``files =`` with nothing after it) and cost the parts defined in it their
points. Instead the cell goes through IPython's own input transformer (the same code a kernel uses:
``%time f()`` becomes ``get_ipython().run_line_magic('time', 'f()')``), and :class:`Shell` answers:

* ``%time``, ``%timeit``, ``%prun`` and ``%%time``, ``%%timeit``, ``%%capture``, ``%%prun`` run their
  statement or cell once, in the caller's namespace (timing options such as ``-n 10`` are dropped);
  ``%%capture out`` stores the captured text as ``out.stdout`` / ``out.stderr``;
* every other magic (``%matplotlib``, ``%load_ext``, ``%pip`` ...) and every shell command (``!ls``)
  is not run: a line on stderr says so, and ``!cmd`` gives an empty list of lines;
* ``display(...)`` prints the objects, as IPython does outside a kernel.
"""
from __future__ import annotations

import ast
import contextlib
import io
import re
import sys
from types import SimpleNamespace

RUN_ONCE = {"time", "timeit", "prun", "capture"}
OPTIONS = re.compile(r"^(\s*-[A-Za-z]+(\s+\d+)?)+\s+")


def transform(source: str) -> str:
    """``source`` as an IPython kernel would run it, in plain Python (unchanged if IPython is absent
    or cannot read it: the cell then fails or runs as it would anyway)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - no IPython in the environment, or a cell it cannot split
        return source


def _note(what: str) -> None:
    print(f"[grader] {what[:200]!r} is not run by the grader (no IPython kernel here)", file=sys.stderr)


def _run(code: str, frame):
    """Execute ``code`` in ``frame``'s namespace; the value of a final expression, as a cell's."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<magic>", "exec"), frame.f_globals, frame.f_locals)
    if last is not None:
        return eval(compile(ast.Expression(last.value), "<magic>", "eval"), frame.f_globals, frame.f_locals)
    return None


class Shell:
    """The ``get_ipython()`` of the worker: the few methods transformed cells call."""

    def __init__(self, namespace: dict):
        self.user_ns = namespace

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1):
        if name in RUN_ONCE:
            return _run(OPTIONS.sub("", line), sys._getframe(1))
        _note(f"%{name} {line}")
        return None

    def run_cell_magic(self, name: str, line: str, cell: str):
        if name not in RUN_ONCE:
            _note(f"%%{name} {line}")
            return None
        frame = sys._getframe(1)
        if name != "capture":
            return _run(cell, frame)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            _run(cell, frame)
        target = line.split()[-1] if line.split() and line.split()[-1].isidentifier() else None
        if target:
            frame.f_globals[target] = SimpleNamespace(stdout=out.getvalue(), stderr=err.getvalue(), outputs=[],
                                                      show=lambda: print(out.getvalue(), end=""))
        return None

    def getoutput(self, command: str, *args, **kwargs) -> list[str]:
        _note(f"!{command}")
        return []

    def system(self, command: str, *args, **kwargs) -> int:
        _note(f"!{command}")
        return 0


def display(*objects, **kwargs) -> None:
    """IPython's ``display`` outside a kernel: the objects, printed."""
    print(*objects)


def install(namespace: dict) -> None:
    """Give a cell namespace ``get_ipython`` and ``display`` (unless the student defines their own)."""
    shell = Shell(namespace)
    namespace.setdefault("get_ipython", lambda: shell)
    namespace.setdefault("display", display)
