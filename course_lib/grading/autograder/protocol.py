"""The messages between the grader and the sandboxed worker, and the plain-data encoding of their values
(never pickle). Both sides use this module only: :class:`Request`, :class:`Reply` and :class:`Ready`
are the message schema (see ``README.md`` next to this file), :func:`encode`/:func:`decode` the values.

A value crosses the sandbox boundary as JSON: ``None``, ``bool``, ``int``, ``float``, ``str``,
lists, tuples (``{"__tuple__": [...]}``), dicts with string keys (``{"__dict__": [[k, v], ...]}``;
an ``OrderedDict``, e.g. a state_dict from ``torch.load``, crosses as a plain dict),
torch dtypes (``{"__dtype__": "float32"}``), CPU tensors as their raw bytes
(``{"__tensor__": {"dtype", "shape", "data": base64}}``) and CPU ``torch.Generator`` s as their state
(``{"__generator__": <tensor body>}``; a copy: draws on the other side do not advance the sender's). Decoding builds only those exact types, so
an object whose ``__eq__`` always says ``True``, a tensor subclass or anything that runs code when
it is read back cannot reach the grader: it fails to encode, and the test that asked for it fails.
"""
from __future__ import annotations

import base64
import collections
import io
import json
import math
import random
import re
from dataclasses import dataclass, field, fields

import numpy as np
import torch

#: dtypes that may cross (name -> dtype); anything else is refused.
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128)}
MAX_DEPTH = 20
#: A name of the student's that may be looked up or shown (function, class, exception).
SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}$")
#: Characters of printed output kept: per call of the student's code, and per test cell.
OUTPUT_CAP = 64 * 1024


class WireError(TypeError):
    """A value cannot cross the sandbox boundary (an unsupported type, or a malformed message)."""


def encode(value, depth: int = 0, hook=None):
    """``value`` as JSON-ready plain data; raises :class:`WireError` for anything else.

    ``hook(value)``, where given, encodes what is not plain data (a remote module's handle, see
    :mod:`course_lib.grading.autograder.proxy`) or raises :class:`WireError`. A tensor that requires grad says so
    (``"requires_grad": true``); only a :func:`decode` given a ``grad`` list honours it.
    """
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if kind in (list, tuple):
        items = [encode(v, depth + 1, hook) for v in value]
        return items if kind is list else {"__tuple__": items}
    if kind is torch.Size:
        return {"__tuple__": [int(v) for v in value]}
    if kind is dict or kind is collections.OrderedDict:  # exact types: no overridden items()
        if not all(type(k) is str for k in value):
            raise WireError("dict keys must be str")
        return {"__dict__": [[k, encode(v, depth + 1, hook)] for k, v in value.items()]}
    if kind is torch.dtype:
        name = str(value).removeprefix("torch.")
        if name not in DTYPES:
            raise WireError(f"dtype {value} cannot cross the sandbox")
        return {"__dtype__": name}
    if kind in (torch.Tensor, torch.nn.Parameter):
        return _encode_tensor(value)
    if kind is torch.Generator:
        if value.device.type != "cpu":
            raise WireError(f"a generator on {value.device} cannot cross the sandbox (only CPU generators)")
        return {"__generator__": _encode_tensor(value.get_state())["__tensor__"]}
    module = getattr(kind, "__module__", "")
    if module == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return encode(value.item(), depth)  # a NumPy scalar (np.int64 from a formula) as int/float/bool
    if hook is not None:
        return hook(value)
    raise WireError(f"a value of type {kind.__name__} cannot cross the sandbox "
                    "(return tensors, numbers, strings, lists, tuples or dicts)")


def _encode_tensor(t: torch.Tensor) -> dict:
    grad = t.requires_grad
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    name = str(t.dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise WireError(f"tensor dtype {t.dtype} cannot cross the sandbox")
    data = t.contiguous().view(-1).view(torch.uint8) if t.numel() and t.dtype != torch.uint8 else t.contiguous().view(-1)
    raw = bytes(data.numpy().tobytes()) if t.numel() else b""
    body = {"dtype": name, "shape": list(t.shape), "data": base64.b64encode(raw).decode("ascii")}
    if grad:
        body["requires_grad"] = True
    return {"__tensor__": body}


def decode(data, depth: int = 0, hook=None, grad=None):
    """The inverse of :func:`encode`, checking every type exactly.

    ``hook(tag, body)`` decodes the tags that :func:`encode`'s hook wrote; any other tag is malformed.
    ``grad``: a list; a floating tensor marked ``requires_grad`` is made a leaf that requires grad
    and appended to it (the inputs a remote call differentiates with respect to). ``None``: ignored.
    """
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [decode(v, depth + 1, hook, grad) for v in data]
    if kind is not dict or len(data) != 1:
        raise WireError(f"malformed value of type {kind.__name__}")
    (tag, body), = data.items()
    if tag == "__tuple__" and type(body) is list:
        return tuple(decode(v, depth + 1, hook, grad) for v in body)
    if tag == "__dict__" and type(body) is list:
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                raise WireError("malformed dict entry")
            out[pair[0]] = decode(pair[1], depth + 1, hook, grad)
        return out
    if tag == "__float__" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "__dtype__" and type(body) is str and body in DTYPES:
        return DTYPES[body]
    if tag == "__tensor__" and type(body) is dict:
        t = _decode_tensor(body)
        if grad is not None and body.get("requires_grad") is True and t.is_floating_point():
            t.requires_grad_(True)
            grad.append(t)
        return t
    if tag == "__generator__" and type(body) is dict:
        state = _decode_tensor(body)
        if state.dtype != torch.uint8 or state.dim() != 1 or body.get("requires_grad") is not None:
            raise WireError("malformed generator state")
        generator = torch.Generator()
        try:
            generator.set_state(state)
        except (RuntimeError, ValueError) as err:
            raise WireError(f"malformed generator state: {str(err)[:80]}") from None
        return generator
    if hook is not None and type(tag) is str and tag.startswith("__remote_"):
        return hook(tag, body)
    raise WireError(f"malformed value tagged {str(tag)[:40]!r}")


def _decode_tensor(body: dict) -> torch.Tensor:
    dtype, shape, data = body.get("dtype"), body.get("shape"), body.get("data")
    if not set(body) <= {"dtype", "shape", "data", "requires_grad"}:
        raise WireError("malformed tensor")
    if type(dtype) is not str or dtype not in DTYPES or type(shape) is not list or type(data) is not str:
        raise WireError("malformed tensor")
    if not all(type(s) is int and 0 <= s for s in shape) or len(shape) > 16:
        raise WireError(f"malformed tensor shape {shape!r:.80}")
    raw = base64.b64decode(data, validate=True)
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    if len(raw) != numel * itemsize:
        raise WireError(f"tensor of shape {shape} and dtype {dtype} with {len(raw)} bytes")
    if numel == 0:
        return torch.empty(shape, dtype=DTYPES[dtype])
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return flat.view(DTYPES[dtype]).reshape(shape).clone()


def random_states() -> dict:
    """The global random generators of torch, Python's ``random`` and NumPy, as plain data.

    They travel with every call both ways, so that seeded code draws the same numbers sandboxed as
    it would in the grader's interpreter (a check that seeds NumPy, then calls the student's code).
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}


def set_random_states(states) -> None:
    """Set the generators to what :func:`random_states` gave on the other side (already decoded).

    Raises:
        WireError: anything but the exact shape of such a state; nothing is set then.
    """
    def bad(what):
        raise WireError(f"malformed random state ({what})")

    if type(states) is not dict or set(states) != {"torch", "python", "numpy"}:
        bad("keys")
    t, py, npy = states["torch"], states["python"], states["numpy"]
    if type(t) is not torch.Tensor or t.dtype != torch.uint8 or t.shape != torch.get_rng_state().shape:
        bad("torch")
    if type(py) is not list or len(py) != 3 or type(py[0]) is not int or type(py[1]) is not torch.Tensor \
            or py[1].dtype != torch.int64 or py[1].shape != (625,) or not (py[2] is None or type(py[2]) is float) \
            or not bool(((py[1] >= 0) & (py[1] < 2**32)).all()):
        bad("python")
    if type(npy) is not list or len(npy) != 5 or npy[0] != "MT19937" or type(npy[1]) is not torch.Tensor \
            or npy[1].dtype != torch.int64 or npy[1].shape != (624,) or not bool(((npy[1] >= 0) & (npy[1] < 2**32)).all()) \
            or type(npy[2]) is not int or not 0 <= npy[2] <= 624 or type(npy[3]) is not int or type(npy[4]) is not float:
        bad("numpy")
    try:
        random.setstate((py[0], tuple(py[1].tolist()), py[2]))
    except (TypeError, ValueError) as err:
        bad(f"python: {str(err)[:60]}")
    np.random.set_state((npy[0], npy[1].numpy().astype(np.uint32), npy[2], npy[3], npy[4]))
    torch.set_rng_state(t)


# -- walking values -------------------------------------------------------------------------------
def leaves(value, keep) -> list:
    """The leaves of ``value`` (through lists, tuples and dict values) for which ``keep(leaf)`` holds,
    in the order :func:`encode` writes them."""
    if type(value) in (list, tuple):
        return [leaf for v in value for leaf in leaves(v, keep)]
    if type(value) is dict:
        return [leaf for v in value.values() for leaf in leaves(v, keep)]
    return [value] if keep(value) else []


def needs_grad(value) -> bool:
    """A tensor that a remote call differentiates with respect to (or whose gradient it returns)."""
    return type(value) in (torch.Tensor, torch.nn.Parameter) and value.requires_grad and value.is_floating_point()


# -- optimizer state ------------------------------------------------------------------------------
def optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` as encodable data (its integer-keyed state as pairs)."""
    state = optimizer.state_dict()
    return {"state": [[k, v] for k, v in state["state"].items()], "param_groups": state["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state) -> None:
    """The inverse of :func:`optimizer_state` (already decoded); raises :class:`WireError` if malformed."""
    if type(state) is not dict or not {"state", "param_groups"} <= set(state) or type(state["state"]) is not list:
        raise WireError("malformed optimizer state")
    optimizer.load_state_dict({"state": {k: v for k, v in state["state"]}, "param_groups": state["param_groups"]})


# -- printed output -------------------------------------------------------------------------------
class CappedText(io.TextIOBase):
    """A ``sys.stdout`` that keeps the first :data:`OUTPUT_CAP` characters and says how many it cut."""

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


# -- messages -------------------------------------------------------------------------------------
class _Message:
    """A dataclass sent as one JSON line; unset (``None``) fields are left out."""

    def to_json(self) -> str:
        body = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return json.dumps(body, allow_nan=False)

    @classmethod
    def from_message(cls, message):
        """The message from its parsed JSON; unknown keys are ignored, a non-object is malformed."""
        if type(message) is not dict:
            raise WireError(f"malformed {cls.__name__.lower()}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in message.items() if k in names})


@dataclass
class Cells(_Message):
    """grader -> worker, first: the student's code cells to run."""
    cells: list


@dataclass
class Ready(_Message):
    """worker -> grader, once the cells ran: the names they defined and the errors they raised."""
    ready: bool = True
    functions: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    errors: list = field(default_factory=list)


@dataclass
class Request(_Message):
    """grader -> worker: one call. Exactly one target is set: ``call`` (a function or class of the student's
    by name), ``module`` (``[handle, node]``: a remote module's forward), ``deepcopy`` (a handle) or ``vjp``
    (a kept graph, with the output gradients ``grads``). Values are :func:`encode` d."""
    call: str | None = None
    module: list | None = None
    deepcopy: int | None = None
    vjp: int | None = None
    grads: object = None
    args: object = field(default_factory=list)
    kwargs: object = field(default_factory=lambda: {"__dict__": []})
    uploads: list = field(default_factory=list)      # descriptions of the grader's modules passed along
    optimizers: list = field(default_factory=list)   # the grader's optimizers: class, params, state
    forbidden: list = field(default_factory=list)    # dotted names the call may not use (compare.FROM_SCRATCH)
    grad: bool = False                               # autograd on: the reply describes a graph
    rng: object = None                               # random_states() of the grader
    sync: list = field(default_factory=list)         # [[handle, changed tensors], ...] of the mirrors
    release: list = field(default_factory=list)      # handles the grader no longer holds
    record: list = field(default_factory=list)       # layers whose inputs/outputs the forward hooks want


@dataclass
class Reply(_Message):
    """worker -> grader: the call's ``value`` or the exception it ``raised`` (``message``, ``where``), and
    what changed in the worker (``sync``, ``uploads``, ``restructure``, ``optimizers``, ``rng``), the
    printed output, the kept graph (``graph``, ``graph_args``, ``graph_params``) and ``recorded`` forward
    hook inputs/outputs. Untrusted: the grader checks each field where it uses it."""
    value: object = None
    returned: bool = False                           # a value came back (``value`` may be None)
    raised: object = None
    message: object = None
    where: object = None
    sync: object = None
    uploads: object = None
    restructure: object = None
    optimizers: object = None
    rng: object = None
    stdout: object = None
    stderr: object = None
    graph: object = None
    graph_args: object = None
    graph_params: object = None
    recorded: object = None
