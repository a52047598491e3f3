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

from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, IgnorePattern, NbGraderPreprocessor
from traitlets import List


class StderrToStdout(NbGraderPreprocessor):
    """Rewrite every stderr stream of a code cell as stdout, each line prefixed with ``[stderr]``."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code":
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
                    output.text = "".join(f"[stderr] {line}" for line in output.text.splitlines(keepends=True))
        return cell, resources


def autograde_preprocessors() -> list:
    """nbgrader's autograde pipeline with :class:`StderrToStdout` in the place of ``IgnorePattern``
    (the slot nbgrader reserves for cleaning stderr after execution)."""
    default = Autograde.class_traits()["autograde_preprocessors"].default()
    if IgnorePattern not in default:
        raise ValueError(f"nbgrader's autograde preprocessors changed ({default}); revisit StderrToStdout")
    return [StderrToStdout if p is IgnorePattern else p for p in default]


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
