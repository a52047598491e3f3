"""nbgrader plug-ins used by ``nbgrader_config.py`` (instructors only; students never import this).

nbgrader gives a test cell zero points when its output contains an error *or any stderr stream*
(``nbgrader.utils.determine_grade``). A ``UserWarning`` from PyTorch, a NumPy ``RuntimeWarning`` or
a debugging ``print(..., file=sys.stderr)`` would then cost a student the points of a test that
passed. :class:`StderrToStdout` runs right after execution and turns those streams into ordinary
output marked ``[stderr]``: they no longer decide the grade, and the feedback still shows them.
Exceptions are ``error`` outputs, untouched, and still score zero.

:func:`feedback_preprocessors` keeps the hidden tests' code out of the feedback pages.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.preprocessors import ClearHiddenTests, Execute, GetGrades, IgnorePattern, NbGraderPreprocessor
from traitlets import List

from course_lib.grading.autograder.inert import inert_notebook
from course_lib.grading.autograder.student_text import event_lines


class StderrToStdout(NbGraderPreprocessor):
    """Rewrite every stderr stream of a code cell as stdout, each line prefixed with ``[stderr]``."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code":
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
                    output.text = "".join(f"[stderr] {line}" for line in output.text.splitlines(keepends=True))
        return cell, resources


#: Set by ``python -m course_lib.grading autograde`` (sandboxed, the default) to the folder of the
#: sandbox's results; nbgrader then reads the test cells' outputs from there instead of executing.
SANDBOX_RESULTS_ENV = "COURSE_SANDBOX_RESULTS"
#: Set (to ``1``) only by ``python -m course_lib.grading autograde --no-sandbox``: the instructor
#: asked for stock, unsandboxed execution. Without it or the results, nbgrader refuses to execute.
UNSANDBOXED_ENV = "COURSE_GRADE_UNSANDBOXED"
#: The key of a sandbox result that says the submission could not be graded, and why (the grading
#: machine died, could not start a sandbox, ran another course_lib): nbgrader then fails that
#: submission, which is listed as NOT GRADED, never scored 0 for the set-up's fault.
NOT_GRADED = "not_graded"


class RefuseUnsandboxed(NbGraderPreprocessor):
    """In the place of ``Execute`` when nbgrader was started by hand (``nbgrader autograde``, the
    formgrader's button): grading fails closed, the submission is not graded, and the message says
    which command grades it in the sandbox."""

    def preprocess(self, nb, resources):
        raise RuntimeError("this course grades students' code in a sandbox: run `python -m course_lib.grading "
                           "autograde ASSIGNMENT` from the course folder (nbgrader's own autograde would run the "
                           f"students' code with the hidden tests, as you; {UNSANDBOXED_ENV}=1 allows that)")


class SandboxResults(NbGraderPreprocessor):
    """In the place of ``Execute``: each test cell gets the outputs that the sandboxed grading
    (:mod:`course_lib.grading.autograder.session`) produced for it; no student code runs in nbgrader.
    A test without a result (the sandbox failed for this student) gets an error: 0 points; a result
    marked :data:`NOT_GRADED` fails the submission (not graded, no score)."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        path = Path(os.environ[SANDBOX_RESULTS_ENV]) / info["student"] / f"{info['notebook']}.json"
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            self.log.error("no sandbox result for %s/%s: %s", info["student"], info["notebook"], err)
            result = {"tests": {}, "events": [f"no sandbox result: {err}"]}
        if result.get(NOT_GRADED):
            raise RuntimeError(f"{info['student']} is not graded: {result[NOT_GRADED]}")
        for event in result.get("events", []):
            for line in event_lines(info["student"], info["notebook"], event):
                self.log.warning("%s", line)
        self._tests = result.get("tests", {})
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            outputs = self._tests.get(meta.get("grade_id"))
            if outputs is None:
                outputs = [{"output_type": "error", "ename": "NotGraded", "evalue": "the sandbox produced no result "
                            "for this test (see the grader's log)", "traceback": []}]
            cell.outputs = [nbformat.from_dict(o) for o in outputs]
        return cell, resources


class InertHTML(NbGraderPreprocessor):
    """The autograded notebook made inert for the formgrader and the feedback page
    (:mod:`~course_lib.grading.autograder.inert`): live HTML and links of written answers shown as
    text, scripts dropped from outputs."""

    def preprocess(self, nb, resources):
        changed = inert_notebook(nb)
        if changed:
            self.log.warning("%s: %d Markdown cell(s) held live HTML or links; shown as plain text",
                             resources.get("nbgrader", {}).get("student", "?"), changed)
        return nb, resources


def autograde_preprocessors() -> list:
    """nbgrader's autograde pipeline with :class:`StderrToStdout` in the place of ``IgnorePattern``
    (the slot nbgrader reserves for cleaning stderr after execution), :class:`SandboxResults`
    in the place of ``Execute`` when the grading command ran the sandbox first (stock ``Execute``
    only when it was asked not to, :class:`RefuseUnsandboxed` otherwise: fail closed), and
    :class:`InertHTML` last, so that nothing a student wrote is live in a browser."""
    default = Autograde.class_traits()["autograde_preprocessors"].default()
    if IgnorePattern not in default or Execute not in default:
        raise ValueError(f"nbgrader's autograde preprocessors changed ({default}); revisit StderrToStdout")
    sandboxed = bool(os.environ.get(SANDBOX_RESULTS_ENV))
    execute = SandboxResults if sandboxed else Execute if os.environ.get(UNSANDBOXED_ENV) == "1" else RefuseUnsandboxed
    return [StderrToStdout if p is IgnorePattern else execute if p is Execute else p for p in default] + [InertHTML]


class ClearHiddenTestsAndTracebacks(ClearHiddenTests):
    """nbgrader's ``ClearHiddenTests``, and in those cells every traceback cut to its last line
    (the check's message: case, inputs, what is wrong); IPython's traceback would quote the hidden code."""

    # The HTML exporter configures this option of every preprocessor; accept it, as GetGrades does.
    display_data_priority = List(NbGraderPreprocessor.class_traits()["display_data_priority"].default()).tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        hidden = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if hidden and cell.cell_type == "code":
            for output in cell.outputs:
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


def feedback_preprocessors() -> list:
    """nbgrader's feedback pipeline with the hidden tests' code cleared (their scores and failure
    messages stay), so that the hidden cases can be used again next year."""
    default = GenerateFeedback.class_traits()["preprocessors"].default()
    if GetGrades not in default:
        raise ValueError(f"nbgrader's feedback preprocessors changed ({default}); revisit ClearHiddenTests")
    position = default.index(GetGrades) + 1  # grades are read first, from the full cells
    return default[:position] + [ClearHiddenTestsAndTracebacks] + default[position:]
