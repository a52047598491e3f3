"""A bank of realistic submissions of assignment 1, built from the released notebook.

Each student starts from ``assignments/a1_convolution/a1_convolution.ipynb`` (what students download)
and fills its solution cells with the reference solution's code, changed the way real students get
it wrong. The expected scores are worked out by hand in ``EXPECTED`` (per test cell), so a grading
change that moves a point shows up as a failing test.

    python tests/submission_bank.py OUT_DIR     writes OUT_DIR/<student>.ipynb, to look at or to grade
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "banks"))  # also when run as a script or by benchmarks/

import bank_tools  # noqa: E402
from bank_tools import edit as _edit  # noqa: E402

ASSIGNMENT = "a1_convolution"
RELEASE = bank_tools.release_path(ASSIGNMENT)
MANUAL = {"weight_sharing_answer": 4}

#: Points of every autograded test cell (the written answer, 4 points, is graded by hand).
POINTS = {
    "test_conv_output_size": 2, "test_conv_output_size_hidden": 2,
    "test_conv2d_loops": 3, "test_conv2d_loops_hidden": 2,
    "test_im2col": 2, "test_conv2d_im2col": 2, "test_im2col_hidden": 3,
    "test_pool_forward": 2, "test_pool_backward": 2, "test_pool_hidden": 2,
    "test_conv2d_backward": 3, "test_conv2d_backward_hidden": 3,
}
FULL = sum(POINTS.values())


def _without(*failed: str) -> dict[str, int]:
    return bank_tools.without(POINTS, *failed)


#: Expected autograde score per student and test cell; ``None``: the submission cannot be graded.
EXPECTED: dict[str, dict[str, int] | None] = {
    "correct": _without(),
    "blank": _without(*POINTS),
    # Never pads: every case with padding > 0 fails (all conv parts); the formula and pooling are fine.
    "forgot_padding": _without("test_conv2d_loops", "test_conv2d_loops_hidden", "test_im2col",
                               "test_conv2d_im2col", "test_im2col_hidden", "test_conv2d_backward",
                               "test_conv2d_backward_hidden"),
    # Kernel footprint d*k instead of d*(k-1)+1: right for dilation 1, one short for dilation > 1,
    # so only the hidden tests (which use dilation) catch it — in every part that uses the formula.
    "off_by_one": _without("test_conv_output_size_hidden", "test_conv2d_loops_hidden", "test_im2col_hidden",
                           "test_conv2d_backward_hidden"),
    # A true convolution (kernel flipped), forward and, consistently, backward; im2col itself is fine.
    "transposed_kernel": _without("test_conv2d_loops", "test_conv2d_loops_hidden", "test_conv2d_im2col",
                                  "test_im2col_hidden", "test_conv2d_backward", "test_conv2d_backward_hidden"),
    # Correct, but warns (Python, NumPy, PyTorch) and prints to stderr from inside every part.
    "noisy_stderr": _without(),
    # col2im computes W_out with kH instead of kW: right for square kernels; wrong (a shape error)
    # for the non-square kernels of the visible and hidden backward cases (W_out then differs).
    "col2im_width_from_kh": _without("test_conv2d_backward", "test_conv2d_backward_hidden"),
    # col2im's padded buffer is (W + 2p) x (W + 2p) instead of (H + 2p) x (W + 2p): harmless while
    # W >= H (the crop keeps H rows), so only the hidden case taller than wide catches it.
    "col2im_buffer_width_twice": _without("test_conv2d_backward_hidden"),
    # The file is cut in the middle: not JSON. It must not stop the others being graded.
    "corrupt_json": None,
    # Forgot the bias and the 1/k^2 of average pooling's gradient, then deleted the failing visible
    # conv test and replaced the pooling test by a fake "passed" print: nbgrader restores both.
    "tampered_tests": _without("test_conv2d_loops", "test_conv2d_loops_hidden", "test_pool_backward",
                               "test_pool_hidden"),
    # Right answers by the reference's kernels, reached around FROM_SCRATCH's name patching (issue 14):
    # each part that reaches one scores 0, directly or through the student's own function that does.
    # F.conv2d captured when the cell runs, before the test patches the name.
    "captured_conv2d": _without("test_conv2d_loops", "test_conv2d_loops_hidden"),
    # conv2d_im2col by torch.ops.aten.convolution.
    "aten_convolution": _without("test_conv2d_im2col", "test_im2col_hidden"),
    # im2col by torch._C._nn.im2col: im2col, conv2d_im2col, pooling forward and conv2d_backward use it.
    "c_nn_im2col": _without("test_im2col", "test_conv2d_im2col", "test_im2col_hidden", "test_pool_forward",
                            "test_pool_hidden", "test_conv2d_backward", "test_conv2d_backward_hidden"),
    # max_pool2d_backward by torch.ops.aten.max_pool2d_with_indices(_backward).
    "aten_max_pool_backward": _without("test_pool_backward", "test_pool_hidden"),
    # The course library's answers: conv2d_loops imported, and its im2col inside conv2d_im2col.
    "library_answers": _without("test_conv2d_loops", "test_conv2d_loops_hidden", "test_conv2d_im2col",
                                "test_im2col_hidden"),
    # Six test cells fail by a crash or a bomb (os._exit in conv2d_loops, a segfault in conv2d_im2col: four
    # crashes of the worker; a memory bomb in max_pool2d_backward); every other part is right and keeps its
    # points, before, between and after them (issue 14: grading stopped after the third crash).
    "crashes_then_correct": _without("test_conv2d_loops", "test_conv2d_loops_hidden", "test_conv2d_im2col",
                                     "test_im2col_hidden", "test_pool_backward", "test_pool_hidden"),
}

#: A line of every failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "forgot_padding": "check_conv2d failed on case '3x3 kernel, padding 1'",
    "off_by_one": "inputs: size=10, kernel_size=3, stride=1, padding=0, dilation=2\nwrong output size: expected 6, got 5",
    "transposed_kernel": "check_conv2d failed on case '3x3 kernel, no padding'",
    "tampered_tests": "check_avg_pool2d_backward failed on case",
    "col2im_width_from_kh": "check_conv2d_backward failed on case 'batch 3, 2 -> 4 channels, non-square input and kernel'",
    "col2im_buffer_width_twice": "check_conv2d_backward failed on case 'batch 3, 2 -> 5 channels, taller than wide'",
    "captured_conv2d": "ForbiddenCall: conv2d_loops used aten.convolution, which this part asks you to write yourself",
    "aten_convolution": "conv2d_im2col used aten.convolution",
    "c_nn_im2col": "im2col used aten.im2col",
    "aten_max_pool_backward": "max_pool2d_backward used aten.max_pool2d_with_indices",
    "library_answers": "conv2d_loops used course_lib.conv.conv2d_loops, the course library's own answer",
    "crashes_then_correct": "conv2d_im2col: the student's code died of signal SIGSEGV",
}

CHEATS = {  # student -> (solution cell, code appended to it: it replaces a function of the cell)
    "aten_convolution": ("im2col", """

def conv2d_im2col(input, weight, bias=None, stride=1, padding=0, dilation=1):
    return torch.ops.aten.convolution(input, weight, bias, [stride] * 2, [padding] * 2, [dilation] * 2,
                                      False, [0, 0], 1)
"""),
    "c_nn_im2col": ("im2col", """

def im2col(input, kernel_size, dilation=1, padding=0, stride=1):
    return torch._C._nn.im2col(input, list(kernel_size), [dilation] * 2, [padding] * 2, [stride] * 2)
"""),
    "aten_max_pool_backward": ("pooling", """

def max_pool2d_backward(grad_output, input, kernel_size, stride=None):
    stride = kernel_size if stride is None else stride
    window, step = [kernel_size] * 2, [stride] * 2
    _, indices = torch.ops.aten.max_pool2d_with_indices(input, window, step)
    return torch.ops.aten.max_pool2d_with_indices_backward(grad_output, input, window, step, [0, 0], [1, 1],
                                                           False, indices)
"""),
}


def solution_code() -> dict[str, str]:
    """The reference solution of every solution cell, as a student would have typed it."""
    return bank_tools.solution_code(ASSIGNMENT)


def _answers(student: str) -> dict[str, str]:
    """Source of each solution cell for ``student`` (cells left out stay as released)."""
    if student == "blank":
        return {}
    code = solution_code()
    if student == "forgot_padding":
        for cell in ("conv2d_loops", "im2col", "conv2d_backward"):
            code[cell] = _edit(code[cell], "stride, padding, dilation)", "stride, dilation=dilation)")
        for cell in ("conv2d_loops", "im2col"):
            code[cell] = _edit(code[cell], "x = F.pad(input, (padding, padding, padding, padding))", "x = input")
        code["conv2d_backward"] = _edit(code["conv2d_backward"], "H + 2 * padding, W + 2 * padding", "H, W")
        code["conv2d_backward"] = _edit(code["conv2d_backward"], "return x[:, :, padding:padding + H, padding:padding + W]",
                                        "return x")
    elif student == "off_by_one":
        code["conv_output_size"] = _edit(code["conv_output_size"], "span = dilation * (kernel_size - 1) + 1",
                                         "span = dilation * kernel_size")
    elif student == "transposed_kernel":
        code["conv2d_loops"] = _edit(code["conv2d_loops"], '"ncab,ocab->no", window, weight)',
                                     '"ncab,ocab->no", window, weight.flip(-2, -1))')
        code["im2col"] = _edit(code["im2col"], "out = weight.reshape(C_out, -1) @ columns",
                               "out = weight.flip(-2, -1).reshape(C_out, -1) @ columns")
        code["conv2d_backward"] = _edit(code["conv2d_backward"], ".sum(dim=0).reshape(weight.shape)",
                                        ".sum(dim=0).reshape(weight.shape).flip(-2, -1)")
        code["conv2d_backward"] = _edit(code["conv2d_backward"], "weight.reshape(C_out, -1).T @ G",
                                        "weight.flip(-2, -1).reshape(C_out, -1).T @ G")
    elif student == "col2im_width_from_kh":
        code["conv2d_backward"] = _edit(code["conv2d_backward"], "W_out = conv_output_size(W, kW, stride, padding, dilation)\n    N =",
                                        "W_out = conv_output_size(W, kH, stride, padding, dilation)\n    N =")
    elif student == "col2im_buffer_width_twice":
        code["conv2d_backward"] = _edit(code["conv2d_backward"], "H + 2 * padding, W + 2 * padding",
                                        "W + 2 * padding, W + 2 * padding")
    elif student == "noisy_stderr":
        noise = {
            "conv_output_size": 'warnings.warn("is my formula right for dilation?")',
            "conv2d_loops": 'print("debug: conv2d_loops", tuple(input.shape), file=sys.stderr)',
            "im2col": "np.log(np.zeros(1))  # NumPy's RuntimeWarning: divide by zero",
            "pooling": "torch.tensor(input)  # PyTorch's UserWarning: copy-construct from a tensor",
            "conv2d_backward": 'warnings.warn("slow", RuntimeWarning)',
        }
        for cell, line in noise.items():  # right after the first function's docstring
            code[cell] = "import sys, warnings\nimport numpy as np\n\n" + code[cell].replace('"""\n', f'"""\n    {line}\n', 1)
    elif student == "tampered_tests":
        code["conv2d_loops"] = _edit(code["conv2d_loops"], "        out += bias.view(1, C_out, 1, 1)", "        pass")
        code["pooling"] = _edit(code["pooling"], "grad_output[:, :, i, j, None, None] / (k * k)",
                                "grad_output[:, :, i, j, None, None]")
    elif student in CHEATS:
        cell, cheat = CHEATS[student]
        code[cell] += cheat
    elif student == "captured_conv2d":
        code["conv2d_loops"] = ("_conv = F.conv2d  # captured when the cell runs\n\n\n"
                                "def conv2d_loops(input, weight, bias=None, stride=1, padding=0, dilation=1):\n"
                                "    return _conv(input, weight, bias, stride=stride, padding=padding, dilation=dilation)\n")
    elif student == "library_answers":
        code["conv2d_loops"] = "from course_lib.conv import conv2d_loops, im2col as library_im2col\n"
        code["im2col"] = _edit(code["im2col"], "columns = im2col(input, (kH, kW), dilation, padding, stride)",
                               "columns = library_im2col(input, (kH, kW), dilation, padding, stride)")
    elif student == "crashes_then_correct":
        crashes = {"conv2d_loops": ("conv2d_loops", "import os\n    os._exit(3)"),
                   "im2col": ("conv2d_im2col", "import ctypes\n    ctypes.string_at(0)"),
                   "pooling": ("max_pool2d_backward", MEMORY_BOMB)}
        for cell, (function, crash) in crashes.items():
            head = f"def {function}("
            start = code[cell].index(head)
            body = code[cell].index('"""\n', code[cell].index('"""', start) + 3) + 4  # after its docstring
            code[cell] = code[cell][:body] + f"    {crash}\n" + code[cell][body:]
    return code


#: Reserves address space (1 GiB a block, never touched) until the sandbox's limit stops it with a MemoryError.
MEMORY_BOMB = """import numpy as np
    blocks = []
    while True:
        blocks.append(np.empty(1 << 27))"""


class ConvolutionBank(bank_tools.Bank):
    """Assignment 1's bank: flat ``<student>.ipynb`` files (the other layout the autograder collects),
    one that is not JSON, and one whose test cells were deleted or rewritten."""

    def submission(self, student: str) -> str:
        """The notebook file ``student`` hands in, as text."""
        if student == "corrupt_json":
            text = self.submission("correct")
            return text[: len(text) // 2]
        return super().submission(student)

    def write(self, folder: Path) -> list[str]:
        """Write ``folder/<student>.ipynb`` for every student of the bank."""
        folder.mkdir(parents=True, exist_ok=True)
        for student in self.expected:
            (folder / f"{student}.ipynb").write_text(self.submission(student), encoding="utf-8")
        return list(self.expected)


def _tamper(student: str, cell: dict) -> None:
    """``tampered_tests`` deleted a failing visible test and faked the output of another."""
    grade_id = bank_tools.grade_id(cell)
    if student == "tampered_tests" and grade_id == "test_conv2d_loops":
        cell.clear()  # deleted (dropped by submission())
    elif student == "tampered_tests" and grade_id == "test_pool_backward":
        cell["source"] = 'print("check_max_pool2d_backward: all 3 cases passed")'


BANK = ConvolutionBank(
    ASSIGNMENT, POINTS, MANUAL, EXPECTED, FEEDBACK_MESSAGES, _answers,
    written={"weight_sharing_answer": "Sharing one kernel everywhere assumes that image statistics are the same at "
                                      "every position ..."},
    secrets=("ConvCase(", "PoolCase(", "SizeCase(", "span = dilation"), change=_tamper)
write_bank, submission = BANK.write, BANK.submission  # for benchmarks/ and the sandbox tests

if __name__ == "__main__":
    bank_tools.main(BANK, sys.argv)
