"""Is this machine able to grade? Checked before any student is (issue 15, "a grader fault is not the
student's fault").

A sandbox that cannot start (no ``unshare`` rights in a container, a full disk), or a worker that
imports another ``course_lib`` than the grader's (a venv pointing at another checkout), used to fail
every submission the same way, each recorded as the student's code ending the process: 0 points for
the whole class. :func:`preflight` starts one sandbox on a known-good cell and calls it through the
same proxies the tests use; :func:`~course_lib.grading.autograder.cli.autograde` runs it first and
refuses to grade when it fails, so no student is graded (nor given 0) on a broken set-up.

    python -m course_lib.grading doctor        what the sandbox protects here, and whether it works
"""
from __future__ import annotations

import hashlib
import inspect
import shutil
import tempfile
from pathlib import Path

from course_lib.grading.autograder import protocol
from course_lib.grading.autograder.jail import Limits, SandboxError, missing_protections
from course_lib.grading.autograder.session import Session, proxies
from course_lib.grading.autograder.student_text import escape, marked

#: The known-good submission: one function that answers with the digest of the worker's protocol module.
PROBE = '''import hashlib as _hashlib
import inspect as _inspect

from course_lib.grading.autograder import protocol as _protocol


def grader_probe(x):
    return _hashlib.sha256(_inspect.getsource(_protocol).encode()).hexdigest() if x == 41 else None
'''


def _digest() -> str:
    return hashlib.sha256(inspect.getsource(protocol).encode()).hexdigest()


def preflight(limits: Limits = Limits(), slot: int = 0) -> list[str]:
    """What keeps this machine from grading (empty: a sandbox started, ran a cell and answered a call
    with the grader's own ``course_lib``)."""
    folder = Path(tempfile.mkdtemp(prefix="grader-preflight-"))
    session = Session(folder, [PROBE], limits, slot, budget=max(60.0, 2 * limits.start_timeout))
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
        return []
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
    print("sandbox protections: " + ("all in force" if not missing else "MISSING: " + "; ".join(missing)))
    problems = preflight(limits)
    for problem in problems:
        print(f"NOT READY: {problem}")
    if not problems:
        print("ready: a sandbox started, ran a known-good submission and answered through the grader's proxies")
    return 1 if problems else 0
