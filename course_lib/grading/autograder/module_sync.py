"""Keeping a module and its copy on the other side of the sandbox equal, call after call.

A :class:`Tracker` follows the state of one module (every tensor by its place, ``node.params[name]``,
and every node's ``training`` flag) and reports what changed since the last synchronisation, so
that each side sends the other only the tensors that changed: the two copies stay equal while
either side loads weights, converts to float64, switches ``train()``/``eval()``, or trains.

When the student's code changes the layers themselves (``model.classifier[-1] = nn.Linear(...)``,
a layer deleted or added), the worker's tracker sees a new :func:`~module_codec.structure` and sends
the whole new description with each node's *provenance* (the old node it is, or none for a new one);
:func:`restructure` rearranges the other side's nodes in place the same way, keeping the objects that
a check may hold (the module itself, an unchanged layer) and making only the new layers.
Descriptions are :mod:`~course_lib.grading.autograder.module_codec`'s.
"""
from __future__ import annotations

import zlib

import torch
from torch import nn

from course_lib.grading.autograder import module_codec
from course_lib.grading.autograder.module_codec import ModuleError, class_name, plain


def _class_of(m: nn.Module) -> str:
    """The class name a node was described with (a mirror of a student's layer remembers the original)."""
    return type(m).__dict__.get("__student_class__") or class_name(type(m))


def restructure(old: list[nn.Module], description: dict, provenance, resolve) -> list[nn.Module]:
    """Rearrange the module ``old[0]`` (nodes ``old``) in place into a validated ``description``.

    ``provenance[j]`` is the index in ``old`` of the description's node ``j``, or ``None`` for a layer
    that is new (made with ``resolve(class name, bases)`` as :func:`rebuild` does). A kept layer keeps
    its object and its tensors' objects where shape and dtype still fit (their values are copied in),
    so references that a check holds stay valid. Returns the nodes in the description's order.
    """
    nodes_in = description["nodes"]
    _check_provenance(old, nodes_in, provenance)
    classes = [resolve(node["class"], tuple(node["bases"])) if k is None else None
               for node, k in zip(nodes_in, provenance)]
    nodes: list[nn.Module] = []
    for node, k, cls in zip(nodes_in, provenance, classes):
        if k is None:
            m = cls.__new__(cls)
            nn.Module.__init__(m)
        else:
            m = old[k]
        m.__dict__.update({a: v for a, v in node["attrs"].items() if plain(getattr(type(m), a, None))})
        m.training = node["training"]
        nodes.append(m)
    place = _Placer(description["tensors"])
    for m, node in zip(nodes, nodes_in):
        params, buffers = dict(m._parameters), dict(m._buffers)
        m._parameters.clear()
        m._buffers.clear()
        m._non_persistent_buffers_set.clear()
        m._modules.clear()
        for name, ref in node["params"]:
            m._parameters[name] = None if ref is None else place(params, name, ref, True)
        for name, ref, persistent in node["buffers"]:
            m._buffers[name] = None if ref is None else place(buffers, name, ref, False)
            if not persistent:
                m._non_persistent_buffers_set.add(name)
        for name, ref in node["children"]:
            m._modules[name] = None if ref is None else nodes[ref]
    return nodes


def _check_provenance(old: list[nn.Module], nodes_in: list, provenance) -> None:
    """Every refusal before the first change: each kept layer named once, and of its own class."""
    if type(provenance) is not list or len(provenance) != len(nodes_in) or provenance[0] != 0:
        raise ModuleError("malformed provenance of a changed module")
    kept = [k for k in provenance if k is not None]
    if not all(type(k) is int and 0 <= k < len(old) for k in kept) or len(set(kept)) != len(kept):
        raise ModuleError("malformed provenance of a changed module")
    for node, k in zip(nodes_in, provenance):
        if k is not None and _class_of(old[k]) != node["class"]:
            raise ModuleError(f"a layer of class {_class_of(old[k])} claims to be a {node['class']}")


class _Placer:
    """The tensor for a description's index: the layer's previous tensor of that name where shape and dtype
    fit (its values copied in, so a check's references stay valid), else a new one; each used once."""

    def __init__(self, tensors: list):
        self.tensors, self.made, self.claimed = tensors, {}, set()

    def __call__(self, previous: dict, name: str, ref: int, parameter: bool) -> torch.Tensor:
        if ref not in self.made:
            value, t = self.tensors[ref], previous.get(name)
            grad = bool(value.requires_grad) and value.is_floating_point()
            if t is not None and id(t) not in self.claimed and t.shape == value.shape and t.dtype == value.dtype:
                with torch.no_grad():
                    t.copy_(value)
                if parameter and t.is_floating_point():
                    t.requires_grad_(grad)
            else:
                t = nn.Parameter(value.detach(), requires_grad=grad) if parameter else value.detach()
            self.made[ref] = t
            self.claimed.add(id(t))
        return self.made[ref]


def fingerprint(t: torch.Tensor | None) -> tuple:
    """Changes whenever the tensor is replaced, reallocated, converted or written.

    The version counter alone misses writes: BatchNorm's kernel updates its running statistics in
    place without counting, and so does ``p.data -= lr * p.grad`` (``.data`` has a counter of its
    own). So the bytes are checksummed too (Adler-32, about a millisecond per megabyte).
    """
    if t is None:
        return (None,)
    data = t.detach()
    raw = data.cpu().contiguous().reshape(-1).view(torch.uint8).numpy() if data.numel() else b""
    return (id(t), data.data_ptr() if data.numel() else 0, t.dtype, tuple(t.shape), t._version, t.requires_grad,
            zlib.adler32(raw))


class Tracker:
    """The state of one module: every tensor at its place and every node's ``training`` flag."""

    def __init__(self, nodes: list[nn.Module], places: list[tuple[int, str, str]], shape: list | None = None):
        self.nodes, self.places = nodes, places
        self.shape = shape  # the structure() to watch; None: not watched
        self.mark()

    def restructured(self) -> tuple[dict, list[nn.Module], list] | None:
        """``(description, nodes, provenance)`` when the layers changed from the watched ``shape``,
        else ``None``; see :func:`restructure`."""
        if self.shape is None:
            return None
        description, nodes = module_codec.describe(self.nodes[0])
        if module_codec.structure(description, nodes) == self.shape:
            return None
        index = {id(m): i for i, m in enumerate(self.nodes)}
        return description, nodes, [index.get(id(m)) for m in nodes]

    def tensor(self, i: int) -> torch.Tensor:
        n, kind, name = self.places[i]
        store = self.nodes[n]._parameters if kind == "p" else self.nodes[n]._buffers
        t = store.get(name)
        if t is None:
            raise ModuleError(f"the module lost its {'parameter' if kind == 'p' else 'buffer'} {name!r} during a call")
        return t

    def mark(self) -> None:
        """Remember the current state as the one both sides share."""
        self.prints = [fingerprint(self.tensor(i)) for i in range(len(self.places))]
        self.training = [bool(m.training) for m in self.nodes]

    def changes(self) -> dict | None:
        """What changed since :meth:`mark` (``None``: nothing); marks the state as shared."""
        values = [[i, self.tensor(i)] for i in range(len(self.places))
                  if fingerprint(self.tensor(i)) != self.prints[i]]
        training = [bool(m.training) for m in self.nodes]
        if not values and training == self.training:
            return None
        self.mark()
        return {"values": values, "training": training}

    def apply(self, changes) -> None:
        """Take the other side's changes (already decoded; checked here)."""
        if type(changes) is not dict or set(changes) != {"values", "training"}:
            raise ModuleError("malformed module state")
        values, training = changes["values"], changes["training"]
        if type(training) is not list or len(training) != len(self.nodes) or \
                not all(type(f) is bool for f in training) or type(values) is not list:
            raise ModuleError("malformed module state")
        for entry in values:
            if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int \
                    or not 0 <= entry[0] < len(self.places) or type(entry[1]) is not torch.Tensor:
                raise ModuleError("malformed module state")
            i, value = entry
            t, (n, kind, name) = self.tensor(i), self.places[i]
            with torch.no_grad():
                if t.shape == value.shape and t.dtype == value.dtype:
                    t.copy_(value)
                elif kind == "p":
                    t.data = value.detach()
                else:
                    self.nodes[n]._buffers[name] = value.detach()
            if kind == "p" and t.is_floating_point():
                t.requires_grad_(bool(value.requires_grad))
        for m, flag in zip(self.nodes, training):
            m.training = flag
        self.mark()
