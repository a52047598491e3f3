"""Honest IPython idioms cost no points in the sandbox (issue 14, point 7).

Bug caught: the worker commented out every line starting with % or !, so ``files = !ls`` was a
syntax error, ``%time`` as a loop's body left an empty loop, and ``display`` was a NameError: the
cell failed and the functions it defined scored 0 (2/28 on A1, 28/28 with stock nbgrader).
"""
from __future__ import annotations

from course_lib.grading.autograder import worker

HONEST = '''import torch

display("starting")
files = !ls
for size in (1, 2):
    %time x = torch.ones(size)
total = %time torch.ones(3).sum()
%timeit -n 2 -r 1 torch.ones(2)
%matplotlib inline

def conv_output_size(n, k, p=0, s=1, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1
'''
CAPTURED = '''%%capture training_log
print("epoch 1: loss 0.5")

def after_capture():
    return "defined inside %%capture"
'''


def test_a_cell_with_magics_and_display_defines_its_functions(capsys):
    namespace, ready = worker._run_cells([HONEST, CAPTURED, "print(training_log.stdout.strip(), float(total))"])
    assert ready.errors == []
    assert ready.functions == ["after_capture", "conv_output_size"], "the IPython shims are not the student's"
    assert namespace["conv_output_size"](28, 3, p=1) == 28 and namespace["files"] == []
    assert namespace["x"].shape == (2,) and namespace["after_capture"]() == "defined inside %%capture"
    captured = capsys.readouterr()
    assert "starting" in captured.out and "epoch 1: loss 0.5 3.0" in captured.out
    assert "'!ls' is not run by the grader" in captured.err and "'%matplotlib inline'" in captured.err


def test_a_students_own_display_is_theirs():
    _, ready = worker._run_cells(["def display(x):\n    return x"])
    assert ready.functions == ["display"]
