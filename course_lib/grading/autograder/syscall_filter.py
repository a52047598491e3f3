"""No kernel keyring inside the sandbox: a seccomp filter, installed before any student code runs.

The kernel keyrings are not files: a key a student adds with ``add_key`` to the user keyring (``@u``)
outlives the sandbox, and a later sandbox that runs as the same uid (the root path reuses a block of
uids from one grading run to the next) could read it; the session keyring (``@s``) is inherited from
the grader, so every sandbox would share it. Per-user-namespace keyrings (the rootless path) stop the
first, not the second, nor a concurrent sandbox of the same grader reading a key by its number. No
submission has a use for keys, so the worker refuses the three keyring system calls (``add_key``,
``request_key``, ``keyctl``) with ``EPERM`` for itself and every process it starts, as Docker's
default seccomp profile does. A filter cannot be removed once installed, and it is inherited.

    python -I -m course_lib.grading.autograder.syscall_filter     the filter, then the worker
"""
from __future__ import annotations

import ctypes
import errno
import platform
import runpy
import struct

# <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>
_LD_ABS_W, _JEQ_K, _JSET_K, _RET_K = 0x20, 0x15, 0x45, 0x06
_NR, _ARCH = 0, 4                                 # offsets in struct seccomp_data
_ALLOW, _ERRNO, _KILL = 0x7FFF0000, 0x00050000, 0x80000000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_X32_BIT = 0x40000000

#: audit arch -> (add_key, request_key, keyctl): every ABI a process of that machine can call.
KEYRING_CALLS = {
    "x86_64": {0xC000003E: (248, 249, 250), 0x40000003: (286, 287, 288)},   # x86-64 and its i386 ABI
    "aarch64": {0xC00000B7: (217, 218, 219), 0x40000028: (309, 310, 311)},  # arm64 and its arm ABI
}


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The BPF program: the keyring calls of each known ABI fail with EPERM, x32 calls too, a call of
    an unknown ABI kills the process, everything else is allowed."""
    calls = KEYRING_CALLS.get(machine or platform.machine())
    if calls is None:
        raise OSError(f"no keyring filter for {machine or platform.machine()} (known: {', '.join(KEYRING_CALLS)})")
    deny = _instruction(_RET_K, _ERRNO | errno.EPERM)
    out = []
    for arch, numbers in calls.items():
        block = [_instruction(_LD_ABS_W, _NR)]
        if arch == 0xC000003E:  # x32 system calls carry this bit; none is needed
            block += [_instruction(_JSET_K, _X32_BIT, 0, 1), deny]
        for number in numbers:
            block += [_instruction(_JEQ_K, number, 0, 1), deny]
        block.append(_instruction(_RET_K, _ALLOW))
        out += [_instruction(_LD_ABS_W, _ARCH), _instruction(_JEQ_K, arch, 0, len(block)), *block]
    out.append(_instruction(_RET_K, _KILL))
    return b"".join(out)


def install() -> None:
    """Refuse the keyring system calls in this process and all it starts (raises OSError if the kernel
    will not take the filter: the sandbox must then not run student code)."""
    libc = ctypes.CDLL(None, use_errno=True)
    code = program()
    buffer = ctypes.create_string_buffer(code, len(code))

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Program(len(code) // 8, ctypes.addressof(buffer))
    for args in ((_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                 (_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)):
        if libc.prctl(*[ctypes.c_ulong(a) for a in args]) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl{args[:2]}: {errno.errorcode.get(err, err)}")


if __name__ == "__main__":
    install()
    runpy.run_module("course_lib.grading.autograder.worker", run_name="__main__", alter_sys=True)
