"""Modules as plain data across the sandbox boundary: a description of their layers and tensors.

Both sides of sandboxed grading (:mod:`~course_lib.grading.autograder.proxy`, :mod:`~course_lib.grading.autograder.worker`)
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

Keeping the two copies equal call after call (what changed, layers replaced) is
:mod:`~course_lib.grading.autograder.module_sync`'s part.
"""
from __future__ import annotations

import re

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


def _bad(why):
    raise ModuleError(f"malformed module description: {why}")


def validate(description) -> dict:
    """Check every type and index of a description that came from the other side; returns it."""
    if type(description) is not dict or set(description) != {"nodes", "tensors"}:
        _bad("not a description")
    nodes, tensors = description["nodes"], description["tensors"]
    if type(nodes) is not list or not 0 < len(nodes) <= MAX_NODES or type(tensors) is not list \
            or len(tensors) > MAX_TENSORS or not all(type(t) is torch.Tensor for t in tensors):
        _bad("nodes or tensors")
    used, parents = set(), {i: [] for i in range(len(nodes))}
    for n, node in enumerate(nodes):
        _validate_node(n, node)
        names = set()
        for key, width in (("params", 2), ("buffers", 3), ("children", 2)):
            for entry in _entries(n, node, key, width, names):
                ref, limit = entry[1], len(nodes) if key == "children" else len(tensors)
                if ref is not None and (type(ref) is not int or not 0 <= ref < limit):
                    _bad(f"node {n}: {key} index")
                if key == "children" and ref is not None:
                    if ref == 0:
                        _bad("a layer contains the whole module")
                    parents[ref].append(n)
                elif ref is not None:
                    used.add(ref)
    if used != set(range(len(tensors))):
        _bad("tensors without a place")
    _check_tree(nodes, parents)
    return description


def _validate_node(n: int, node) -> None:
    """A node's class, bases, flags and plain attributes."""
    if type(node) is not dict or set(node) != {"class", "bases", "attrs", "training", "params", "buffers", "children"}:
        _bad(f"node {n}")
    if type(node["class"]) is not str or not CLASS.match(node["class"]) or type(node["training"]) is not bool:
        _bad(f"node {n}: class")
    if type(node["bases"]) is not list or len(node["bases"]) > 16 or not all(
            type(b) is str and CLASS.match(b) for b in node["bases"]):
        _bad(f"node {n}: bases")
    attrs = node["attrs"]
    if type(attrs) is not dict or len(attrs) > MAX_ATTRS or not all(
            type(k) is str and ATTR.match(k) and k not in _INTERNAL and not k.startswith("__") and plain(v)
            for k, v in attrs.items()):
        _bad(f"node {n}: attributes")


def _entries(n: int, node: dict, key: str, width: int, names: set) -> list:
    """A node's ``params``/``buffers``/``children`` entries, each ``[unique name, index(, flag)]``."""
    entries = node[key]
    if type(entries) is not list:
        _bad(f"node {n}: {key}")
    for entry in entries:
        if type(entry) is not list or len(entry) != width or type(entry[0]) is not str \
                or not NAME.match(entry[0]) or entry[0] in names:
            _bad(f"node {n}: {key} entry")
        names.add(entry[0])
        if key == "buffers" and type(entry[2]) is not bool:
            _bad(f"node {n}: buffer flag")
    return entries


def _check_tree(nodes: list, parents: dict) -> None:
    """Every node reachable from node 0 and no cycle: a topological order exists."""
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
        _bad("the layers do not form a tree (or a graph without cycles) under the module")


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
