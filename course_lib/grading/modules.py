"""Modules as plain data across the sandbox boundary: a description of their layers and a tracker of their state.

Both sides of sandboxed grading (:mod:`~course_lib.grading.remote`, :mod:`~course_lib.grading.worker`)
describe an ``nn.Module`` the same way, without pickle::

    {"nodes": [{"class": "torch.nn.modules.conv.Conv2d", "attrs": {"stride": (1, 1), ...},
                "training": true, "params": [["weight", 0], ["bias", null]],
                "buffers": [["running_mean", 1, true]], "children": [["0", 3]]}, ...],
     "tensors": [tensor 0, tensor 1, ...]}

Node 0 is the module itself, every sub-module appears once (a shared one is referred to by its
index), and a tensor shared by two layers is one entry of ``tensors``. ``attrs`` keeps only plain
attributes (numbers, strings, tuples of them): what a check reads from a layer (``stride``,
``groups``, ``num_features``, ...). :func:`rebuild` makes a module from a description, taking each
node's class from a ``resolve`` function: the grader trusts only ``torch.nn`` classes by name;
the worker rebuilds only ``torch.nn`` and ``course_lib`` classes.

A :class:`Tracker` follows the state of one module (every tensor by its place, ``node.params[name]``,
and every node's ``training`` flag) and reports what changed since the last synchronisation, so
that each side sends the other only the tensors that changed: the two copies stay equal while
either side loads weights, converts to float64, switches ``train()``/``eval()``, or trains.

When the student's code changes the layers themselves (``model.classifier[-1] = nn.Linear(...)``,
a layer deleted or added), the worker's tracker sees a new :func:`structure` and sends the whole new
description with each node's *provenance* (the old node it is, or none for a new one);
:func:`restructure` rearranges the other side's nodes in place the same way, keeping the objects that
a check may hold (the module itself, an unchanged layer) and making only the new layers.
"""
from __future__ import annotations

import re
import zlib

import torch
from torch import nn

NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")     # parameter, buffer and child names
ATTR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_.<>]{0,200}$")
MAX_NODES, MAX_TENSORS, MAX_ATTRS = 5000, 20000, 64
_INTERNAL = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "training", "forward"}


class ModuleError(TypeError):
    """A module (or a description of one) that cannot cross the sandbox boundary."""


def plain(value, depth: int = 0) -> bool:
    """Numbers, strings, ``None`` and short lists/tuples of them, with exact types."""
    if value is None or type(value) in (bool, int, float, str):
        return type(value) is not str or len(value) <= 200
    if type(value) in (list, tuple) and depth < 3 and len(value) <= 64:
        return all(plain(v, depth + 1) for v in value)
    return False


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(module: nn.Module) -> tuple[dict, list[nn.Module]]:
    """``(description, nodes)``: the plain-data description of ``module`` and its nodes in order."""
    nodes: list[nn.Module] = []
    index: dict[int, int] = {}
    tensors: list[torch.Tensor] = []
    tindex: dict[int, int] = {}
    out: list[dict] = []

    def tensor_id(t):
        if t is None:
            return None
        if id(t) not in tindex:
            tindex[id(t)] = len(tensors)
            tensors.append(t)
        return tindex[id(t)]

    def visit(m: nn.Module) -> int:
        if id(m) in index:
            return index[id(m)]
        if len(nodes) >= MAX_NODES:
            raise ModuleError(f"a module with more than {MAX_NODES} layers cannot cross the sandbox")
        i = index[id(m)] = len(nodes)
        nodes.append(m)
        node: dict = {"class": class_name(type(m)),  # and the classes it derives from, but nn.Module's own
                      "bases": [class_name(c) for c in type(m).__mro__[1:] if c not in nn.Module.__mro__][:16]}
        out.append(node)
        attrs = {k: v for k, v in vars(m).items() if k not in _INTERNAL and not k.startswith("__")
                 and ATTR.match(k) and plain(v)}
        node["attrs"] = dict(list(attrs.items())[:MAX_ATTRS])
        node["training"] = bool(m.training)
        node["params"] = [[k, tensor_id(p)] for k, p in m._parameters.items()]
        node["buffers"] = [[k, tensor_id(b), k not in m._non_persistent_buffers_set] for k, b in m._buffers.items()]
        node["children"] = [[k, None if c is None else visit(c)] for k, c in m._modules.items()]
        return i

    visit(module)
    if len(tensors) > MAX_TENSORS:
        raise ModuleError(f"a module with more than {MAX_TENSORS} tensors cannot cross the sandbox")
    return {"nodes": out, "tensors": tensors}, nodes


def locations(description: dict) -> list[tuple[int, str, str]]:
    """Where each tensor of a description lives first: ``(node, "p" or "b", name)``."""
    where: dict[int, tuple[int, str, str]] = {}
    for n, node in enumerate(description["nodes"]):
        for kind, entries in (("p", node["params"]), ("b", node["buffers"])):
            for entry in entries:
                if entry[1] is not None:
                    where.setdefault(entry[1], (n, kind, entry[0]))
    return [where[i] for i in range(len(description["tensors"]))]


def validate(description) -> dict:
    """Check every type and index of a description that came from the other side; returns it."""
    def bad(why):
        raise ModuleError(f"malformed module description: {why}")

    if type(description) is not dict or set(description) != {"nodes", "tensors"}:
        bad("not a description")
    nodes, tensors = description["nodes"], description["tensors"]
    if type(nodes) is not list or not 0 < len(nodes) <= MAX_NODES or type(tensors) is not list \
            or len(tensors) > MAX_TENSORS or not all(type(t) is torch.Tensor for t in tensors):
        bad("nodes or tensors")
    used, parents = set(), {i: [] for i in range(len(nodes))}
    for n, node in enumerate(nodes):
        if type(node) is not dict or set(node) != {"class", "bases", "attrs", "training", "params", "buffers",
                                                   "children"}:
            bad(f"node {n}")
        if type(node["class"]) is not str or not CLASS.match(node["class"]) or type(node["training"]) is not bool:
            bad(f"node {n}: class")
        if type(node["bases"]) is not list or len(node["bases"]) > 16 or not all(
                type(b) is str and CLASS.match(b) for b in node["bases"]):
            bad(f"node {n}: bases")
        attrs = node["attrs"]
        if type(attrs) is not dict or len(attrs) > MAX_ATTRS or not all(
                type(k) is str and ATTR.match(k) and k not in _INTERNAL and not k.startswith("__") and plain(v)
                for k, v in attrs.items()):
            bad(f"node {n}: attributes")
        names = set()
        for key, width in (("params", 2), ("buffers", 3), ("children", 2)):
            entries = node[key]
            if type(entries) is not list:
                bad(f"node {n}: {key}")
            for entry in entries:
                if type(entry) is not list or len(entry) != width or type(entry[0]) is not str \
                        or not NAME.match(entry[0]) or entry[0] in names:
                    bad(f"node {n}: {key} entry")
                names.add(entry[0])
                ref, limit = entry[1], len(nodes) if key == "children" else len(tensors)
                if ref is not None and (type(ref) is not int or not 0 <= ref < limit):
                    bad(f"node {n}: {key} index")
                if key == "buffers" and type(entry[2]) is not bool:
                    bad(f"node {n}: buffer flag")
                if key == "children" and ref is not None:
                    if ref == 0:
                        bad("a layer contains the whole module")
                    parents[ref].append(n)
                elif ref is not None:
                    used.add(ref)
    if used != set(range(len(tensors))):
        bad("tensors without a place")
    # every node reachable from node 0 and no cycle: a topological order exists
    order, pending = [], {i: len(p) for i, p in parents.items()}
    ready = [i for i, k in pending.items() if k == 0]
    children = {n: [c[1] for c in node["children"] if c[1] is not None] for n, node in enumerate(nodes)}
    while ready:
        n = ready.pop()
        order.append(n)
        for c in children[n]:
            pending[c] -= 1
            if pending[c] == 0:
                ready.append(c)
    if len(order) != len(nodes) or [i for i, k in parents.items() if not k] != [0]:
        bad("the layers do not form a tree (or a graph without cycles) under the module")
    return description


def rebuild(description: dict, resolve) -> list[nn.Module]:
    """The nodes of a new module made from a validated description; ``resolve(class name, bases) -> class``.

    No ``__init__`` runs: each node is ``cls.__new__(cls)`` with ``nn.Module``'s own set-up, the
    plain attributes, the tensors (parameters as ``nn.Parameter``, shared where they were shared)
    and the children. This is how ``nn.Module`` objects are unpickled, minus pickle.
    """
    nodes: list[nn.Module] = []
    for node in description["nodes"]:
        cls = resolve(node["class"], tuple(node["bases"]))
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        # an attribute may not hide what the class defines (a method, a property): `self.parameters = ()`
        # in the student's layer must not change what a check calls on the mirror
        m.__dict__.update({k: v for k, v in node["attrs"].items() if plain(getattr(cls, k, None))})
        m.training = node["training"]
        nodes.append(m)
    made: dict[int, torch.Tensor] = {}
    for m, node in zip(nodes, description["nodes"]):
        for name, ref in node["params"]:
            if ref is not None and ref not in made:
                t = description["tensors"][ref]
                made[ref] = nn.Parameter(t.detach(), requires_grad=t.requires_grad and t.is_floating_point())
            m._parameters[name] = None if ref is None else made[ref]
        for name, ref, persistent in node["buffers"]:
            if ref is not None and ref not in made:
                made[ref] = description["tensors"][ref].detach()
            m._buffers[name] = None if ref is None else made[ref]
            if not persistent:
                m._non_persistent_buffers_set.add(name)
        for name, ref in node["children"]:
            m._modules[name] = None if ref is None else nodes[ref]
    return nodes


def structure(description: dict, nodes: list[nn.Module]) -> list[tuple]:
    """The layers of a described module and where its tensors sit, without their values: what a
    ``model.fc = nn.Linear(...)`` changes and a training step does not."""
    return [(id(m), node["class"], tuple(map(tuple, node["params"])), tuple(map(tuple, node["buffers"])),
             tuple(map(tuple, node["children"]))) for m, node in zip(nodes, description["nodes"])]


class ForeignLayerError(ModuleError):
    """A layer that is not ``torch.nn``'s was to be put into a module of the grader's."""


def torch_nn_class(name: str) -> type | None:
    """The ``torch.nn`` layer class of exactly this name (``torch.nn.modules.conv.Conv2d``), else ``None``."""
    if name.startswith("torch.nn.modules."):
        cls = getattr(nn, name.rsplit(".", 1)[1], None)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and class_name(cls) == name:
            return cls
    return None


def torch_class(name: str, bases: tuple[str, ...] = ()) -> type:
    """A ``torch.nn`` layer class by its exact name; nothing else (a layer put into the grader's module)."""
    cls = torch_nn_class(name)
    if cls is None:
        raise ForeignLayerError(f"only torch.nn layers can be put into a module of the grader's, not the class "
                                f"{name.rsplit('.', 1)[-1]}")
    return cls


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
    if type(provenance) is not list or len(provenance) != len(nodes_in) or provenance[0] != 0:
        raise ModuleError("malformed provenance of a changed module")
    kept = [k for k in provenance if k is not None]
    if not all(type(k) is int and 0 <= k < len(old) for k in kept) or len(set(kept)) != len(kept):
        raise ModuleError("malformed provenance of a changed module")
    for node, k in zip(nodes_in, provenance):  # every refusal before the first change
        if k is not None and _class_of(old[k]) != node["class"]:
            raise ModuleError(f"a layer of class {_class_of(old[k])} claims to be a {node['class']}")
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
    made: dict[int, torch.Tensor] = {}
    claimed: set[int] = set()

    def place(previous: dict, name: str, ref: int, parameter: bool) -> torch.Tensor:
        if ref not in made:
            value, t = description["tensors"][ref], previous.get(name)
            grad = bool(value.requires_grad) and value.is_floating_point()
            if t is not None and id(t) not in claimed and t.shape == value.shape and t.dtype == value.dtype:
                with torch.no_grad():
                    t.copy_(value)
                if parameter and t.is_floating_point():
                    t.requires_grad_(grad)
            else:
                t = nn.Parameter(value.detach(), requires_grad=grad) if parameter else value.detach()
            made[ref] = t
            claimed.add(id(t))
        return made[ref]

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
        description, nodes = describe(self.nodes[0])
        if structure(description, nodes) == self.shape:
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
