"""The untrusted side of sandboxed grading: runs inside the sandbox (:mod:`course_lib.grading.sandbox`).

    python -I -m course_lib.grading.worker      (stdin/stdout: JSON lines, one message each)

It executes the student's code cells, and only those (the test cells stay with the grader), in a plain
Python interpreter: no IPython, so no input or AST transformers, magics or ``get_ipython`` hooks.
Lines starting with ``%`` or ``!`` (IPython magics and shell escapes) are commented out. Then it
answers calls of the functions the cells defined::

    -> {"cells": ["source", ...]}
    <- {"ready": true, "functions": ["conv2d", ...], "errors": ["cell 3: ValueError: ...", ...]}
    -> {"call": "conv2d", "args": [...], "kwargs": {...}, "forbidden": ["torch.nn.functional.conv2d"]}
    <- {"value": ...} | {"raised": "ValueError", "message": "...", ...}   (plus the call's "stdout"/"stderr")

Values are encoded by :mod:`course_lib.grading.wire` (never pickle). The protocol uses private
duplicates of stdin and stdout; the student's own output (file descriptors 1 and 2) goes to
stderr, which the grader reads with a byte cap.
"""
from __future__ import annotations

import io
import json
import os
import re
import sys
import traceback
import types

OUTPUT_CAP = 64 * 1024  # characters of a call's printed output sent back


class _CappedText(io.TextIOBase):
    def __init__(self, cap: int = OUTPUT_CAP):
        self.parts, self.size, self.cap = [], 0, cap

    def write(self, text):
        if self.size < self.cap:
            self.parts.append(text[: self.cap - self.size])
        self.size += len(text)
        return len(text)

    def getvalue(self) -> str:
        cut = f"\n[... {self.size - self.cap} characters cut]\n" if self.size > self.cap else ""
        return "".join(self.parts) + cut


def strip_magics(source: str) -> str:
    return re.sub(r"(?m)^(\s*)([%!])", r"\1# (not run by the grader) \2", source)


def _send(channel, message: dict) -> None:
    channel.write(json.dumps(message, allow_nan=False) + "\n")
    channel.flush()


def main() -> None:
    # Private protocol channels; the student's prints go to fd 2 and its reads see /dev/null.
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from course_lib.grading import wire
    from course_lib.grading.compare import ForbiddenCall, forbidding

    first = json.loads(proto_in.readline())
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    errors = []
    for number, source in enumerate(first["cells"]):
        try:
            exec(compile(strip_magics(source), f"<cell {number}>", "exec"), namespace)
        except BaseException as err:  # noqa: BLE001 - SystemExit too: a cell's failure is the student's
            errors.append(f"cell {number}: {type(err).__name__}: {err}"[:2000])
    functions = sorted(k for k, v in namespace.items() if isinstance(v, types.FunctionType) and not k.startswith("__"))
    _send(proto_out, {"ready": True, "functions": functions, "errors": errors})

    for line in proto_in:
        request = json.loads(line)
        out, err_text = _CappedText(), _CappedText()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err_text
        reply: dict
        try:
            fn = namespace.get(request["call"])
            if not callable(fn):
                raise NameError(f"name {request['call']!r} is not defined")
            args = wire.decode(request.get("args", []))
            kwargs = wire.decode(request.get("kwargs", {"__dict__": []}))
            with forbidding(tuple(request.get("forbidden", ()))):
                value = fn(*args, **kwargs)
            reply = {"value": wire.encode(value)}
        except BaseException as err:  # noqa: BLE001 - reported to the grader, which scores it
            kind = "ForbiddenCall" if isinstance(err, ForbiddenCall) else type(err).__name__
            if isinstance(err, wire.WireError):
                kind = "TypeError"
            tb = traceback.extract_tb(err.__traceback__)
            where = next((f"{f.filename}, line {f.lineno}" for f in reversed(tb) if f.filename.startswith("<cell")), "")
            reply = {"raised": kind[:80], "message": str(err)[:4000], "where": where}
        finally:
            sys.stdout, sys.stderr = saved
        reply.update(stdout=out.getvalue(), stderr=err_text.getvalue())
        _send(proto_out, reply)


if __name__ == "__main__":
    main()
