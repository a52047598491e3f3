"""Mirrors: the grader's copies of the modules that live in the sandbox's worker.

A module that the student's code makes stays in the worker behind a handle; the grader gets a
mirror, an ``nn.Module`` rebuilt from its description (:mod:`~course_lib.grading.autograder.module_codec`)
with the same layers, names, plain attributes and real local tensors. Layers of ``torch.nn``
classes are mirrored by those very classes; the student's own classes by an empty
:class:`StudentModule` subclass of the same name. A mirror's ``forward`` and ``copy.deepcopy`` go to
the worker through its :class:`RemoteRoot` (the calls themselves: :mod:`~course_lib.grading.autograder.proxy`),
and :class:`RemoteBackward` carries gradients back through such a call.
"""
from __future__ import annotations

import types

import torch
from torch import nn

from course_lib.grading.autograder.module_codec import torch_nn_class
from course_lib.grading.autograder.module_sync import Tracker
from course_lib.grading.autograder.protocol import SAFE_NAME, Request


class StudentModule(nn.Module):
    """The mirror of a layer of the student's own class: its tensors and sub-layers, no code."""

    __student_class__ = "__main__.StudentModule"
    __student_bases__: tuple[str, ...] = ()

    def extra_repr(self) -> str:
        return f"student class {self.__student_class__}, runs in the sandbox"


_MIRROR_CLASSES: dict[tuple, type] = {}


def resolve_mirror(name: str, bases: tuple[str, ...] = ()) -> type:
    """``torch.nn`` classes by name (only if the name is exactly theirs); anything else a :class:`StudentModule`
    that remembers the names of the classes it derives from (for ``isinstance`` with a :class:`RemoteClass`)."""
    cls = torch_nn_class(name)
    if cls is not None:
        return cls
    key = (name, tuple(bases))
    if key not in _MIRROR_CLASSES:
        short = name.rsplit(".", 1)[-1]
        short = short if SAFE_NAME.match(short) else "StudentModule"
        _MIRROR_CLASSES[key] = type(short, (StudentModule,), {"__student_class__": name, "__module__": "student",
                                                               "__student_bases__": tuple(bases)})
    return _MIRROR_CLASSES[key]


class RemoteRoot:
    """The grader's record of one module in the worker: its handle and the tracker of the mirror."""

    def __init__(self, remote: "Remote", handle: int, nodes: list[nn.Module], places):
        self.remote, self.handle, self.generation = remote, handle, remote.session.starts
        self.tracker = Tracker(nodes, places)

    def alive(self) -> bool:
        return self.generation == self.remote.session.starts and self.remote.session.sandbox is not None


def _forward(self, *args, **kwargs):
    root, node = self.__dict__["_remote"]
    if node is None:
        raise RuntimeError(f"this {type(self).__name__} was taken out of its module in the sandbox: it has no "
                           "remote counterpart any more")
    return root.remote.invoke(Request(module=[root.handle, node]), args, kwargs, f"{type(self).__name__}.forward",
                              root=root, node=node)


def _deepcopy(self, memo):
    root, node = self.__dict__["_remote"]
    if node != 0:
        raise TypeError("only a whole remote module can be copied, not one of its layers")
    return root.remote.invoke(Request(deepcopy=root.handle), (), {}, "copy.deepcopy", root=root)


def attach(root: RemoteRoot, nodes: list[nn.Module]) -> None:
    """Make ``nodes`` the mirror of the worker's module ``root``: each forward and copy goes there."""
    for i, m in enumerate(nodes):
        m.__dict__["_remote"] = (root, i)
        m.__dict__["forward"] = types.MethodType(_forward, m)
        m.__dict__["__deepcopy__"] = types.MethodType(_deepcopy, m)


class RemoteBackward(torch.autograd.Function):
    """Outputs computed in the worker; backward asks the worker for the vector-Jacobian product."""

    @staticmethod
    def forward(ctx, link, *inputs):
        ctx.link = link
        return tuple(link["outputs"])

    @staticmethod
    def backward(ctx, *grad_outputs):
        link = ctx.link
        grads = link["remote"].vjp(link["graph"], grad_outputs, link["inputs"])
        return (None, *grads)


def replace_values(value, new: dict):
    if type(value) in (list, tuple):
        return type(value)(replace_values(v, new) for v in value)
    if type(value) is dict:
        return {k: replace_values(v, new) for k, v in value.items()}
    return new.get(id(value), value)
