"""The untrusted side of sandboxed grading: runs inside the sandbox (:mod:`course_lib.grading.autograder.jail`).

    python -I -m course_lib.grading.autograder.worker      (stdin/stdout: JSON lines, one message each)

It executes the student's code cells, and only those (the test cells stay with the grader), in a plain
Python interpreter, not an IPython kernel: a cell's magics and shell escapes are rewritten by IPython's
input transformer and answered by :mod:`course_lib.grading.autograder.ipython_idioms` (``%time`` runs
its statement, ``!ls`` runs nothing, ``display`` prints). Then it
answers calls of the functions and classes the cells defined::

    -> Cells(cells=["source", ...])
    <- Ready(functions=["conv2d", ...], classes=["BasicBlock", ...], errors=["cell 3: ..."])
    -> Request(call="conv2d", args=..., kwargs=..., forbidden=[...], grad=False, rng=..., sync=..., ...)
    <- Reply(returned=True, value=...) | Reply(raised="ValueError", message="...", where="<cell 3>, line 4")

The messages and their fields are :mod:`course_lib.grading.autograder.protocol`'s dataclasses (never
pickle). A module in a reply stays here behind a new handle (:class:`Objects`); the grader mirrors
it (:mod:`course_lib.grading.autograder.proxy`). Both sides send the tensors that changed, so the
copies agree; a module whose layers the call changed is sent whole, under ``restructure``. The protocol uses private
duplicates of stdin and stdout; the student's own output (file descriptors 1 and 2) goes to
stderr, which the grader reads with a byte cap.
"""
from __future__ import annotations

import collections
import copy
import importlib
import json
import os
import sys
import traceback
import types

import torch

from course_lib.grading.autograder import ipython_idioms, module_codec, module_sync, protocol
from course_lib.grading.autograder.protocol import CappedText, Ready, Reply, Request
from course_lib.grading.compare import ForbiddenCall, forbidding

MAX_RECORDED = 1000  # forward-hook records sent back per call


def _send(channel, message) -> None:
    channel.write(message.to_json() + "\n")
    channel.flush()


class Objects:
    """The worker's side of remote objects (:mod:`course_lib.grading.autograder.proxy`): modules behind handles,
    the grader's modules and optimizers rebuilt for one call, and the gradient graphs kept for backward."""

    MAX_GRAPHS = 16

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.modules: dict = {}        # handle -> Tracker of the module (node 0 is the module)
        self.where: dict = {}          # id(node) -> (handle, node index)
        self.next_handle = 1
        self.graphs = collections.OrderedDict()
        self.next_graph = 1
        self.uploads: list = []
        self.optimizers: list = []
        self.recorders: list = []

    # -- requests ---------------------------------------------------------------------------------
    def prepare(self, request: Request) -> None:
        """Release, take the grader's changes, rebuild uploads and optimizers; before the call."""
        for handle in request.release:
            tracker = self.modules.pop(handle, None)
            if tracker is not None:
                for node in tracker.nodes:
                    self.where.pop(id(node), None)
        for handle, change in request.sync:
            self.modules[handle].apply(protocol.decode(change, grad=[]))
        self.uploads = [self._rebuild(body) for body in request.uploads]
        self.optimizers = [self._optimizer(protocol.decode(body)) for body in request.optimizers]
        if request.rng is not None:
            protocol.set_random_states(protocol.decode(request.rng))

    @staticmethod
    def _rebuild(body) -> module_sync.Tracker:
        """A module of the grader's passed to the student's code, rebuilt here from its description."""
        description = module_codec.validate(protocol.decode(body, grad=[]))
        nodes = module_codec.rebuild(description, _trusted_class)
        shape = module_codec.structure(*module_codec.describe(nodes[0]))  # of the rebuilt nodes themselves
        return module_sync.Tracker(nodes, module_codec.locations(description), shape)

    def _optimizer(self, spec: dict) -> torch.optim.Optimizer:
        """An optimizer of the grader's, over the tensors of the modules here (``params``: where each is)."""
        params = [(self.modules[ref] if kind == "h" else self.uploads[ref]).tensor(i) for kind, ref, i in spec["params"]]
        groups, k = [], 0
        for group in spec["param_groups"]:
            groups.append({"params": params[k:k + len(group["params"])]})
            k += len(group["params"])
        opt = getattr(torch.optim, spec["class"])(groups, lr=spec["param_groups"][0].get("lr", 1e-3))
        protocol.load_optimizer_state(opt, spec)
        return opt

    def decode_hook(self, tag, body):
        if tag == "__remote_handle__":
            return self.modules[body[0]].nodes[body[1]]
        if tag == "__remote_upload__":
            return self.uploads[body].nodes[0]
        if tag == "__remote_optimizer__":
            return self.optimizers[body]
        if tag == "__remote_class__":
            return self.namespace[body]
        raise KeyError(tag)

    def encode_hook(self, value):
        if isinstance(value, torch.nn.Module):
            if id(value) in self.where:
                return {"__remote_handle__": list(self.where[id(value)])}
            for i, tracker in enumerate(self.uploads):
                if tracker.nodes[0] is value:
                    return {"__remote_upload__": i}
            description, nodes = module_codec.describe(value)
            handle, self.next_handle = self.next_handle, self.next_handle + 1
            self._track(handle, description, nodes)
            return {"__remote_module__": {"handle": handle, "module": protocol.encode(description)}}
        for i, opt in enumerate(self.optimizers):
            if opt is value:
                return {"__remote_optimizer__": i}
        raise protocol.WireError(f"a value of type {type(value).__name__} cannot cross the sandbox "
                             "(return tensors, numbers, strings, lists, tuples, dicts or modules)")

    def _track(self, handle: int, description: dict, nodes: list) -> None:
        self.modules[handle] = module_sync.Tracker(nodes, module_codec.locations(description),
                                                   module_codec.structure(description, nodes))
        for i, node in enumerate(nodes):
            self.where.setdefault(id(node), (handle, i))

    def finish(self, reply: Reply) -> None:
        """Send back what changed here: every module's tensors (or, where the student changed its
        layers, its new description), the uploads, the optimizers, the random generators."""
        restructured, sync = [], []
        for handle, tracker in list(self.modules.items()):
            new = tracker.restructured()
            if new is None:
                if (c := tracker.changes()) is not None:
                    sync.append([handle, protocol.encode(c)])
                continue
            description, nodes, provenance = new
            restructured.append(["h", handle, protocol.encode({"module": description, "provenance": provenance})])
            for node in tracker.nodes:
                if self.where.get(id(node), (None,))[0] == handle:
                    del self.where[id(node)]
            self._track(handle, description, nodes)
        uploads = []
        for i, tracker in enumerate(self.uploads):
            new = tracker.restructured()
            if new is not None:
                description, _, provenance = new
                restructured.append(["u", i, protocol.encode({"module": description, "provenance": provenance})])
            uploads.append(None if new is not None or (c := tracker.changes()) is None else protocol.encode(c))
        reply.sync, reply.uploads, reply.restructure = sync, uploads, restructured
        reply.optimizers = [protocol.encode(protocol.optimizer_state(opt)) for opt in self.optimizers]
        reply.rng = protocol.encode(protocol.random_states())

    def keep_graph(self, outputs: list, inputs: list) -> int:
        graph, self.next_graph = self.next_graph, self.next_graph + 1
        self.graphs[graph] = (outputs, inputs)
        while len(self.graphs) > self.MAX_GRAPHS:
            self.graphs.popitem(last=False)
        return graph

    def vjp(self, graph: int, grads: list) -> list:
        if graph not in self.graphs:
            raise RuntimeError("the gradient graph of this call is gone (backward twice, or too late)")
        outputs, inputs = self.graphs.pop(graph)
        got = torch.autograd.grad(outputs, inputs, grads, allow_unused=True)
        return [None if g is None else g.detach() for g in got]


def _trusted_class(name: str, bases: tuple = ()):
    """The grader's own modules are rebuilt from torch.nn and course_lib classes only."""
    module, _, qualname = name.rpartition(".")
    if not (module.startswith("torch.nn.") or module.startswith("course_lib.")) or "<" in name:
        raise TypeError(f"the grader cannot send a module of class {name}")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"{name} is not a module class")
    return cls


def _run_cells(cells: list[str]) -> tuple[dict, Ready]:
    """Run the student's cells in a fresh ``__main__`` namespace; the functions and classes they define."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    ipython_idioms.install(namespace)
    given = {k: v for k, v in namespace.items() if not k.startswith("__")}  # not the student's functions
    errors = []
    for number, source in enumerate(cells):
        try:
            exec(compile(ipython_idioms.transform(source), f"<cell {number}>", "exec"), namespace)
        except BaseException as err:  # noqa: BLE001 - SystemExit too: a cell's failure is the student's
            errors.append(f"cell {number}: {type(err).__name__}: {err}"[:2000])
    functions = sorted(k for k, v in namespace.items() if isinstance(v, types.FunctionType) and not k.startswith("__")
                       and given.get(k) is not v)
    classes = sorted(k for k, v in namespace.items() if isinstance(v, type) and getattr(v, "__module__", "") == "__main__"
                     and not k.startswith("__"))
    return namespace, Ready(functions=functions, classes=classes, errors=errors)


class Call:
    """One request served: the callable it names, its decoded arguments, and the value's graph."""

    def __init__(self, objects: Objects, request: Request):
        self.objects, self.request = objects, request
        self.grad = request.grad is True
        self.params: list = []         # the module's parameters that the graph differentiates
        self.recorded: list = []       # [layer, input, output] for the grader's forward hooks
        self.tracker = None

    def target(self):
        request, objects = self.request, self.objects
        if request.call is not None:
            fn = objects.namespace.get(request.call)
            if not callable(fn):
                raise NameError(f"name {request.call!r} is not defined")
            return fn
        if request.module is not None:
            return self._module(*request.module)
        source = objects.modules[request.deepcopy].nodes[0]
        return lambda: copy.deepcopy(source)

    def _module(self, handle: int, node: int):
        self.tracker = tracker = self.objects.modules[handle]
        if self.grad:
            self.params = [i for i in range(len(tracker.places))
                           if tracker.places[i][1] == "p" and tracker.tensor(i).requires_grad]
        for i in self.request.record[:200]:
            self.objects.recorders.append(tracker.nodes[i].register_forward_hook(self._recorder(i)))
        return tracker.nodes[node]

    def _recorder(self, layer: int):
        def record(module, inputs, output):
            if len(self.recorded) < MAX_RECORDED:
                try:
                    self.recorded.append([layer, protocol.encode(inputs[0] if inputs else None),
                                          protocol.encode(output)])
                except protocol.WireError:
                    pass
        return record

    def run(self, reply: Reply) -> None:
        """Call the target with the decoded arguments; the encoded value (and its graph) into ``reply``."""
        request, objects = self.request, self.objects
        if request.vjp is not None:
            reply.value = protocol.encode(objects.vjp(request.vjp, protocol.decode(request.grads)))
            reply.returned = True
            return
        fn = self.target()
        grad_args: list = []
        grad = grad_args if self.grad else None
        args = protocol.decode(request.args, hook=objects.decode_hook, grad=grad)
        kwargs = protocol.decode(request.kwargs, hook=objects.decode_hook, grad=grad)
        who = request.call or type(fn).__name__  # never exempt here: the target is the student's
        with forbidding(tuple(request.forbidden), who, strict=True), torch.set_grad_enabled(self.grad):
            value = fn(*args, **kwargs)
        reply.value, reply.returned = protocol.encode(value, hook=objects.encode_hook), True
        outputs = protocol.leaves(value, protocol.needs_grad) if self.grad else []
        if outputs:
            inputs = grad_args + [self.tracker.tensor(i) for i in self.params]
            reply.graph, reply.graph_args = objects.keep_graph(outputs, inputs), len(grad_args)
            reply.graph_params = self.params
        reply.recorded = self.recorded


def _raised(err: BaseException) -> Reply:
    """The student's exception as a reply: its class name, message and the line of their cell."""
    kind = "ForbiddenCall" if isinstance(err, ForbiddenCall) else type(err).__name__
    if isinstance(err, (protocol.WireError, module_codec.ModuleError)):
        kind = "TypeError"
    tb = traceback.extract_tb(err.__traceback__)
    where = next((f"{f.filename}, line {f.lineno}" for f in reversed(tb) if f.filename.startswith("<cell")), "")
    return Reply(raised=kind[:80], message=str(err)[:4000], where=where)


def serve(objects: Objects, request: Request) -> Reply:
    """One request: the call with the student's output captured, then what changed here."""
    out, err_text = CappedText(), CappedText()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err_text
    reply = Reply()
    try:
        objects.uploads, objects.optimizers = [], []
        objects.prepare(request)
        Call(objects, request).run(reply)
    except BaseException as err:  # noqa: BLE001 - reported to the grader, which scores it
        reply = _raised(err)
    finally:
        sys.stdout, sys.stderr = saved
        for h in objects.recorders:
            h.remove()
        objects.recorders = []
    try:
        objects.finish(reply)
    except BaseException as err:  # noqa: BLE001
        reply = Reply(raised="TypeError", message=f"the module's state cannot cross the sandbox: {err}"[:4000])
    reply.stdout, reply.stderr = out.getvalue(), err_text.getvalue()
    return reply


def main() -> None:
    # Private protocol channels; the student's prints go to fd 2 and its reads see /dev/null.
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    namespace, ready = _run_cells(protocol.Cells.from_message(json.loads(proto_in.readline())).cells)
    _send(proto_out, ready)
    objects = Objects(namespace)
    for line in proto_in:
        _send(proto_out, serve(objects, Request.from_message(json.loads(line))))


if __name__ == "__main__":
    main()
