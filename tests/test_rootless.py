"""Grading without root (issue 15, "rootless isolation"): the instructor's command run by an ordinary
user grades through bubblewrap in an unprivileged user namespace, with the same exact scores and the
same protections as the root path; and no kernel keyring outlives a submission (issue 14, point 8).

On a root machine (CI) the grading runs as ``setpriv --reuid=TEST_UID``, an account of no one, on a
course folder that user owns; where the Python installation lives under a folder only root may enter
(pyenv in ``/root``), a private mount namespace shows the user that installation and nothing else of
``/root``. Run by an ordinary user, the tests run as that user. To keep the time small, the A1 bank
is represented by a subset (:data:`BANK`: full marks, nothing, a hidden-test-only mistake, tampered
tests, a from-scratch cheat, an unreadable file) and the attack bank of ``test_sandbox.py`` by the
attacks on the host (:data:`ATTACKS_RUN`): the other cases do not depend on the isolation path.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grading_support import gradebook_scores
from submission_bank import ASSIGNMENT, EXPECTED, POINTS, solution_code, submission
from test_sandbox import ATTACKS, SECRET, SECRET_ENV, _notebook, listening_port, make_course

from course_lib.grading.autograder import jail, jail_rootless

pytestmark = pytest.mark.slow
TEST_UID = 1_990_000_001
BANK = ["correct", "blank", "off_by_one", "tampered_tests", "captured_conv2d", "corrupt_json"]
ATTACKS_RUN = ["snoop_files", "snoop_network", "write_gradebook", "fork_bomb", "daemon"]
FILE_SECRET = "rootless-course-secret-41d9"
KEY_SECRET = "key-secret-of-student-a-93c1"

#: x86-64 numbers of the keyring system calls (asm/unistd_64.h), and the keyrings a student can name.
ADD_KEY, REQUEST_KEY, KEYCTL = 248, 249, 250
SESSION, USER, USER_SESSION = -3, -4, -5
X86_64_ONLY = pytest.mark.skipif(platform.machine() != "x86_64", reason="the keyring attacks use x86-64 syscall numbers")

# Student A leaves a key, readable by anyone, in every keyring it can name; student B, graded later
# (and again in a later grading run), looks for it by name and prints what it finds.
KEY_WRITER = f"""
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
added = []
for ring in ({SESSION}, {USER}, {USER_SESSION}):
    key = _libc.syscall({ADD_KEY}, b"user", b"grader-leak", b"{KEY_SECRET}", {len(KEY_SECRET)}, ring)
    added.append((key, ctypes.get_errno()))
    if key > 0:
        _libc.syscall({KEYCTL}, 5, key, 0x3F3F3F3F)  # KEYCTL_SETPERM: everyone may read it
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    raise RuntimeError(f"keys added: {{added}}")
"""
KEY_READER = f"""
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    key = _libc.syscall({REQUEST_KEY}, b"user", b"grader-leak", None, 0)
    found = [key, ctypes.get_errno()]
    if key > 0:
        buffer = ctypes.create_string_buffer(256)
        size = _libc.syscall({KEYCTL}, 11, key, buffer, 256)  # KEYCTL_READ
        found.append(buffer.raw[:max(size, 0)].decode(errors="replace"))
    try:
        found.append(open("/proc/keys").read())
    except OSError as err:
        found.append(str(err))
    raise RuntimeError(f"keys found: {{found}}")
"""


def _python_shim() -> str:
    """Shell lines for a private mount namespace (as root) that let another user reach the Python
    installation when it lives under a folder only root may enter; empty when it needs none."""
    prefix = Path(sys.base_prefix).resolve()
    blocked = next((p for p in [*reversed(prefix.parents), prefix] if not os.stat(p).st_mode & 0o001), None)
    if blocked is None:
        return "true"
    return (f'stage=$(mktemp -d) && mount --bind {prefix} "$stage" && mount -t tmpfs -o mode=755 grader-test {blocked}'
            f' && mkdir -p {prefix} && mount --bind "$stage" {prefix}')


def as_user(args: list[str], home: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``args`` as the unprivileged :data:`TEST_UID` (or as ourselves when we are not root)."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **(env or {})}
    if os.geteuid() != 0:
        return subprocess.run(args, env={**os.environ, **clean}, capture_output=True, text=True, timeout=timeout, cwd=home)
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _python_shim() + ' && exec "$@"', "as-user",
               "setpriv", f"--reuid={TEST_UID}", f"--regid={TEST_UID}", "--clear-groups",
               "env", "-i", *[f"{k}={v}" for k, v in clean.items()], *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=home)


def grading(*args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return as_user([sys.executable, "-m", "course_lib.grading", *args], home, env)


def _owned_folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(folder, 0o755)
    return folder


def _give_to_user(folder: Path) -> None:
    if os.geteuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.lchown(path, TEST_UID, TEST_UID)


@pytest.fixture(scope="module")
def home():
    folder = _owned_folder("rootless-home-")
    _give_to_user(folder)
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    done = as_user([sys.executable, "-c", "from course_lib.grading.autograder import jail_rootless as j; "
                    "print(j.bwrap_problem())"], folder, timeout=120)
    if done.returncode or done.stdout.strip() != "None":
        pytest.skip(f"the unprivileged user cannot use bubblewrap here: {done.stdout.strip()} {done.stderr[-500:]}")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def graded(home, tmp_path_factory):
    """The bank subset, the attacks and the keyring pair graded by the unprivileged user in one run,
    then the keyring reader alone in a second run."""
    course = make_course(_owned_folder("rootless-course-"))
    (course / "secret.txt").write_text(FILE_SECRET)
    inbox = _owned_folder("rootless-inbox-")
    for student in BANK:
        (inbox / f"{student}.ipynb").write_text(submission(student), encoding="utf-8")
    port, connections, stop = listening_port()
    attacks = {name: ATTACKS[name].replace("COURSE", str(course)).replace("PORT", str(port))
               .replace("CANARY", str(course / "canary")) for name in ATTACKS_RUN}
    attacks.update(keyring_a_writes=KEY_WRITER, keyring_b_reads=KEY_READER)
    for name, code in attacks.items():
        (inbox / f"{name}.ipynb").write_text(_notebook({"conv_output_size": code}), encoding="utf-8")
    (inbox / "zz_correct_after_the_bomb.ipynb").write_text(submission("correct"), encoding="utf-8")
    _give_to_user(course)
    _give_to_user(inbox)
    flags = ["--start-timeout", "60", "--call-timeout", "20", "--timeout", "120"]
    first = grading("--root", str(course), "autograde", ASSIGNMENT, "--submissions", str(inbox), *flags,
                    home=home, env={SECRET_ENV: SECRET})
    later = _owned_folder("rootless-inbox-later-")
    (later / "keyring_b_reads_later.ipynb").write_text(_notebook({"conv_output_size": KEY_READER}), encoding="utf-8")
    _give_to_user(later)
    second = grading("--root", str(course), "autograde", ASSIGNMENT, "--submissions", str(later), *flags, home=home)
    stop.set()
    survivors = subprocess.run(["ps", "-o", "pid=,args=", "-u", str(TEST_UID)], capture_output=True,
                               text=True).stdout if os.geteuid() == 0 else ""  # the user ran nothing else
    yield {"course": course, "first": first, "second": second, "connections": connections, "survivors": survivors}
    for folder in (course, inbox, later):
        shutil.rmtree(folder, ignore_errors=True)


def _shown(course: Path, student: str) -> str:
    nb = json.loads((course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    return json.dumps([c.get("outputs", []) for c in nb["cells"]])


def test_an_ordinary_user_grades_the_bank_rootless_with_exact_scores(graded):
    for run in ("first", "second"):
        result = graded[run]
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        assert "[sandbox] isolation: rootless" in result.stderr, result.stderr[-2000:]
        assert "UNSANDBOXED" not in result.stderr
    scores = gradebook_scores(graded["course"], ASSIGNMENT, [*BANK, "zz_correct_after_the_bomb"])
    for student in BANK:
        if EXPECTED[student] is None:
            assert student not in scores, f"{student} should not be gradable"
            continue
        assert {g: scores[student][g] for g in POINTS} == EXPECTED[student], student
    # graded after the fork bomb, under the same (grader's) uid: its process limit was not used up
    assert {g: scores["zz_correct_after_the_bomb"][g] for g in POINTS} == POINTS


def test_attacks_on_the_host_fail_rootless(graded):
    course = graded["course"]
    scores = gradebook_scores(course, ASSIGNMENT, ATTACKS_RUN)
    for student in ATTACKS_RUN:
        assert sum(scores[student][g] for g in POINTS) == 0, f"{student} scored"
    assert graded["connections"] == [], "a submission reached the host's network"
    assert not (course / "planted.txt").exists() and not (course / "canary").exists()
    assert "BEGIN HIDDEN TESTS" in (course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    snooped = _shown(course, "snoop_files")
    assert "/home/student" in snooped, "the snooping attack did not run"
    for secret in (FILE_SECRET, SECRET, "SQLite format", "BEGIN HIDDEN TESTS", "root:"):
        assert secret not in snooped, f"snoop_files read {secret!r}"
    assert "python" not in graded["survivors"] and "sleep" not in graded["survivors"], graded["survivors"]


@X86_64_ONLY
def test_a_key_left_by_one_student_is_not_read_by_a_later_one(graded):
    course = graded["course"]
    assert "keys added: [(-1, 1), (-1, 1), (-1, 1)]" in _shown(course, "keyring_a_writes"), "add_key was not refused"
    for reader in ("keyring_b_reads", "keyring_b_reads_later"):
        shown = _shown(course, reader)
        assert "keys found: [-1, 1, " in shown, f"{reader} did not run, or request_key was not refused: {shown[:500]}"
        assert KEY_SECRET not in shown, f"{reader} read student A's key"


@pytest.mark.skipif(not jail.root_path_works(), reason="the root path needs root")
@X86_64_ONLY
@pytest.mark.parametrize("mode", ["root", "rootless"])
def test_no_key_outlives_a_sandbox_in_either_path(mode, monkeypatch, tmp_path):
    # Bug caught (issue 14, point 8): the root path's sandbox uids come back in the next run, and the
    # user keyring of a uid outlives its processes; every sandbox inherited the grader's session keyring.
    monkeypatch.setenv(jail_rootless.ISOLATION_ENV, mode)
    if jail.isolation() != mode:
        pytest.skip(f"no {mode} isolation here")
    writer = KEY_WRITER.replace("def conv_output_size", "raise RuntimeError(f'keys added: {added}')\ndef _unused")
    reader = KEY_READER.replace("def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):", "if True:")
    said = []
    for cells in ([writer], [reader]):
        with jail.Sandbox(tmp_path, slot=5) as sandbox:
            said.append(json.dumps(sandbox.start(cells).get("errors")))
    assert "keys added: [(-1, 1), (-1, 1), (-1, 1)]" in said[0], said[0]
    assert "keys found: [-1, 1, " in said[1] and KEY_SECRET not in said[1], said[1]


def test_without_any_sandbox_grading_is_refused_and_says_what_the_host_must_allow(home):
    forced = {jail_rootless.ISOLATION_ENV: "root"}  # an ordinary user cannot have the root path
    done = grading("doctor", home=home, env=forced)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "isolation: NONE" in done.stdout and "NOT READY: no sandbox" in done.stdout
    assert "unprivileged user namespaces" in done.stdout and "CLONE_NEWUSER" in done.stdout


def test_doctor_verifies_each_protection_rootless(home):
    done = grading("doctor", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "isolation: rootless" in done.stdout
    for protection in ("no network", "system read-only (/usr)", "host files hidden (/etc/shadow)",
                       "host processes hidden", "home size capped: ok (OSError: No space left on device)",
                       "no capabilities: ok", "no new privileges: ok", "no kernel keyring: ok"):
        assert f"verified: {protection}" in done.stdout, done.stdout
