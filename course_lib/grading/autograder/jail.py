"""A sandbox for running a student's code on a plain Linux machine, with what Linux already offers.

As root, :class:`Sandbox` starts :mod:`course_lib.grading.autograder.worker` inside

* ``unshare --fork --pid --mount --net --ipc --uts --kill-child``: a fresh PID namespace whose first
  process is the worker (when it ends, or the grader kills it, the kernel kills every process left
  in it: no daemon survives), no network (an empty network namespace), a private mount namespace;
* a new root built in that mount namespace from read-only bind mounts of only what Python needs
  (``/usr``, ``/lib*``, the Python installation, the virtual environment, ``course_lib``) plus a
  private writable copy of the submission as ``/home/student`` and a small ``/tmp`` (both in memory, capped). The course
  folder, its sources, the gradebook, other submissions and the grader's home do not exist there;
* ``setpriv``: an unprivileged user of its own (a uid from this grading process's own block,
  :func:`uid_block`, one per parallel slot, so that no two sandboxes, of this run or of another run at
  the same time, share a process limit), no supplementary groups, no capabilities, no new privileges;
* ``prlimit``: address space, processes, file size, CPU seconds, open files, no core dumps;
* ``env -i`` with an allow-list (no tokens, nothing that says grading is under way).

Without root, :mod:`~course_lib.grading.autograder.jail_rootless` gives the same protections with
bubblewrap in an unprivileged user namespace; :func:`isolation` picks the path. In both, the worker
starts behind :mod:`~course_lib.grading.autograder.syscall_filter` (no kernel keyring). The grader caps
the wall-clock time of every request and the bytes it reads. Where neither path works, a
:class:`Sandbox` still runs the worker with the resource limits, an empty environment and a private
working directory (for the library's own tests), :func:`missing_protections` says what is missing and
what the host must allow, and the grading commands refuse to grade (``preflight``).
"""
from __future__ import annotations

import fcntl
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import course_lib
from course_lib.grading.autograder import jail_rootless
from course_lib.grading.autograder.protocol import Cells

LIBRARY = Path(course_lib.__file__).resolve().parent
SANDBOX_UID_BASE = 2_100_000_000  # far above any real account; one uid per parallel slot
UID_BLOCK = 64                     # slots per grading process
UID_BLOCKS = 4096                  # grading processes that may run at once on one machine
UID_LOCKS = Path("/run/course-grader")
_held_block: list = []             # [(block, open lock file)] of this process, held until it exits


def uid_block() -> int:
    """This process's own block of sandbox uids, held with ``flock`` until the process ends, so that
    two grading runs at once never share a uid (a per-uid limit, a fork bomb, the kernel keyring)."""
    if not _held_block:
        UID_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
        for block in range(UID_BLOCKS):
            handle = open(UID_LOCKS / f"uids-{block}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held_block.append((block, handle))
            print(f"[sandbox] uids {sandbox_uid(0, block)}..{sandbox_uid(UID_BLOCK - 1, block)} "
                  f"(block {block}) for this grading process", file=sys.stderr)
            break
        else:
            raise SandboxError(f"all {UID_BLOCKS} blocks of sandbox uids are in use ({UID_LOCKS})")
    return _held_block[0][0]


def sandbox_uid(slot: int, block: int | None = None) -> int:
    """The uid of ``slot`` in this process's block."""
    return SANDBOX_UID_BASE + (uid_block() if block is None else block) * UID_BLOCK + slot % UID_BLOCK


@dataclass(frozen=True)
class Limits:
    """What one submission may use. Times in seconds, sizes in bytes."""

    memory: int = 6 << 30          # address space (importing PyTorch alone needs more than 3 GiB)
    processes: int = 256           # threads count too
    file_size: int = 64 << 20      # largest file it may write
    tmp_size: int = 128 << 20      # its /tmp and its home (a copy of the submission) hold this much each
    cpu: int = 600                 # CPU seconds, per process
    open_files: int = 256
    start_timeout: float = 120.0   # run the student's cells
    call_timeout: float = 60.0     # one call of a student's function
    reply_bytes: int = 32 << 20    # largest reply read from the worker
    log_bytes: int = 256 << 10     # the student's printed output kept (the rest is read and dropped)


ENV_ALLOWED = {"PATH": "/usr/bin:/bin", "HOME": "/home/student", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "TMPDIR": "/tmp", "USER": "student"}


def root_path_works() -> bool:
    """Namespaces, a private root and another user, as root (with util-linux's tools)."""
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "setpriv", "prlimit", "chroot", "mount"))


def isolation() -> str | None:
    """``"root"``, ``"rootless"`` (bubblewrap, an unprivileged user namespace) or ``None`` (neither works
    here): root takes the root path, anyone else bubblewrap; ``COURSE_GRADER_ISOLATION`` forces one."""
    mode = jail_rootless.wanted_mode()
    if mode in ("auto", "root") and root_path_works():
        return "root"
    if mode in ("auto", "rootless") and shutil.which("prlimit") and jail_rootless.bwrap_problem() is None:
        return "rootless"
    return None


def can_isolate() -> bool:
    """Whether a sandbox here gets namespaces, a private root and an unprivileged user (either path)."""
    return isolation() is not None


def missing_protections() -> list[str]:
    """The protections this machine cannot give (empty when it can sandbox fully), and why."""
    if can_isolate():
        return []
    mode = jail_rootless.wanted_mode()
    why = {"root": "the root path was asked for (--isolation root) but the grader is not root",
           "rootless": f"the rootless path was asked for but {jail_rootless.bwrap_problem() or 'prlimit is missing'}",
           "auto": f"the grader is not root and {jail_rootless.bwrap_problem() or 'prlimit is missing'}"}[mode]
    return [f"no sandbox: {why}; the host must allow " + jail_rootless.HOST_NEEDS,
            "no separate user (the student's code runs as the grader's user)",
            "no private root (the course folder, gradebook and other submissions are readable)",
            "no network isolation", "no PID namespace (detached processes are killed by process group only)"]


class SandboxError(RuntimeError):
    """The worker died, timed out, or broke the protocol."""


def _read_only_paths() -> list[str]:
    """What the worker needs to read: the system, the Python installation, the venv, course_lib."""
    paths = ["/usr", "/bin", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/alternatives",
             sys.base_prefix, sys.prefix, str(LIBRARY)]
    real_python = str(Path(sys.executable).resolve().parents[1])
    paths.append(real_python)
    seen, out = set(), []
    for p in paths:
        if p not in seen and os.path.lexists(p):  # top-level links (merged /usr) are recreated
            seen.add(p)
            out.append(p)
    return out


#: Runs as root inside the new namespaces: builds the new root, then drops to the student's user.
_SETUP = r"""
set -e
new="$1"; work="$2"; tmpsize="$3"; shift 3
mount -t tmpfs -o size=16m,mode=755 sandbox-root "$new"
# /tmp and the home first: the read-only binds below may live under /tmp (a checkout in /tmp/...),
# and a tmpfs mounted later would hide them.
mkdir -p "$new/proc" "$new/dev" "$new/tmp" "$new/home/student" "$new/etc"
mount -t tmpfs -o "size=$tmpsize,mode=1777,nosuid,nodev" sandbox-tmp "$new/tmp"
mount -t tmpfs -o "size=$tmpsize,mode=700,uid=$SANDBOX_UID,gid=$SANDBOX_UID,nosuid,nodev" sandbox-home "$new/home/student"
while [ "$1" != "--" ]; do
  if [ -L "$1" ]; then mkdir -p "$(dirname "$new$1")"; ln -s "$(readlink "$1")" "$new$1"
  elif [ -d "$1" ]; then mkdir -p "$new$1"; mount --bind -o ro "$1" "$new$1"
  else mkdir -p "$(dirname "$new$1")"; touch "$new$1"; mount --bind -o ro "$1" "$new$1"; fi
  shift
done
shift
mount -t proc proc "$new/proc"
for d in null zero random urandom; do touch "$new/dev/$d"; mount --bind "/dev/$d" "$new/dev/$d"; done
cp -a "$work/." "$new/home/student/"
echo "student:x:$SANDBOX_UID:$SANDBOX_UID::/home/student:/bin/false" > "$new/etc/passwd"
echo "student:x:$SANDBOX_UID:" > "$new/etc/group"
mount -o remount,ro,bind "$new" 2>/dev/null || true
exec chroot "$new" "$@"
"""


class Sandbox:
    """One sandboxed worker serving one submission; use as a context manager."""

    def __init__(self, files_from: Path | None = None, limits: Limits = Limits(), slot: int = 0):
        self.limits, self.slot = limits, slot
        self.mode = isolation()
        self.isolated = self.mode is not None
        self.dir = Path(tempfile.mkdtemp(prefix="grading-sandbox-"))
        os.chmod(self.dir, 0o700)
        self.work = self.dir / "work"
        if files_from is not None:
            shutil.copytree(files_from, self.work, symlinks=True, ignore=shutil.ignore_patterns(".*"))
        else:
            self.work.mkdir()
        self.proc: subprocess.Popen | None = None
        self.log = bytearray()
        self.log_dropped = 0
        self._buffer = b""

    # -- process -----------------------------------------------------------------------------------
    def command(self) -> list[str]:
        worker = [sys.executable, "-I", "-m", "course_lib.grading.autograder.syscall_filter"]  # then the worker
        env = [f"{k}={v}" for k, v in ENV_ALLOWED.items()]
        if not self.isolated:
            return ["env", "-i", *env, f"HOME={self.work}", *worker]
        lim = self.limits
        limits = ["prlimit", f"--as={lim.memory}", f"--nproc={lim.processes}", f"--fsize={lim.file_size}",
                  f"--cpu={lim.cpu}", f"--nofile={lim.open_files}", "--core=0", "--"]
        if self.mode == "rootless":
            return jail_rootless.command(str(self.work), str(self.dir / "passwd"), _read_only_paths(), lim.tmp_size,
                                         [*limits, "env", "-i", *env, *worker])
        uid = sandbox_uid(self.slot)
        inner = [*limits, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                 "--inh-caps=-all", "--bounding-set=-all", "--",
                 "env", "-i", "-C", "/home/student", *env, *worker]
        root = self.dir / "root"
        return ["unshare", "--fork", "--pid", "--mount", "--net", "--ipc", "--uts", "--kill-child=SIGKILL",
                "--", "sh", "-c", _SETUP, "sandbox-setup", str(root), str(self.work), str(lim.tmp_size),
                *_read_only_paths(), "--", *inner]

    def _prepare_files(self) -> None:
        if self.mode == "rootless":  # the grader's own uid is the student's, inside the user namespace
            (self.dir / "passwd").write_text(jail_rootless.passwd_line())
        elif self.isolated:
            uid = sandbox_uid(self.slot)
            (self.dir / "root").mkdir()
            for path in [self.work, *self.work.rglob("*")]:
                os.lchown(path, uid, uid)
            os.chmod(self.work, 0o700)

    def _limit_self(self) -> None:  # without root: at least the resource limits (runs in the child)
        lim = self.limits
        for which, value in ((resource.RLIMIT_AS, lim.memory), (resource.RLIMIT_NPROC, lim.processes + 64),
                             (resource.RLIMIT_FSIZE, lim.file_size), (resource.RLIMIT_CPU, lim.cpu),
                             (resource.RLIMIT_NOFILE, lim.open_files), (resource.RLIMIT_CORE, 0)):
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass

    def start(self, cells: list[str]) -> dict:
        """Run the student's cells; returns the worker's ``ready`` message (functions, errors)."""
        self._prepare_files()
        uid = sandbox_uid(self.slot) if self.mode == "root" else SANDBOX_UID_BASE
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SANDBOX_UID": str(uid)}
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=self.work, env=env, start_new_session=True,
                                     preexec_fn=None if self.isolated else self._limit_self)
        threading.Thread(target=self._drain_log, daemon=True).start()
        return self.request(Cells(cells), self.limits.start_timeout)

    def _drain_log(self) -> None:
        """Keep the first ``log_bytes`` of the student's output; read and drop the rest."""
        stream = self.proc.stderr
        while chunk := stream.read1(1 << 16):
            room = self.limits.log_bytes - len(self.log)
            if room > 0:
                self.log += chunk[:room]
            self.log_dropped += max(0, len(chunk) - max(room, 0))

    def request(self, message, timeout: float) -> dict:
        """Send one message (a :mod:`~course_lib.grading.autograder.protocol` dataclass) and read the reply,
        a JSON object of at most ``reply_bytes``, within ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            raise SandboxError(self._death())
        deadline = time.monotonic() + timeout
        self._write(message.to_json().encode() + b"\n", deadline, timeout)
        fd = self.proc.stdout.fileno()
        chunks, size = [self._buffer], len(self._buffer)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in chunks[-1]:
                self._wait(sel, deadline, timeout)
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise SandboxError(self._death())
                chunks.append(chunk)
                size += len(chunk)
                if size > self.limits.reply_bytes:
                    self.kill()
                    raise SandboxError(f"sent more than {self.limits.reply_bytes} bytes (the sandbox was killed)")
        line, self._buffer = b"".join(chunks).split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if type(reply) is not dict:
            self.kill()
            raise SandboxError("broke the protocol (the sandbox was killed)")
        return reply

    def _wait(self, sel: selectors.BaseSelector, deadline: float, timeout: float) -> None:
        """Block until the pipe registered in ``sel`` is ready; past the deadline, kill the sandbox."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise SandboxError(f"timed out after {timeout:g} s (the sandbox was killed)")
            if sel.select(left):
                return

    def _write(self, data: bytes, deadline: float, timeout: float) -> None:
        """Write without blocking past the deadline (a worker that stops reading cannot hang us)."""
        fd = self.proc.stdin.fileno()
        os.set_blocking(fd, False)
        view = memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while view:
                self._wait(sel, deadline, timeout)
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    continue
                except OSError:  # a broken pipe: the worker is gone
                    try:
                        self.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        self.kill()
                    raise SandboxError(self._death()) from None

    def _death(self) -> str:
        code = self.proc.poll() if self.proc else None
        if code is None:
            return "the sandbox is not running"
        if code < 0:
            return f"the student's code died of signal {signal.Signals(-code).name}"
        if code > 128:  # unshare reports the worker's death by signal as 128 + n
            try:
                return f"the student's code died of signal {signal.Signals(code - 128).name}"
            except ValueError:
                pass
        return f"the student's code ended the process (exit code {code})"

    def kill(self) -> None:
        """Kill the worker's whole session; the PID namespace takes every process in it along."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self) -> None:
        if self.proc:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            self.kill()
            if not self.isolated:  # no PID namespace: at least everything in its session
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def student_output(self) -> str:
        text = self.log.decode("utf-8", "replace")
        return text + (f"\n[... {self.log_dropped} bytes of output dropped]" if self.log_dropped else "")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
