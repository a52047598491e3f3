"""Showing things in a chapter: glued numbers, library source code and small tables (no pandas needed)."""
from __future__ import annotations

import inspect


def glue(name: str, value, display: bool = True) -> None:
    """Name a value for the book's prose (``{glue:text}`name```): myst-nb's ``glue`` when it is
    installed (the book build, the course's .venv, ``pip install course_lib[notebooks]``), else the
    value is simply shown (or not, with ``display=False``), so a chapter runs wherever Jupyter does.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


def show_source(obj) -> "IPython.display.Code":  # noqa: F821
    """The source of a ``course_lib`` function, class or module, syntax-highlighted in a notebook.

    Chapters show the library this way instead of pasting a copy that could drift from it.
    """
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, float):
        return format(value, floatfmt)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def markdown_table(headers: list[str], rows: list[list], floatfmt: str = ".3g") -> "IPython.display.Markdown":  # noqa: F821
    """A Markdown table (rendered by Jupyter and by the book); ints get thousands separators."""
    from IPython.display import Markdown

    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells to match the headers {headers}")
    # a "|" inside a header or cell (e.g. "max |a - b|") would start a new column: escape it
    lines = ["| " + " | ".join(_cell(h, floatfmt) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v, floatfmt) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))
