"""The untrusted side of sandboxed grading: runs inside the sandbox (:mod:`course_lib.grading.sandbox`).

    python -I -m course_lib.grading.worker      (stdin/stdout: JSON lines, one message each)

It executes the student's code cells, and only those (the test cells stay with the grader), in a plain
Python interpreter: no IPython, so no input or AST transformers, magics or ``get_ipython`` hooks.
Lines starting with ``%`` or ``!`` (IPython magics and shell escapes) are commented out. Then it
answers calls of the functions and classes the cells defined::

    -> {"cells": ["source", ...]}
    <- {"ready": true, "functions": ["conv2d", ...], "classes": ["BasicBlock", ...], "errors": ["cell 3: ..."]}
    -> {"call": "conv2d", "args": [...], "kwargs": {...}, "forbidden": ["torch.nn.functional.conv2d"],
        "grad": false, "rng": <torch, Python, NumPy RNG states>, "sync": [[handle, changes], ...], "release": [handle, ...],
        "uploads": [module description, ...], "optimizers": [optimizer state, ...]}
    <- {"value": ...} | {"raised": "ValueError", "message": "...", ...}
       (plus "sync", "uploads", "optimizers", "rng", the call's "stdout"/"stderr", and for a call with
       gradients "graph", "graph_args", "graph_params")

Instead of ``"call"`` a request may name ``"module": [handle, node]`` (a module's forward, with
``"record"``: the layers whose inputs and outputs to report for the grader's forward hooks),
``"deepcopy": handle`` or ``"vjp": graph`` (the gradients for a kept graph, ``"grads"``). A module
in a reply stays here behind a new handle (:class:`Objects`); the grader mirrors it
(:mod:`course_lib.grading.remote`). Both sides send the tensors that changed, so the copies agree;
a module whose layers the call changed is sent whole, under ``"restructure"``.

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


class Objects:
    """The worker's side of remote objects (:mod:`course_lib.grading.remote`): modules behind handles,
    the grader's modules and optimizers rebuilt for one call, and the gradient graphs kept for backward."""

    MAX_GRAPHS = 16

    def __init__(self, namespace: dict):
        import collections

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
    def prepare(self, request: dict, wire, modules) -> None:
        """Release, take the grader's changes, rebuild uploads and optimizers; before the call."""
        import torch

        for handle in request.get("release", []):
            tracker = self.modules.pop(handle, None)
            if tracker is not None:
                for node in tracker.nodes:
                    self.where.pop(id(node), None)
        for handle, change in request.get("sync", []):
            self.modules[handle].apply(wire.decode(change, grad=[]))
        self.uploads = []
        for body in request.get("uploads", []):
            description = modules.validate(wire.decode(body, grad=[]))
            nodes = modules.rebuild(description, _trusted_class)
            shape = modules.structure(*modules.describe(nodes[0]))  # of the rebuilt nodes themselves
            self.uploads.append(modules.Tracker(nodes, modules.locations(description), shape))
        self.optimizers = []
        for body in request.get("optimizers", []):
            spec = wire.decode(body)
            cls = getattr(torch.optim, spec["class"])
            params = [(self.modules[ref] if kind == "h" else self.uploads[ref]).tensor(i) for kind, ref, i in spec["params"]]
            groups, k = [], 0
            for group in spec["param_groups"]:
                groups.append({"params": params[k:k + len(group["params"])]})
                k += len(group["params"])
            opt = cls(groups, lr=spec["param_groups"][0].get("lr", 1e-3))
            opt.load_state_dict({"state": {key: v for key, v in spec["state"]}, "param_groups": spec["param_groups"]})
            self.optimizers.append(opt)
        rng = request.get("rng")
        if rng is not None:
            wire.set_random_states(wire.decode(rng))

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

    def encode_hook(self, value, wire, modules):
        import torch

        if isinstance(value, torch.nn.Module):
            if id(value) in self.where:
                return {"__remote_handle__": list(self.where[id(value)])}
            for i, tracker in enumerate(self.uploads):
                if tracker.nodes[0] is value:
                    return {"__remote_upload__": i}
            description, nodes = modules.describe(value)
            handle, self.next_handle = self.next_handle, self.next_handle + 1
            self._track(handle, description, nodes, modules)
            return {"__remote_module__": {"handle": handle, "module": wire.encode(description)}}
        for i, opt in enumerate(self.optimizers):
            if opt is value:
                return {"__remote_optimizer__": i}
        raise wire.WireError(f"a value of type {type(value).__name__} cannot cross the sandbox "
                             "(return tensors, numbers, strings, lists, tuples, dicts or modules)")

    def _track(self, handle: int, description: dict, nodes: list, modules) -> None:
        self.modules[handle] = modules.Tracker(nodes, modules.locations(description),
                                               modules.structure(description, nodes))
        for i, node in enumerate(nodes):
            self.where.setdefault(id(node), (handle, i))

    def finish(self, reply: dict, wire, modules) -> None:
        """Send back what changed here: every module's tensors (or, where the student changed its
        layers, its new description), the uploads, the optimizers, the random generators."""
        restructured, sync = [], []
        for handle, tracker in list(self.modules.items()):
            new = tracker.restructured()
            if new is None:
                if (c := tracker.changes()) is not None:
                    sync.append([handle, wire.encode(c)])
                continue
            description, nodes, provenance = new
            restructured.append(["h", handle, wire.encode({"module": description, "provenance": provenance})])
            for node in tracker.nodes:
                if self.where.get(id(node), (None,))[0] == handle:
                    del self.where[id(node)]
            self._track(handle, description, nodes, modules)
        uploads = []
        for i, tracker in enumerate(self.uploads):
            new = tracker.restructured()
            if new is not None:
                description, _, provenance = new
                restructured.append(["u", i, wire.encode({"module": description, "provenance": provenance})])
            uploads.append(None if new is not None or (c := tracker.changes()) is None else wire.encode(c))
        reply.update(sync=sync, uploads=uploads, restructure=restructured)
        states = []
        for opt in self.optimizers:
            state = opt.state_dict()
            states.append(wire.encode({"state": [[k, v] for k, v in state["state"].items()],
                                       "param_groups": state["param_groups"]}))
        reply["optimizers"] = states
        reply["rng"] = wire.encode(wire.random_states())

    def keep_graph(self, outputs: list, inputs: list) -> int:
        graph, self.next_graph = self.next_graph, self.next_graph + 1
        self.graphs[graph] = (outputs, inputs)
        while len(self.graphs) > self.MAX_GRAPHS:
            self.graphs.popitem(last=False)
        return graph

    def vjp(self, graph: int, grads: list) -> list:
        import torch

        if graph not in self.graphs:
            raise RuntimeError("the gradient graph of this call is gone (backward twice, or too late)")
        outputs, inputs = self.graphs.pop(graph)
        got = torch.autograd.grad(outputs, inputs, grads, allow_unused=True)
        return [None if g is None else g.detach() for g in got]


def _trusted_class(name: str, bases: tuple = ()):
    """The grader's own modules are rebuilt from torch.nn and course_lib classes only."""
    import importlib

    import torch

    module, _, qualname = name.rpartition(".")
    if not (module.startswith("torch.nn.") or module.startswith("course_lib.")) or "<" in name:
        raise TypeError(f"the grader cannot send a module of class {name}")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"{name} is not a module class")
    return cls


def _tensors(value, out: list) -> list:
    """The tensors of a reply value that require grad, in the order wire.encode writes them."""
    import torch

    if type(value) in (list, tuple):
        for v in value:
            _tensors(v, out)
    elif type(value) is dict:
        for v in value.values():
            _tensors(v, out)
    elif type(value) in (torch.Tensor, torch.nn.Parameter) and value.requires_grad and value.is_floating_point():
        out.append(value)
    return out


def main() -> None:
    # Private protocol channels; the student's prints go to fd 2 and its reads see /dev/null.
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import torch

    from course_lib.grading import modules, wire
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
    classes = sorted(k for k, v in namespace.items() if isinstance(v, type) and getattr(v, "__module__", "") == "__main__"
                     and not k.startswith("__"))
    _send(proto_out, {"ready": True, "functions": functions, "classes": classes, "errors": errors})
    objects = Objects(namespace)

    for line in proto_in:
        request = json.loads(line)
        out, err_text = _CappedText(), _CappedText()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err_text
        reply: dict = {}
        hooks = []
        try:
            objects.uploads, objects.optimizers = [], []
            objects.prepare(request, wire, modules)
            if "vjp" in request:
                reply["value"] = wire.encode(objects.vjp(request["vjp"], wire.decode(request["grads"])))
            else:
                grad = request.get("grad") is True
                params: list = []
                if "call" in request:
                    fn = namespace.get(request["call"])
                    if not callable(fn):
                        raise NameError(f"name {request['call']!r} is not defined")
                elif "module" in request:
                    handle, node = request["module"]
                    tracker = objects.modules[handle]
                    fn = tracker.nodes[node]
                    if grad:
                        params = [i for i in range(len(tracker.places))
                                  if tracker.places[i][1] == "p" and tracker.tensor(i).requires_grad]
                    for i in request.get("record", [])[:200]:
                        def record(m, inputs, output, _i=i):
                            if len(hooks) < 1000:
                                first_input = inputs[0] if inputs else None
                                try:
                                    hooks.append([_i, wire.encode(first_input), wire.encode(output)])
                                except wire.WireError:
                                    pass
                        objects.recorders.append(tracker.nodes[i].register_forward_hook(record))
                else:  # deepcopy
                    import copy

                    source = objects.modules[request["deepcopy"]].nodes[0]
                    fn = lambda: copy.deepcopy(source)  # noqa: E731
                grad_args: list = []
                args = wire.decode(request.get("args", []), hook=objects.decode_hook, grad=grad_args if grad else None)
                kwargs = wire.decode(request.get("kwargs", {"__dict__": []}), hook=objects.decode_hook,
                                     grad=grad_args if grad else None)
                with forbidding(tuple(request.get("forbidden", ()))), torch.set_grad_enabled(grad):
                    value = fn(*args, **kwargs)
                reply["value"] = wire.encode(value, hook=lambda v: objects.encode_hook(v, wire, modules))
                outputs = _tensors(value, []) if grad else []
                if outputs:
                    inputs = grad_args + [tracker.tensor(i) for i in params]
                    reply.update(graph=objects.keep_graph(outputs, inputs), graph_args=len(grad_args),
                                 graph_params=params)
            reply["recorded"] = hooks
        except BaseException as err:  # noqa: BLE001 - reported to the grader, which scores it
            kind = "ForbiddenCall" if isinstance(err, ForbiddenCall) else type(err).__name__
            if isinstance(err, (wire.WireError, modules.ModuleError)):
                kind = "TypeError"
            tb = traceback.extract_tb(err.__traceback__)
            where = next((f"{f.filename}, line {f.lineno}" for f in reversed(tb) if f.filename.startswith("<cell")), "")
            reply = {"raised": kind[:80], "message": str(err)[:4000], "where": where}
        finally:
            sys.stdout, sys.stderr = saved
            for h in objects.recorders:
                h.remove()
            objects.recorders = []
        try:
            objects.finish(reply, wire, modules)
        except BaseException as err:  # noqa: BLE001
            reply = {"raised": "TypeError", "message": f"the module's state cannot cross the sandbox: {err}"[:4000]}
        reply.update(stdout=out.getvalue(), stderr=err_text.getvalue())
        _send(proto_out, reply)


if __name__ == "__main__":
    main()
