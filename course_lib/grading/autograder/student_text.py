"""Text that came from a student, on its way to the instructor's terminal or log: escaped and marked.

A student's exception message, printed output, file names in an archive or a cell's metadata reach
the grading log. Raw, they could clear the instructor's screen (``\\x1b[2J``), retitle the terminal or
hide what was printed before (an OSC sequence, ``\\r``), or print a line that reads like the grader's
own (``[sandbox] alice/a1_convolution: graded in 3.0 s``, ``alice 28``). So every such text passes
through this module on its way out:

* :func:`escape` writes every character a terminal or a log viewer interprets (C0 and C1 controls,
  DEL, Unicode line and paragraph separators, bidirectional overrides, zero-width characters) the
  way Python writes them in a string literal, ``\\x1b``, ``\\r``, ``\\u202e``: visible, inert;
* :func:`event_lines` turns one event of a submission into log lines of which only the first is the
  grader's, ``[sandbox] STUDENT/NOTEBOOK: what happened`` (escaped onto one line), and every further
  line is the student's text, each line ``STUDENT| ...`` (escaped): a forged grader line can only
  ever appear behind the student's mark.

An event's first line is the grader's words; anything that follows a newline is what the student's
code said (:func:`student_says`), so a session records it as ``f"a cell raised:{student_says(text)}"``.
"""
from __future__ import annotations

import unicodedata

#: Unicode categories a terminal or log viewer interprets instead of showing: controls, formats
#: (bidirectional overrides, zero-width joiners), line and paragraph separators.
_INTERPRETED = {"Cc", "Cf", "Zl", "Zp"}


def _escaped(ch: str) -> str:
    code = ord(ch)
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every interpreted character written as its escape (``\\x1b``, ``\\r``, ``\\n``);
    with ``keep_newlines``, ``\\n`` stays a line break. Printable text, backslashes included, is kept."""
    text = str(text)
    return "".join(_escaped(ch) if unicodedata.category(ch) in _INTERPRETED and not (keep_newlines and ch == "\n")
                   else ch for ch in text)


def marked(who: str, text: str) -> list[str]:
    """``text`` as log lines, each ``WHO| line`` (escaped): what the student's code said."""
    lines = str(text).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [f"{escape(who)}| {escape(line)}" for line in lines]


def student_says(text: str) -> str:
    """The part of an event that is the student's text: on the lines after the grader's words."""
    return "\n" + str(text)


def event_lines(student: str, notebook: str, event: str) -> list[str]:
    """One event of a submission as log lines: the grader's first line, then the student's lines marked."""
    first, _, rest = str(event).partition("\n")
    grader = f"[sandbox] {escape(student)}/{escape(notebook)}: {escape(first)}"
    return [grader] + (marked(student, rest) if rest else [])


def relay(stream, target) -> None:
    """Copy a child's output (bytes, line by line) to ``target`` with :func:`escape` applied to each line:
    nbgrader's log quotes the students' notebooks (cell ids, metadata), so it passes through here too."""
    for raw in iter(stream.readline, b""):
        target.write(escape(raw.decode("utf-8", "replace").rstrip("\n")) + "\n")
        target.flush()
