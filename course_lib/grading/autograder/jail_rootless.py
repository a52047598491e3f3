"""The sandbox without root: bubblewrap (``bwrap``) in an unprivileged user namespace, as Flatpak does.

A grader that is not root (a JupyterHub pod, an instructor's laptop) cannot ``setpriv`` to another
user nor mount anything; since Linux 3.8 an ordinary user may create a *user namespace*, in which it
is root for the namespaces it creates with it. ``bwrap`` uses that to give the worker what
:mod:`~course_lib.grading.autograder.jail`'s root path gives it:

* its own PID, mount, network (empty: no interface but a loopback that is down), IPC and UTS
  namespaces, and ``--disable-userns`` (no further user namespace inside);
* a new root (an in-memory tmpfs, read-only at the end) holding read-only binds of only the system,
  the Python installation, the virtual environment and ``course_lib``, a ``/tmp`` and a private
  home ``/home/student`` in memory, each capped at ``Limits.tmp_size``, a minimal ``/dev`` and
  ``/proc``; the submission is copied into the home from a read-only bind of the sandbox's own copy;
* an unprivileged uid inside (1000, mapped to the grader's own uid outside: no other user is needed),
  every capability dropped, ``no_new_privs``, a new session (no terminal to inject into), and
  ``--die-with-parent``: when the grader (or bwrap) dies, the kernel kills every process of the sandbox;
* the same ``prlimit`` limits and empty environment as the root path; the process count is kept per
  user namespace by the kernel (5.14+), so one sandbox's fork bomb does not eat another's limit.

Which path runs is :func:`isolation`: root → the root path, else bubblewrap if it works here, else
none, and grading is refused (``missing_protections`` says what the host must allow).
``COURSE_GRADER_ISOLATION`` (``--isolation``) forces ``root`` or ``rootless``.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess

ISOLATION_ENV = "COURSE_GRADER_ISOLATION"
MODES = ("auto", "root", "rootless")
SANDBOX_USER = 1000  # the student's uid inside the user namespace

#: What a host must allow for the rootless path, for the refusal and the documentation.
HOST_NEEDS = ("bubblewrap installed (`apt-get install bubblewrap`: /usr/bin/bwrap, not setuid) and unprivileged "
              "user namespaces allowed: sysctl user.max_user_namespaces > 0 (and kernel.unprivileged_userns_clone=1 "
              "on kernels that have it, kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for "
              "bwrap on Ubuntu 23.10+); in a container, a seccomp profile that allows unshare/clone with "
              "CLONE_NEWUSER (Docker's default refuses it; Kubernetes: a Localhost or Unconfined seccomp "
              "profile) and a /proc without masking over-mounts (Kubernetes: procMount: Unmasked); no CAP_SYS_ADMIN needed")


def wanted_mode() -> str:
    """The isolation the instructor asked for (``auto`` unless ``COURSE_GRADER_ISOLATION`` says)."""
    mode = os.environ.get(ISOLATION_ENV, "auto") or "auto"
    if mode not in MODES:
        raise ValueError(f"{ISOLATION_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


@functools.lru_cache(maxsize=None)
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot build a sandbox here (``None``: it can), found by starting one that runs ``true``."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--disable-userns", "--uid", str(SANDBOX_USER), "--gid", str(SANDBOX_USER),
             "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap could not run: {err}"
    if done.returncode:
        return f"bwrap could not create a user namespace: {done.stderr.strip()[-300:] or done.returncode}"
    return None


def _bind(path: str) -> list[str]:
    """A read-only bind of ``path`` at the same place (a symbolic link is recreated, as in merged /usr)."""
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    return ["--ro-bind", path, path]


def command(work: str, passwd: str, read_only: list[str], tmp_size: int, inner: list[str]) -> list[str]:
    """The ``bwrap`` command that runs ``inner`` (prlimit ... worker) in the sandbox, with the files of
    ``work`` copied into its home and ``passwd`` as its ``/etc/passwd``."""
    size = str(tmp_size)
    # /tmp and the home first: the read-only binds below may live under /tmp (a checkout in /tmp/...)
    # and a tmpfs mounted later would hide them.
    mounts = ["--perms", "1777", "--size", size, "--tmpfs", "/tmp",
              "--perms", "0700", "--size", size, "--tmpfs", "/home/student"]
    for path in read_only:
        mounts += _bind(path)
    mounts += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", passwd, "/etc/passwd",
               "--ro-bind", work, "/run/submission", "--remount-ro", "/"]
    copy = 'cp -R /run/submission/. /home/student/ && exec "$@"'
    return ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--disable-userns", "--hostname", "sandbox",
            "--uid", str(SANDBOX_USER), "--gid", str(SANDBOX_USER), "--cap-drop", "ALL",
            "--die-with-parent", "--new-session", *mounts, "--chdir", "/home/student",
            "--", "/bin/sh", "-c", copy, "sandbox-setup", *inner]


def passwd_line() -> str:
    return f"student:x:{SANDBOX_USER}:{SANDBOX_USER}::/home/student:/bin/false\n"
