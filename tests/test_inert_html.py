"""A written answer or an output never runs code in the formgrader or on the feedback page (issue 14, point 6).

The pages are rendered here by nbconvert with nbgrader's own ``feedback`` and ``formgrade`` templates,
as the ``feedback`` command and the formgrader do, and read back with an HTML parser.
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert.exporters import HTMLExporter
from nbgrader.server_extensions.formgrader import handlers
from traitlets.config import Config

import nbgrader

from course_lib.grading.autograder.inert import inert_notebook, unsafe_markdown
from course_lib.grading.autograder.nbgrader_plugins import InertHTML, autograde_preprocessors

ATTACKS = {
    "script": "My answer.\n\n<script>document.title='XSS-script'</script>",
    "onerror": "Fine <img src=x onerror=\"document.title='XSS-img'\"> so far",
    "js link": "[see here](javascript:document.title='XSS-link')",
    "entity link": "[see here](javascript&#58;document.title='XSS-entity')",
    "reference link": "[x]: javascript:document.title='XSS-ref'\n\nSee [x].",
    "svg": "<svg onload=\"document.title='XSS-svg'\"></svg>",
    "iframe": "<iframe src=\"javascript:document.title='XSS-iframe'\"></iframe>",
    "a href": "<a href=\"javascript:document.title='XSS-a'\">click</a>",
    "style": "<div style=\"position:fixed;top:0\">fake grade: 100</div>",
}
NBGRADER = Path(nbgrader.__file__).parent
HONEST = ("# My answer\n\nThe gradient is $\\frac{\\partial L}{\\partial x}$ where $a<b$ and `x < 0`; "
          "**bold**, *italic*, H<sub>2</sub>O, line<br>break.\n\n> a quote\n\n| n | loss |\n|---|---|\n| 1 | 0.5 |\n\n"
          "[the paper](https://arxiv.org/abs/1512.03385)\n\n```python\nprint('<script>not run</script>')\n```")


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    answer = {"nbgrader": {"solution": True, "grade": True, "grade_id": "q", "points": 1, "score": 0, "locked": False,
                           "schema_version": 3, "task": False}}
    nb.cells = [nbformat.v4.new_markdown_cell(HONEST, metadata=copy.deepcopy(answer))]
    nb.cells += [nbformat.v4.new_markdown_cell(source, metadata=copy.deepcopy(answer)) for source in ATTACKS.values()]
    code = nbformat.v4.new_code_cell("show()")
    code.outputs = [
        nbformat.v4.new_output("display_data", {"text/html": "<b>ok</b><script>document.title='XSS-out'</script>",
                                                "text/plain": "<ok>"}),
        nbformat.v4.new_output("display_data", {"application/javascript": "document.title='XSS-js'"}),
        nbformat.v4.new_output("display_data", {"image/svg+xml": "<svg onload=\"document.title='XSS-svgout'\"/>"}),
        nbformat.v4.new_output("display_data", {"text/markdown": "[x](javascript:document.title='XSS-md')"}),
        nbformat.v4.new_output("display_data", {"text/html": "<table><tr><td>1</td></tr></table>",
                                                "text/plain": "table"}),
    ]
    nb.cells.append(code)
    return nb


def render(nb, template: str) -> BeautifulSoup:
    """The page nbgrader's ``template`` (``feedback`` or ``formgrade``) makes of ``nb``."""
    config = Config()
    config.HTMLExporter.template_name = template
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    # as GenerateFeedback and the formgrader's handler set them up
    config.HTMLExporter.extra_template_paths = [str(NBGRADER / "server_extensions" / "formgrader" / "static" /
                                                    "node_modules" / "bootstrap" / "dist" / "css")]
    resources = {"nbgrader": {"notebook": "a", "score": 0, "max_score": 1, "student": "s", "late_penalty": 0},
                 "assignment_id": "a", "notebook_id": "a", "submission_id": "1", "index": 0, "total": 1,
                 "base_url": "", "student": "s", "last_name": "S", "first_name": "S", "notebook_path": "a.ipynb"}
    body, _ = HTMLExporter(config=config).from_notebook_node(nb, resources=resources)
    return BeautifulSoup(body, "html.parser")


def live_attacks(page: BeautifulSoup) -> list[str]:
    """Every element through which a payload (marked ``XSS-``) could run or restyle the page."""
    found = []
    for tag in page.find_all(True):
        for name, value in tag.attrs.items():
            text = " ".join(value) if isinstance(value, list) else str(value)
            if (name.lower().startswith("on") and "XSS-" in text) or (
                    name in ("href", "src") and "javascript" in text.lower()) or (
                    name == "style" and "fake grade" in tag.get_text()):
                found.append(str(tag)[:80])
        if tag.name in ("script", "iframe", "svg") and "XSS-" in str(tag):
            found.append(str(tag)[:80])
    return found


def test_attacks_are_found_and_honest_markdown_is_not():
    for name, source in ATTACKS.items():
        assert unsafe_markdown(source), f"{name}: not recognised as live HTML"
    assert unsafe_markdown(HONEST) == []


@pytest.mark.parametrize("template", ["feedback", "formgrade"])
def test_pages_of_an_inert_notebook_run_nothing(template):
    # Bug caught: nbconvert passes a written answer's raw HTML and javascript: links through as they are.
    nb = notebook()
    assert live_attacks(render(nb, template)), "the attacks are live without the policy: the test checks nothing"
    assert inert_notebook(nb) == len(ATTACKS)
    page = render(nb, template)
    assert live_attacks(page) == []
    text = page.get_text()
    for source in ATTACKS.values():  # the instructor still reads every answer, as text
        assert source.splitlines()[-1].strip() in text
    assert "H2O" in text.replace("\n", "") and page.find("sub") is not None and page.find("blockquote") is not None
    assert page.find("a", href="https://arxiv.org/abs/1512.03385") is not None, "an honest link was lost"


def test_outputs_keep_their_text_and_lose_their_scripts():
    nb = notebook()
    inert_notebook(nb)
    html_out, js_out, svg_out, md_out, table_out = nb.cells[-1].outputs
    assert html_out.data == {"text/plain": "<ok>"}
    assert js_out.data == {} and svg_out.data.keys() == {"text/plain"} and md_out.data.keys() == {"text/plain"}
    assert "text/html" not in table_out.data or "<script" not in table_out.data["text/html"]


def test_locked_markdown_is_left_to_nbgrader_and_the_plugin_runs_last():
    nb = notebook()
    nb.cells[1].metadata.nbgrader["locked"] = True  # nbgrader restores a locked cell from the source
    assert inert_notebook(nb) == len(ATTACKS) - 1
    assert autograde_preprocessors()[-1] is InertHTML
