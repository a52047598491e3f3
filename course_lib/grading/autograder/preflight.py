"""Is this machine able to grade? Checked before any student is (issue 15, "a grader fault is not the
student's fault").

A sandbox that cannot start (no ``unshare`` rights in a container, a full disk), or a worker that
imports another ``course_lib`` than the grader's (a venv pointing at another checkout), used to fail
every submission the same way, each recorded as the student's code ending the process: 0 points for
the whole class. :func:`preflight` starts one sandbox on a known-good cell and calls it through the
same proxies the tests use; :func:`~course_lib.grading.autograder.cli.autograde` runs it first and
refuses to grade when it fails, so no student is graded (nor given 0) on a broken set-up.

    python -m course_lib.grading doctor        what the sandbox protects here, and whether it works

The known-good submission also carries a known-bad probe, :data:`PROTECTIONS_PROBE`: from inside the
sandbox it tries what a hostile submission would (reach the network, write the system, see the
grader's process or files, fill its home, use a capability or the kernel keyring) and reports each
protection it found in force; one that is not is a reason to refuse, as a sandbox that does not start is.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from course_lib.grading.autograder import protocol
from course_lib.grading.autograder.jail import Limits, SandboxError, isolation, missing_protections
from course_lib.grading.autograder.session import Session, proxies
from course_lib.grading.autograder.student_text import escape, marked

#: The known-good submission: one function that answers with the digest of the worker's protocol module.
PROBE = '''import hashlib as _hashlib
import inspect as _inspect

from course_lib.grading.autograder import protocol as _protocol


def grader_probe(x):
    return _hashlib.sha256(_inspect.getsource(_protocol).encode()).hexdigest() if x == 41 else None
'''

#: What a hostile submission would try, each a protection's name and whether it held ("ok" or what happened).
PROTECTIONS_PROBE = '''
def grader_protections(port, grader_pid, grader_start, grader_folder, cap):
    import ctypes, os, platform, socket
    from course_lib.grading.autograder.syscall_filter import KEYRING_CALLS
    found = {}
    def attempt(name, action):
        try:
            found[name] = "NOT IN FORCE: " + str(action())
        except Exception as err:
            found[name] = "ok (" + type(err).__name__ + ": " + str(getattr(err, "strerror", None) or err)[:80] + ")"
    attempt("no network (the grader's port on 127.0.0.1)", lambda: socket.create_connection(("127.0.0.1", port), 3))
    attempt("no network (an outside address)", lambda: socket.create_connection(("192.0.2.1", 53), 3))
    attempt("system read-only (/usr)", lambda: open("/usr/grader-probe", "w"))
    attempt("system read-only (/etc)", lambda: open("/etc/grader-probe", "w"))
    attempt("host files hidden (/etc/shadow)", lambda: open("/etc/shadow").read(1))
    attempt("course folder hidden", lambda: os.listdir(grader_folder))
    def grader_seen():
        if open(f"/proc/{grader_pid}/stat").read().rsplit(")", 1)[1].split()[19] != grader_start:
            raise LookupError("another process")
        return f"the grader's process {grader_pid} is visible"
    attempt("host processes hidden (own PID namespace)", grader_seen)
    def fill_home():  # files of 8 MiB, below the file size limit: only the home's own cap may stop them
        for i in range(cap // (8 << 20) + 2):
            with open(f"/home/student/.grader-probe-{i}", "wb") as f:
                f.write(bytes(8 << 20))
        return "home took more than its cap"
    try:
        attempt("home size capped", fill_home)
    finally:
        for name in os.listdir("/home/student"):
            if name.startswith(".grader-probe-"):
                os.remove("/home/student/" + name)
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    caps = {k: status[k].strip() for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb")}
    found["no capabilities"] = "ok" if set(caps.values()) == {"0000000000000000"} else "NOT IN FORCE: " + str(caps)
    found["no new privileges"] = "ok" if status["NoNewPrivs"].strip() == "1" else "NOT IN FORCE"
    found["not root"] = "ok" if os.getuid() != 0 else "NOT IN FORCE: uid 0"
    keyctl = list(KEYRING_CALLS[platform.machine()].values())[0][2]
    libc = ctypes.CDLL(None, use_errno=True)
    got = libc.syscall(keyctl, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the user keyring
    found["no kernel keyring"] = "ok" if got == -1 and ctypes.get_errno() == 1 else f"NOT IN FORCE: keyctl gave {got}"
    return found
'''


def _digest() -> str:
    return hashlib.sha256(inspect.getsource(protocol).encode()).hexdigest()


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def verify_protections(session: Session, folder: Path, limits: Limits) -> dict[str, str]:
    """Run :data:`PROTECTIONS_PROBE` in the session's sandbox: ``{protection: "ok ..." or what happened}``."""
    probe = proxies(session).get("grader_protections")
    if probe is None:
        return {"the protections probe": f"NOT RUN: {'; '.join(session.events) or '?'}"}
    with socket.socket() as listener:  # a port of the grader's, which the sandbox must not reach
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        found = probe(listener.getsockname()[1], os.getpid(), _start_time(os.getpid()), str(folder), limits.tmp_size)
    return {str(k): str(v) for k, v in found.items()} if type(found) is dict else {"the probe": f"NOT RUN: {found!r}"}


def preflight(limits: Limits = Limits(), slot: int = 0, verified: dict | None = None) -> list[str]:
    """What keeps this machine from grading (empty: a sandbox started, ran a cell and answered a call
    with the grader's own ``course_lib``, and every protection the probe tried was in force; those are
    put in ``verified``). No sandbox at all (neither path works here) is a reason too: fail closed."""
    mode = isolation()
    if mode is None:
        return missing_protections()[:1]
    print(f"[sandbox] isolation: {mode}", file=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="grader-preflight-"))
    session = Session(folder, [PROBE, PROTECTIONS_PROBE], limits, slot, budget=max(60.0, 2 * limits.start_timeout))
    try:
        session.ensure()
        probe = proxies(session).get("grader_probe")
        if probe is None:
            return [f"the worker ran the probe cell but defined no function: {'; '.join(session.events) or '?'}"]
        answer = probe(41)
        if answer != _digest():
            return ["the sandbox's worker imports another course_lib than the grader "
                    f"(its protocol module differs: {str(answer)[:16]} vs {_digest()[:16]}); run the grader "
                    "from the environment whose course_lib it should use"]
        found = verify_protections(session, folder, limits)
        (verified if verified is not None else {}).update(found)
        return [f"sandbox protection {name}: {result}" for name, result in found.items() if not result.startswith("ok")]
    except (SandboxError, OSError, RuntimeError, ValueError, TypeError) as err:
        said = session.sandbox.student_output().strip()[-1500:] if session.sandbox else ""
        return [f"the sandbox could not run a known-good submission ({escape(str(err))})"
                + ("; the worker said:\n" + "\n".join(marked("worker", said)) if said else "")]
    finally:
        session.stop()
        shutil.rmtree(folder, ignore_errors=True)


def doctor(limits: Limits = Limits()) -> int:
    """Print what the sandbox protects on this machine and whether it grades; exit status 0 or 1."""
    missing = missing_protections()
    mode = isolation()
    print("isolation: " + {"root": "root (unshare, setpriv to a uid of its own, chroot)",
                           "rootless": "rootless (bubblewrap in an unprivileged user namespace)"}.get(mode, "NONE"))
    print("sandbox protections: " + ("all in force" if not missing else "MISSING: " + "; ".join(missing)))
    verified: dict[str, str] = {}
    problems = preflight(limits, verified=verified)
    for name, result in verified.items():
        print(f"  {'verified' if result.startswith('ok') else 'FAILED'}: {name}: {result}")
    for problem in problems:
        print(f"NOT READY: {problem}")
    if not problems:
        print("ready: a sandbox started, ran a known-good submission and answered through the grader's proxies")
    return 1 if problems else 0
