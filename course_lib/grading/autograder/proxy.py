"""The grader's side of remote objects: a student's classes and modules stay in the sandbox, the checks get mirrors.

A value that is not plain data — an ``nn.Module`` that the student's ``build_unet`` returns, an
instance of the student's ``BasicBlock`` — never leaves the worker (:mod:`~course_lib.grading.autograder.worker`):
it stays there behind a handle, and the grader gets a *mirror*: an ``nn.Module`` built from a
plain-data description (:mod:`~course_lib.grading.autograder.mirror`) with the same layers, names, plain
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

import builtins
import sys
import weakref

import torch
from torch import nn

from course_lib.grading.autograder import protocol
from course_lib.grading.autograder.jail import SandboxError
from course_lib.grading.autograder.mirror import (RemoteBackward, RemoteRoot, StudentModule, attach, replace_values,
                                                  resolve_mirror)
from course_lib.grading.autograder.module_codec import (ForeignLayerError, ModuleError, describe, locations, rebuild,
                                                        torch_class, validate)
from course_lib.grading.autograder.module_sync import Tracker, restructure
from course_lib.grading.autograder.protocol import SAFE_NAME, Reply, Request
from course_lib.grading.compare import ForbiddenCall, forbidden_now
#: Optimizers a check may hand to a student's function (rebuilt in the worker from their state_dict).
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam")


class _RemoteCallable:
    """Stands for a name the student's cells defined: each call is sent to the worker."""

    def __init__(self, remote: "Remote", name: str):
        self.remote, self.__name__ = remote, name

    def __call__(self, *args, **kwargs):
        return self.remote.invoke(Request(call=self.__name__), args, kwargs, self.__name__)


class RemoteFunction(_RemoteCallable):
    """Stands for a student's function in the test cells."""

    def __repr__(self):
        return f"<student function {self.__name__}>"


class RemoteClass(_RemoteCallable):
    """Stands for a class of the student's: calling it makes an instance in the worker (a mirror here)."""

    def __instancecheck__(self, obj) -> bool:
        info = getattr(obj, "__dict__", {}).get("_remote")
        name = f"__main__.{self.__name__}"
        return (isinstance(obj, StudentModule) and info is not None and info[0].remote is self.remote
                and (type(obj).__student_class__ == name or name in type(obj).__student_bases__))

    def __repr__(self):
        return f"<student class {self.__name__}>"


def _modules_and_optimizers(value) -> list:
    """The modules and optimizers passed along in ``value``, each once."""
    found = protocol.leaves(value, lambda v: isinstance(v, (nn.Module, torch.optim.Optimizer)))
    return [v for i, v in enumerate(found) if all(v is not w for w in found[:i])]


def remote_exception(kind: str, message: str) -> BaseException:
    """The student's exception, rebuilt by name only (no object crosses)."""
    if kind == "NotImplementedError":
        return NotImplementedError(message)
    if kind == "ForbiddenCall":
        return ForbiddenCall(message)
    builtin = getattr(builtins, kind, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception) and not issubclass(builtin, (Warning,)):
        return builtin(message)
    name = kind if SAFE_NAME.match(kind) else "StudentError"
    return type(name, (Exception,), {})(message)


class _Outgoing:
    """The modules and optimizers of one call's arguments, as the worker gets them: the student's by handle,
    the grader's described (``uploads``) and rebuilt there, optimizers by their state over those tensors."""

    def __init__(self, remote: "Remote", args: tuple, kwargs: dict, label: str):
        self.remote = remote
        self.uploads, self.trackers, self.optimizers, self.opt_objects = [], [], [], []
        self.refs: dict[int, list] = {}   # id(tensor) -> where the worker finds it: ["u"/"h", which, index]
        for obj in _modules_and_optimizers([list(args), kwargs]):
            if isinstance(obj, nn.Module) and "_remote" not in obj.__dict__:
                self._upload(obj, label)
            elif isinstance(obj, nn.Module):
                r = obj.__dict__["_remote"][0]
                self.refs.update({id(r.tracker.tensor(i)): ["h", r.handle, i] for i in range(len(r.tracker.places))})
        self.index = {id(obj): i for i, (obj, _) in enumerate(self.trackers)}

    def _upload(self, module: nn.Module, label: str) -> None:
        if any("_remote" in m.__dict__ for m in module.modules()):
            raise TypeError(f"{label}: a module of the grader's cannot contain one of the student's")
        description, nodes = describe(module)
        tracker = Tracker(nodes, locations(description))
        self.refs.update({id(tracker.tensor(i)): ["u", len(self.uploads), i] for i in range(len(tracker.places))})
        self.uploads.append(protocol.encode(description))
        self.trackers.append((module, tracker))

    def hook(self, value):
        """:func:`protocol.encode`'s hook for what is not plain data."""
        if isinstance(value, nn.Module):
            info = value.__dict__.get("_remote")
            if info is None:
                return {"__remote_upload__": self.index[id(value)]}
            if not info[0].alive():
                raise protocol.WireError("a module from a sandbox that was restarted")
            return {"__remote_handle__": [info[0].handle, info[1]]}
        if isinstance(value, RemoteClass) and value.remote is self.remote:
            return {"__remote_class__": value.__name__}
        if isinstance(value, torch.optim.Optimizer) and type(value).__name__ in OPTIMIZERS \
                and type(value) is getattr(torch.optim, type(value).__name__):
            return {"__remote_optimizer__": self._optimizer(value)}
        raise protocol.WireError(f"a value of type {type(value).__name__} cannot cross the sandbox")

    def _optimizer(self, opt: torch.optim.Optimizer) -> int:
        for i, known in enumerate(self.opt_objects):
            if known is opt:
                return i
        try:
            params = [self.refs[id(p)] for g in opt.param_groups for p in g["params"]]
        except KeyError:
            raise protocol.WireError("an optimizer over parameters of no module passed along") from None
        self.optimizers.append(protocol.encode({"class": type(opt).__name__, "params": params,
                                                **protocol.optimizer_state(opt)}))
        self.opt_objects.append(opt)
        return len(self.opt_objects) - 1


class Remote:
    """The remote objects of one sandbox session (:class:`~course_lib.grading.autograder.session.Session`,
    or anything with its ``ensure``, ``request``, ``stop``, ``starts`` and ``sandbox``)."""

    def __init__(self, session):
        self.session = session
        self.roots: dict[int, weakref.ref] = {}
        self.released: list[tuple[int, int]] = []

    # -- mirrors ----------------------------------------------------------------------------------
    def _mirror(self, body) -> nn.Module:
        if type(body) is not dict or set(body) != {"handle", "module"} or type(body["handle"]) is not int:
            raise protocol.WireError("malformed remote module")
        description = validate(protocol.decode(body["module"], grad=[]))
        nodes = rebuild(description, resolve_mirror)
        root = RemoteRoot(self, body["handle"], nodes, locations(description))
        attach(root, nodes)
        self.roots[root.handle] = weakref.ref(root)
        weakref.finalize(root, self.released.append, (root.generation, root.handle))
        return nodes[0]

    def _live(self) -> list[RemoteRoot]:
        live = []
        for handle, ref in list(self.roots.items()):
            root = ref()
            if root is None or not root.alive():
                del self.roots[handle]
            else:
                live.append(root)
        return live

    # -- one call ---------------------------------------------------------------------------------
    def invoke(self, request: Request, args: tuple, kwargs: dict, label: str, root: RemoteRoot | None = None,
               node: int = 0):
        """Call ``request``'s target in the worker with ``args``/``kwargs``; its value, mirrored and differentiable."""
        self._check_alive(label, root)
        grad = torch.is_grad_enabled()
        outgoing = _Outgoing(self, args, kwargs, label)
        request.args = protocol.encode(list(args), hook=outgoing.hook)
        request.kwargs = protocol.encode(dict(kwargs), hook=outgoing.hook)
        request.uploads, request.optimizers = outgoing.uploads, outgoing.optimizers
        request.forbidden, request.grad = list(forbidden_now()), grad
        grad_args = protocol.leaves([list(args), kwargs], protocol.needs_grad) if grad else []
        self._add_state(request)
        if root is not None and request.module is not None:
            request.record = [i for i, m in enumerate(root.tracker.nodes) if m._forward_hooks and i != node]
        try:
            reply = self.session.request(request, label)
        except SandboxError as err:
            raise RuntimeError(f"{label}: {err}") from None
        return self._finish(reply, label, root, outgoing, grad_args)

    def _check_alive(self, label: str, root: RemoteRoot | None) -> None:
        try:
            self.session.ensure()
        except SandboxError as err:
            raise RuntimeError(f"{label}: {err}") from None
        if root is not None and (not root.alive() or root.handle not in self.roots):
            raise RuntimeError(f"{label}: this module lived in a sandbox that was restarted after a crash or a "
                               "timeout; it is gone")

    def _add_state(self, request: Request) -> None:
        """What travels with every call: the random generators, the mirrors' changes, the released handles."""
        request.rng = protocol.encode(protocol.random_states())
        request.sync = [[r.handle, protocol.encode(c)] for r in self._live() if (c := r.tracker.changes()) is not None]
        request.release = [h for g, h in self.released if g == self.session.starts]
        self.released.clear()

    def _finish(self, reply: Reply, label: str, root, outgoing: _Outgoing, grad_args):
        try:
            restructures = self._take_state(reply, outgoing)
        except (protocol.WireError, ModuleError, ValueError, TypeError, KeyError, RuntimeError) as err:
            self._reject(label, err)
        for text, target in ((reply.stdout, sys.stdout), (reply.stderr, sys.stderr)):
            if type(text) is str and text:
                target.write(text)
        if reply.returned is not True:
            self._restructure(restructures, label)
            kind = "Exception" if reply.raised is None else str(reply.raised)
            message, where = "" if reply.message is None else str(reply.message), reply.where
            raise remote_exception(kind, message + (f" ({where})" if type(where) is str and where else ""))
        outputs: list = []
        try:
            value = protocol.decode(reply.value, hook=self._decode_hook(outgoing), grad=outputs)
        except (protocol.WireError, ModuleError, ValueError) as err:
            raise TypeError(f"{label} returned a value the grader cannot accept: {err}") from None
        value = self._with_grad(reply, value, outputs, grad_args, root, label)
        if root is not None:
            self._replay_hooks([] if reply.recorded is None else reply.recorded, root)
        self._restructure(restructures, label)  # last: the reply's handles and hooks name the old layers
        return value

    def _take_state(self, reply: Reply, outgoing: _Outgoing) -> list:
        """Apply what changed in the worker (mirrors, the grader's modules and optimizers, the random
        generators); the restructures, applied last. Raises on anything malformed."""
        by_handle = {r.handle: r for r in self._live()}
        for entry in [] if reply.sync is None else reply.sync:
            if type(entry) is not list or len(entry) != 2 or entry[0] not in by_handle:
                raise ModuleError("malformed state")
            by_handle[entry[0]].tracker.apply(protocol.decode(entry[1], grad=[]))
        changed = [None] * len(outgoing.trackers) if reply.uploads is None else reply.uploads
        if type(changed) is not list or len(changed) != len(outgoing.trackers):
            raise ModuleError("malformed state")
        for (_, tracker), change in zip(outgoing.trackers, changed):
            if change is not None:
                tracker.apply(protocol.decode(change, grad=[]))
        states = [None] * len(outgoing.opt_objects) if reply.optimizers is None else reply.optimizers
        if type(states) is not list or len(states) != len(outgoing.opt_objects):
            raise ModuleError("malformed optimizer state")
        for opt, state in zip(outgoing.opt_objects, states):
            protocol.load_optimizer_state(opt, protocol.decode(state))
        protocol.set_random_states(protocol.decode(reply.rng))
        return self._restructures([] if reply.restructure is None else reply.restructure, by_handle, outgoing.trackers)

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
            body = protocol.decode(body, grad=[])
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
                    attach(target, nodes)
                    target.tracker = Tracker(nodes, locations(description))
        except ForeignLayerError as err:  # the student's doing, not a broken sandbox: the call fails
            raise TypeError(f"{label}: {err} (the module is unchanged)") from None
        except (ModuleError, ValueError, TypeError, KeyError, RuntimeError) as err:
            self._reject(label, err)

    def _decode_hook(self, outgoing: _Outgoing):
        upload_trackers, opt_objects = outgoing.trackers, outgoing.opt_objects

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
            raise protocol.WireError(f"malformed value tagged {tag[:40]!r}")
        return hook

    def _with_grad(self, reply: Reply, value, outputs, grad_args, root, label):
        graph = reply.graph
        if graph is None:
            for t in outputs:  # only the graph kept in the worker makes an output differentiable here
                t.requires_grad_(False)
            return value
        params = [] if reply.graph_params is None else reply.graph_params
        if type(graph) is not int or type(params) is not list or reply.graph_args != len(grad_args) or (
                params and root is None) or not all(type(i) is int and 0 <= i < len(root.tracker.places) for i in params):
            raise TypeError(f"{label}: the sandbox described its gradient graph wrongly")
        inputs = grad_args + [root.tracker.tensor(i) for i in params]
        detached = [t.detach() for t in outputs]
        link = {"remote": self, "graph": graph, "outputs": detached, "inputs": inputs}
        new = RemoteBackward.apply(link, *inputs)
        new = new if isinstance(new, tuple) else (new,)
        return replace_values(value, {id(old): t for old, t in zip(outputs, new)})

    def vjp(self, graph: int, grad_outputs, inputs) -> list:
        request = Request(vjp=graph, grads=protocol.encode([g.detach() for g in grad_outputs]),
                          rng=protocol.encode(protocol.random_states()))
        try:
            reply = self.session.request(request, "backward")
        except SandboxError as err:
            raise RuntimeError(f"backward through the student's code: {err}") from None
        if reply.returned is not True:
            raise RuntimeError(f"backward through the student's code raised {reply.raised}: "
                               f"{str(reply.message)[:2000]}")
        grads = protocol.decode(reply.value)
        if type(grads) is not list or len(grads) != len(inputs) or not all(
                g is None or (type(g) is torch.Tensor and g.shape == x.shape and g.dtype == x.dtype)
                for g, x in zip(grads, inputs)):
            raise RuntimeError("backward through the student's code: the sandbox sent malformed gradients")
        return grads

    def _replay_hooks(self, recorded, root: RemoteRoot) -> None:
        """Call the forward hooks of the mirror's layers with what the real layers saw."""
        if type(recorded) is not list:
            return
        for entry in recorded:
            if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not int \
                    or not 0 <= entry[0] < len(root.tracker.nodes):
                continue
            layer = root.tracker.nodes[entry[0]]
            try:
                inp, out = protocol.decode(entry[1]), protocol.decode(entry[2])
            except (protocol.WireError, ValueError):
                continue
            for key, hook in list(layer._forward_hooks.items()):
                if key in layer._forward_hooks_with_kwargs:
                    hook(layer, (inp,), {}, out)
                else:
                    hook(layer, (inp,), out)


def proxies_for(remote: Remote, functions: list[str], classes: list[str]) -> dict:
    """``name -> proxy``: :class:`RemoteClass` for each class of the student's, a :class:`RemoteFunction` otherwise."""
    out = {name: RemoteFunction(remote, name) for name in functions}
    out.update({name: RemoteClass(remote, name) for name in classes})
    return out


