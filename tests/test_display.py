"""course_lib.display.markdown_table: what Jupyter and the book render is a table of the right shape."""
from __future__ import annotations

from markdown_it import MarkdownIt

from course_lib.display import markdown_table


def _render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)  # an independent GFM-table parser


def test_a_pipe_in_a_header_or_cell_does_not_start_a_column():
    # Bug caught: chapter 0's header "max |hand - autograd|" made a 4-column header over a 3-column
    # rule, so no renderer saw a table and the page showed raw "| ... |" lines.
    table = markdown_table(["parameter", "shape", "max |hand - autograd|"], [["W1", "(64, 32)", "|x|"]])
    html = _render(table.data)
    assert html.count("<th>") == 3 and html.count("<td>") == 3, html


def test_numbers_are_formatted():
    html = _render(markdown_table(["n", "x"], [[1234567, 0.123456]]).data)
    assert "<td>1,234,567</td>" in html and "<td>0.123</td>" in html, html
