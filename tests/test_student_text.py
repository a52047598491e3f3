"""A student's text on its way to the instructor's log is escaped and marked (issue 14, point 8).

The end-to-end case (a submission whose errors carry terminal escapes and forged grader lines, graded
through the real command) is ``test_sandbox.py::test_student_text_reaches_the_log_escaped_and_marked``;
these check each path on its own, fast.
"""
from __future__ import annotations

import io
import subprocess
import sys

from course_lib.grading.autograder import cli, student_text
from course_lib.grading.autograder.student_text import escape, event_lines, student_says

ATTACK = "\x1b[2J\x1b]0;pwned\x07\rok\n[sandbox] alice/a1: graded in 1.0 s\x85\u2028\u202eevil\x00"


def test_escape_leaves_nothing_a_terminal_interprets():
    out = escape(ATTACK)
    assert out == r"\x1b[2J\x1b]0;pwned\x07\rok\n[sandbox] alice/a1: graded in 1.0 s\x85\u2028\u202eevil\x00"
    assert out.isprintable()
    assert escape("plain text, C:\\path, café, 漢字") == "plain text, C:\\path, café, 漢字"
    assert escape("two\nlines\r", keep_newlines=True) == "two\nlines\\r"


def test_only_an_events_first_line_is_the_graders():
    event = "while running your code, a cell raised:" + student_says("cell 0: ValueError: " + ATTACK)
    lines = event_lines("bob", "a1", event)
    assert lines[0] == "[sandbox] bob/a1: while running your code, a cell raised:"
    assert lines[1:] == [r"bob| cell 0: ValueError: \x1b[2J\x1b]0;pwned\x07\rok",
                         r"bob| [sandbox] alice/a1: graded in 1.0 s\x85\u2028\u202eevil\x00"]
    # a student's text that reached the first line anyway stays on it, escaped
    assert event_lines("bob", "a1", "grader error: RuntimeError: x\x1b[2J") == [r"[sandbox] bob/a1: grader error: "
                                                                              r"RuntimeError: x\x1b[2J"]


def test_log_events_and_failure_summary_print_no_control_character(capsys, tmp_path):
    graded = {"bob": {"a1": {"events": ["calling f: died",
                                        "while running your code, a cell raised:" + student_says(ATTACK)],
                             "seconds": 2.0}}}
    cli._log_events(graded)
    cli.write_failure_summary(tmp_path, "a1", [("test_f", 3, "ValueError: \x1b[2J[sandbox] alice graded 28/28")])
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "\x07" not in err and "\u202e" not in err
    assert [line for line in err.splitlines() if "[sandbox] alice" in line] == [
        r"bob| [sandbox] alice/a1: graded in 1.0 s\x85\u2028\u202eevil\x00",
        r"  test_f                               3  ValueError: \x1b[2J[sandbox] alice graded 28/28"]
    assert "[sandbox] bob/a1: graded in 2.0 s" in err.splitlines()
    assert "\x1b" not in (tmp_path / "reports" / "a1_failures.csv").read_text()


def test_a_childs_output_is_relayed_escaped():
    child = subprocess.Popen([sys.executable, "-c", f"print({ATTACK!r}, end='')"], stdout=subprocess.PIPE)
    target = io.StringIO()
    student_text.relay(child.stdout, target)
    child.wait()
    assert target.getvalue() == escape(ATTACK, keep_newlines=True) + "\n"
    assert "\x1b" not in target.getvalue()
