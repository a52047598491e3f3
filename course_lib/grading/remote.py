"""The grader's side of remote objects: a student's classes and modules stay in the sandbox, the checks get mirrors.

A value that is not plain data — an ``nn.Module`` that the student's ``build_unet`` returns, an
instance of the student's ``BasicBlock`` — never leaves the worker (:mod:`~course_lib.grading.worker`):
it stays there behind a handle, and the grader gets a *mirror*: an ``nn.Module`` built from a
plain-data description (:mod:`~course_lib.grading.modules`) with the same layers, names, plain
attributes (``stride``, ``groups``, ...) and real local tensors. Layers of ``torch.nn`` classes are
mirrored by instances of those very classes (so ``isinstance(m, nn.ConvTranspose2d)`` works); the
student's own classes by an empty :class:`StudentModule` subclass of the same name, recognised by
``isinstance(m, BasicBlock)`` through :class:`RemoteClass`. Nothing of the student's code runs here.

Everything a check does to a module stays local and unchanged — ``parameters()``, ``state_dict()``,
``load_state_dict()``, counting, ``double()``, ``train()/eval()``, ``copy.deepcopy`` (a copy is
made in the worker too) — and every call that reaches the worker (a module's forward, a student's
function) first sends the tensors that changed here and brings back those that changed there
(running statistics, a training step's updates), so both copies stay equal. Forward hooks on the
mirror's layers see the inputs and outputs of the real layers. Trusted modules and optimizers
passed to a student's function (``train_step(G, D, opt_G, opt_D, ...)``) are rebuilt in the worker
and their new state is copied back. Gradients flow back through a remote call with a custom
``autograd.Function`` whose backward asks the worker for the vector-Jacobian product (on the graph
it kept: no second forward, no running statistics updated twice). The global random generators
(torch, Python's ``random``, NumPy) travel with every call, so seeded code behaves as if the
student's code ran here.
"""
from __future__ import annotations

import re
import sys
import types
import weakref

import torch
from torch import nn

from course_lib.grading import wire
from course_lib.grading.modules import (ForeignLayerError, ModuleError, Tracker, describe, locations, rebuild,
                                       restructure, torch_class, torch_nn_class, validate)

SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}$")
#: Optimizers a check may hand to a student's function (rebuilt in the worker from their state_dict).
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam")


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


class RemoteClass:
    """Stands for a class of the student's: calling it makes an instance in the worker (a mirror here)."""

    def __init__(self, remote: "Remote", name: str):
        self.remote, self.__name__ = remote, name

    def __call__(self, *args, **kwargs):
        return self.remote.invoke({"call": self.__name__}, args, kwargs, self.__name__)

    def __instancecheck__(self, obj) -> bool:
        info = getattr(obj, "__dict__", {}).get("_remote")
        name = f"__main__.{self.__name__}"
        return (isinstance(obj, StudentModule) and info is not None and info[0].remote is self.remote
                and (type(obj).__student_class__ == name or name in type(obj).__student_bases__))

    def __repr__(self):
        return f"<student class {self.__name__}>"


class _Root:
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
    return root.remote.invoke({"module": [root.handle, node]}, args, kwargs, f"{type(self).__name__}.forward",
                              root=root, node=node)


def _deepcopy(self, memo):
    root, node = self.__dict__["_remote"]
    if node != 0:
        raise TypeError("only a whole remote module can be copied, not one of its layers")
    return root.remote.invoke({"deepcopy": root.handle}, (), {}, "copy.deepcopy", root=root)


def _attach(root: _Root, nodes: list[nn.Module]) -> None:
    """Make ``nodes`` the mirror of the worker's module ``root``: each forward and copy goes there."""
    for i, m in enumerate(nodes):
        m.__dict__["_remote"] = (root, i)
        m.__dict__["forward"] = types.MethodType(_forward, m)
        m.__dict__["__deepcopy__"] = types.MethodType(_deepcopy, m)


class _RemoteBackward(torch.autograd.Function):
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


def _walk(value, out: list, want) -> list:
    """Every tensor of ``value`` (lists, tuples, dict values) in the order :func:`wire.encode` writes them."""
    if type(value) in (list, tuple):
        for v in value:
            _walk(v, out, want)
    elif type(value) is dict:
        for v in value.values():
            _walk(v, out, want)
    elif type(value) in (torch.Tensor, nn.Parameter) and want(value):
        out.append(value)
    return out


def _modules_and_optimizers(value, out: list) -> list:
    if type(value) in (list, tuple):
        for v in value:
            _modules_and_optimizers(v, out)
    elif type(value) is dict:
        for v in value.values():
            _modules_and_optimizers(v, out)
    elif isinstance(value, (nn.Module, torch.optim.Optimizer)) and all(v is not value for v in out):
        out.append(value)
    return out


def _replace(value, new: dict):
    if type(value) in (list, tuple):
        return type(value)(_replace(v, new) for v in value)
    if type(value) is dict:
        return {k: _replace(v, new) for k, v in value.items()}
    return new.get(id(value), value)


def _needs_grad(t: torch.Tensor) -> bool:
    return t.requires_grad and t.is_floating_point()


class Remote:
    """The remote objects of one sandbox session (:class:`~course_lib.grading.sandbox_grade.Session`)."""

    def __init__(self, session):
        self.session = session
        self.roots: dict[int, weakref.ref] = {}
        self.released: list[tuple[int, int]] = []

    # -- mirrors ----------------------------------------------------------------------------------
    def _mirror(self, body) -> nn.Module:
        if type(body) is not dict or set(body) != {"handle", "module"} or type(body["handle"]) is not int:
            raise wire.WireError("malformed remote module")
        description = validate(wire.decode(body["module"], grad=[]))
        nodes = rebuild(description, resolve_mirror)
        root = _Root(self, body["handle"], nodes, locations(description))
        _attach(root, nodes)
        self.roots[root.handle] = weakref.ref(root)
        weakref.finalize(root, self.released.append, (root.generation, root.handle))
        return nodes[0]

    def _live(self) -> list[_Root]:
        live = []
        for handle, ref in list(self.roots.items()):
            root = ref()
            if root is None or not root.alive():
                del self.roots[handle]
            else:
                live.append(root)
        return live

    # -- one call ---------------------------------------------------------------------------------
    def invoke(self, target: dict, args: tuple, kwargs: dict, label: str, root: _Root | None = None, node: int = 0):
        from course_lib.grading.compare import forbidden_now
        from course_lib.grading.sandbox import SandboxError

        session = self.session
        try:
            session.ensure()
        except SandboxError as err:
            raise RuntimeError(f"{label}: {err}") from None
        if root is not None and (not root.alive() or root.handle not in self.roots):
            raise RuntimeError(f"{label}: this module lived in a sandbox that was restarted after a crash or a "
                               "timeout; it is gone")
        grad = torch.is_grad_enabled()
        # modules and optimizers passed along: the student's (by handle) or the grader's (rebuilt there)
        uploads, upload_trackers, optimizers, refs = [], [], [], {}
        found = _modules_and_optimizers([list(args), kwargs], [])
        for obj in found:
            if isinstance(obj, nn.Module) and "_remote" not in obj.__dict__:
                if any("_remote" in m.__dict__ for m in obj.modules()):
                    raise TypeError(f"{label}: a module of the grader's cannot contain one of the student's")
                description, nodes = describe(obj)
                tracker = Tracker(nodes, locations(description))
                refs.update({id(tracker.tensor(i)): ["u", len(uploads), i] for i in range(len(tracker.places))})
                uploads.append(wire.encode(description))
                upload_trackers.append((obj, tracker))
            elif isinstance(obj, nn.Module):
                r = obj.__dict__["_remote"][0]
                refs.update({id(r.tracker.tensor(i)): ["h", r.handle, i] for i in range(len(r.tracker.places))})
        index = {id(obj): i for i, (obj, _) in enumerate(upload_trackers)}
        opt_objects = []

        def hook(value):
            if isinstance(value, nn.Module):
                info = value.__dict__.get("_remote")
                if info is not None:
                    if not info[0].alive():
                        raise wire.WireError("a module from a sandbox that was restarted")
                    return {"__remote_handle__": [info[0].handle, info[1]]}
                return {"__remote_upload__": index[id(value)]}
            if isinstance(value, RemoteClass) and value.remote is self:
                return {"__remote_class__": value.__name__}
            if isinstance(value, torch.optim.Optimizer) and type(value).__name__ in OPTIMIZERS \
                    and type(value) is getattr(torch.optim, type(value).__name__):
                if all(o is not value for o in opt_objects):
                    try:
                        params = [refs[id(p)] for g in value.param_groups for p in g["params"]]
                    except KeyError:
                        raise wire.WireError("an optimizer over parameters of no module passed along") from None
                    state = value.state_dict()
                    optimizers.append(wire.encode({"class": type(value).__name__, "params": params,
                                                   "state": [[k, v] for k, v in state["state"].items()],
                                                   "param_groups": state["param_groups"]}))
                    opt_objects.append(value)
                return {"__remote_optimizer__": next(i for i, o in enumerate(opt_objects) if o is value)}
            raise wire.WireError(f"a value of type {type(value).__name__} cannot cross the sandbox")

        message = {**target, "args": wire.encode(list(args), hook=hook), "kwargs": wire.encode(dict(kwargs), hook=hook),
                   "uploads": uploads, "optimizers": optimizers, "forbidden": list(forbidden_now()), "grad": grad,
                   "rng": wire.encode(wire.random_states())}
        grad_args = _walk([list(args), kwargs], [], _needs_grad) if grad else []
        live = self._live()
        message["sync"] = [[r.handle, wire.encode(c)] for r in live if (c := r.tracker.changes()) is not None]
        gen = session.starts
        message["release"] = [h for g, h in self.released if g == gen]
        self.released.clear()
        if root is not None and "module" in target:
            message["record"] = [i for i, m in enumerate(root.tracker.nodes) if m._forward_hooks and i != node]
        try:
            reply = session.request(message, label)
        except SandboxError as err:
            raise RuntimeError(f"{label}: {err}") from None
        return self._finish(reply, label, root, upload_trackers, opt_objects, grad_args)

    def _finish(self, reply: dict, label: str, root, upload_trackers, opt_objects, grad_args):
        try:
            by_handle = {r.handle: r for r in self._live()}
            for entry in reply.get("sync", []):
                if type(entry) is not list or len(entry) != 2 or entry[0] not in by_handle:
                    raise ModuleError("malformed state")
                by_handle[entry[0]].tracker.apply(wire.decode(entry[1], grad=[]))
            changed = reply.get("uploads", [None] * len(upload_trackers))
            if type(changed) is not list or len(changed) != len(upload_trackers):
                raise ModuleError("malformed state")
            for (_, tracker), change in zip(upload_trackers, changed):
                if change is not None:
                    tracker.apply(wire.decode(change, grad=[]))
            states = reply.get("optimizers", [None] * len(opt_objects))
            if type(states) is not list or len(states) != len(opt_objects):
                raise ModuleError("malformed optimizer state")
            for opt, state in zip(opt_objects, states):
                state = wire.decode(state)
                if type(state) is not dict or set(state) != {"state", "param_groups"} or type(state["state"]) is not list:
                    raise ModuleError("malformed optimizer state")
                opt.load_state_dict({"state": {k: v for k, v in state["state"]}, "param_groups": state["param_groups"]})
            wire.set_random_states(wire.decode(reply.get("rng")))
            restructures = self._restructures(reply.get("restructure", []), by_handle, upload_trackers)
        except (wire.WireError, ModuleError, ValueError, TypeError, KeyError, RuntimeError) as err:
            self._reject(label, err)
        for stream, target in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            text = reply.get(stream)
            if type(text) is str and text:
                target.write(text)
        if "value" not in reply:
            from course_lib.grading.sandbox_grade import remote_exception

            self._restructure(restructures, label)
            kind, message = str(reply.get("raised", "Exception")), str(reply.get("message", ""))
            where = reply.get("where")
            raise remote_exception(kind, message + (f" ({where})" if type(where) is str and where else ""))
        outputs: list = []
        try:
            value = wire.decode(reply["value"], hook=self._decode_hook(upload_trackers, opt_objects), grad=outputs)
        except (wire.WireError, ModuleError, ValueError) as err:
            raise TypeError(f"{label} returned a value the grader cannot accept: {err}") from None
        value = self._with_grad(reply, value, outputs, grad_args, root, label)
        if root is not None:
            self._replay_hooks(reply.get("recorded", []), root)
        self._restructure(restructures, label)  # last: the reply's handles and hooks name the old layers
        return value

    def _reject(self, label: str, err: Exception):
        self.session.stop()
        raise RuntimeError(f"{label}: the sandbox sent back a state the grader cannot accept ({err}); "
                           "it was stopped") from None

    def _restructures(self, entries, by_handle: dict, upload_trackers) -> list:
        """The modules whose layers the student's code changed: ``(target, description, provenance)``."""
        if type(entries) is not list:
            raise ModuleError("malformed restructure")
        out = []
        for entry in entries:
            if type(entry) is not list or len(entry) != 3 or entry[0] not in ("h", "u") or type(entry[1]) is not int:
                raise ModuleError("malformed restructure")
            kind, key, body = entry
            body = wire.decode(body, grad=[])
            if type(body) is not dict or set(body) != {"module", "provenance"}:
                raise ModuleError("malformed restructure")
            if kind == "h" and key not in by_handle:
                continue  # a module the grader no longer holds
            if kind == "u" and not 0 <= key < len(upload_trackers):
                raise ModuleError("a restructure of no module")
            target = by_handle[key] if kind == "h" else upload_trackers[key][1]
            out.append((kind, target, validate(body["module"]), body["provenance"]))
        return out

    def _restructure(self, restructures: list, label: str) -> None:
        """Rearrange the mirrors (and the grader's own modules passed along) as the worker's modules are now.

        A mirror may gain layers of any class (mirrored as usual); the grader's own module only
        ``torch.nn`` layers, since it runs here and must not hold a student's layer.
        """
        try:
            for kind, target, description, provenance in restructures:
                old = target.tracker.nodes if kind == "h" else target.nodes
                nodes = restructure(old, description, provenance, resolve_mirror if kind == "h" else torch_class)
                if kind == "h":
                    for m in old:
                        if all(m is not n for n in nodes):
                            m.__dict__["_remote"] = (target, None)
                    _attach(target, nodes)
                    target.tracker = Tracker(nodes, locations(description))
        except ForeignLayerError as err:  # the student's doing, not a broken sandbox: the call fails
            raise TypeError(f"{label}: {err} (the module is unchanged)") from None
        except (ModuleError, ValueError, TypeError, KeyError, RuntimeError) as err:
            self._reject(label, err)

    def _decode_hook(self, upload_trackers, opt_objects):
        def hook(tag, body):
            if tag == "__remote_module__":
                return self._mirror(body)
            if tag == "__remote_handle__" and type(body) is list and len(body) == 2:
                ref = self.roots.get(body[0])
                root = ref() if ref is not None else None
                if root is not None and type(body[1]) is int and 0 <= body[1] < len(root.tracker.nodes):
                    return root.tracker.nodes[body[1]]
            if tag == "__remote_upload__" and type(body) is int and 0 <= body < len(upload_trackers):
                return upload_trackers[body][0]
            if tag == "__remote_optimizer__" and type(body) is int and 0 <= body < len(opt_objects):
                return opt_objects[body]
            raise wire.WireError(f"malformed value tagged {tag[:40]!r}")
        return hook

    def _with_grad(self, reply, value, outputs, grad_args, root, label):
        graph = reply.get("graph")
        if graph is None:
            for t in outputs:  # only the graph kept in the worker makes an output differentiable here
                t.requires_grad_(False)
            return value
        params = reply.get("graph_params", [])
        if type(graph) is not int or type(params) is not list or reply.get("graph_args") != len(grad_args) or (
                params and root is None) or not all(type(i) is int and 0 <= i < len(root.tracker.places) for i in params):
            raise TypeError(f"{label}: the sandbox described its gradient graph wrongly")
        inputs = grad_args + [root.tracker.tensor(i) for i in params]
        detached = [t.detach() for t in outputs]
        link = {"remote": self, "graph": graph, "outputs": detached, "inputs": inputs}
        new = _RemoteBackward.apply(link, *inputs)
        new = new if isinstance(new, tuple) else (new,)
        return _replace(value, {id(old): t for old, t in zip(outputs, new)})

    def vjp(self, graph: int, grad_outputs, inputs) -> list:
        from course_lib.grading.sandbox import SandboxError

        message = {"vjp": graph, "grads": wire.encode([g.detach() for g in grad_outputs]),
                   "rng": wire.encode(wire.random_states()), "sync": [], "release": [], "args": [],
                   "kwargs": {"__dict__": []}, "uploads": [], "optimizers": [], "forbidden": [], "grad": False}
        try:
            reply = self.session.request(message, "backward")
        except SandboxError as err:
            raise RuntimeError(f"backward through the student's code: {err}") from None
        if "value" not in reply:
            raise RuntimeError(f"backward through the student's code raised {reply.get('raised')}: "
                               f"{str(reply.get('message'))[:2000]}")
        grads = wire.decode(reply["value"])
        if type(grads) is not list or len(grads) != len(inputs) or not all(
                g is None or (type(g) is torch.Tensor and g.shape == x.shape and g.dtype == x.dtype)
                for g, x in zip(grads, inputs)):
            raise RuntimeError("backward through the student's code: the sandbox sent malformed gradients")
        return grads

    def _replay_hooks(self, recorded, root: _Root) -> None:
        """Call the forward hooks of the mirror's layers with what the real layers saw."""
        if type(recorded) is not list:
            return
        for entry in recorded:
            if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not int \
                    or not 0 <= entry[0] < len(root.tracker.nodes):
                continue
            layer = root.tracker.nodes[entry[0]]
            try:
                inp, out = wire.decode(entry[1]), wire.decode(entry[2])
            except (wire.WireError, ValueError):
                continue
            for key, hook in list(layer._forward_hooks.items()):
                if key in layer._forward_hooks_with_kwargs:
                    hook(layer, (inp,), {}, out)
                else:
                    hook(layer, (inp,), out)


def proxies_for(remote: Remote, functions: list[str], classes: list[str]) -> dict:
    """``name -> proxy``: :class:`RemoteClass` for each class of the student's, a function proxy otherwise."""
    from course_lib.grading.sandbox_grade import RemoteFunction

    out = {name: RemoteFunction(remote.session, name) for name in functions}
    out.update({name: RemoteClass(remote, name) for name in classes})
    return out


