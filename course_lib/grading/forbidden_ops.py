"""The "write it yourself" guard: what a student's function may not reach while a check runs it.

:func:`course_lib.grading.compare.forbidding` patches the dotted names of ``FROM_SCRATCH`` (and
``RNN_FROM_SCRATCH``) for the duration of a call; a reference captured before (``_conv = F.conv2d``),
``torch.ops.aten.convolution`` or ``torch._C._nn.im2col`` reach the same kernel by another route.
:func:`guard` watches the route's end instead, in the process where the student's code runs (the
sandbox's worker, or the notebook itself for a self-check):

* every ATen op dispatched during the call (a ``TorchDispatchMode``; composite ops that decompose
  before the dispatcher, such as ``aten.lstm_cell``, through a ``TorchFunctionMode``) is looked up
  in the ops of :data:`ATEN_OPS` that the forbidden names map to;
* where the names forbid autograd, an op run by the autograd engine (``torch.autograd.grad``,
  ``.backward()``, however reached) fails the call;
* the course library's own answers (:data:`ANSWERS`, per check module) have their code swapped for
  one that raises, so that ``from course_lib.conv import conv2d_loops`` (a captured reference or a
  subclass included) fails too; an op dispatched from a frame of an answer's original code (a code
  object saved before the call) is caught as well.

A caught call raises :class:`ForbiddenCall`; the guard remembers it, so that a student's
``try/except`` around it does not save the call.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class ForbiddenCall(RuntimeError):
    """The student's code called an op that the assignment asks them to write."""


AUTOGRAD = "<autograd>"  # stands for "the autograd engine ran during the call"

CONVOLUTION = (
    "convolution", "_convolution", "_convolution_mode", "convolution_overrideable", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution_backward",
    "convolution_backward_overrideable", "cudnn_convolution", "cudnn_convolution_transpose", "mkldnn_convolution",
    "miopen_convolution", "_slow_conv2d_forward", "_slow_conv2d_backward", "thnn_conv2d", "slow_conv_dilated2d",
    "slow_conv_transpose2d", "_nnpack_spatial_convolution", "conv_tbc", "_conv_depthwise2d",
)
IM2COL = ("im2col", "col2im")
MAX_POOL = (
    "max_pool1d", "max_pool1d_with_indices", "max_pool2d", "max_pool2d_with_indices", "max_pool2d_backward",
    "max_pool2d_with_indices_backward", "max_pool3d", "max_pool3d_with_indices", "max_pool3d_with_indices_backward",
    "mkldnn_max_pool2d", "mkldnn_max_pool2d_backward", "quantized_max_pool2d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool2d_backward", "adaptive_max_pool3d", "fractional_max_pool2d",
    "max_unpool2d",
)
AVG_POOL = (
    "avg_pool1d", "avg_pool2d", "avg_pool2d_backward", "avg_pool3d", "avg_pool3d_backward", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward", "adaptive_avg_pool3d",
    "_adaptive_avg_pool3d", "_adaptive_avg_pool3d_backward", "mkldnn_adaptive_avg_pool2d",
)
RNN = (
    "rnn_tanh", "rnn_relu", "lstm", "gru", "rnn_tanh_cell", "rnn_relu_cell", "lstm_cell", "gru_cell",
    "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", "_cudnn_rnn", "miopen_rnn", "mkldnn_rnn_layer",
)
#: Ops that decompose before they reach the dispatcher (CompositeImplicitAutograd): only a function
#: mode sees them under their own name.
COMPOSITE = frozenset({"rnn_tanh", "rnn_relu", "lstm", "gru", "rnn_tanh_cell", "rnn_relu_cell", "lstm_cell",
                       "gru_cell"})
CLIP = ("_foreach_norm",)

#: Every dotted name of ``FROM_SCRATCH`` and ``RNN_FROM_SCRATCH`` -> the ATen ops behind it.
ATEN_OPS: dict[str, tuple[str, ...]] = {
    "torch.nn.functional.conv2d": CONVOLUTION, "torch.conv2d": CONVOLUTION,
    "torch.nn.functional.conv_transpose2d": CONVOLUTION,
    "torch.nn.functional.unfold": IM2COL, "torch.nn.functional.fold": IM2COL,
    "torch.nn.functional.max_pool2d": MAX_POOL, "torch.nn.functional.max_pool2d_with_indices": MAX_POOL,
    "torch.max_pool2d": MAX_POOL, "torch.nn.functional.avg_pool2d": AVG_POOL,
    "torch.autograd.grad": (AUTOGRAD,), "torch.autograd.backward": (AUTOGRAD,), "torch.Tensor.backward": (AUTOGRAD,),
    **{f"torch.nn.{cls}.forward": RNN for cls in ("RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU")},
    **{f"torch.nn.utils.{name}": CLIP for name in ("clip_grad_norm_", "clip_grad.clip_grad_norm_", "clip_grad_norm",
                                                   "clip_grads_with_norm_", "get_total_norm")},
}

_A1 = ("course_lib.conv.conv_output_size", "course_lib.conv.conv2d_loops", "course_lib.conv.im2col",
       "course_lib.conv.col2im", "course_lib.conv.conv2d", "course_lib.conv.Conv2dFunction",
       "course_lib.conv.conv2d_backward", "course_lib.conv.conv_transpose2d", "course_lib.conv.conv_matrix",
       "course_lib.pool.max_pool2d", "course_lib.pool.max_pool2d_backward", "course_lib.pool.avg_pool2d",
       "course_lib.pool.avg_pool2d_backward")
#: The course library's answers to the graded parts, by the check module that grades them: a
#: student's function called by one of its checks may not use them (the library's helpers that are
#: not answers, e.g. ``course_lib.imbalance.imbalanced_indices``, stay allowed).
ANSWERS: dict[str, tuple[str, ...]] = {
    "course_lib.grading.conv_checks": _A1,
    "course_lib.grading.pool_checks": _A1,
    "course_lib.grading.architecture_checks": (
        "course_lib.models.resnet.BasicBlock", "course_lib.models.resnet.Bottleneck",
        "course_lib.models.googlenet.Inception", "course_lib.models.mobilenet.DepthwiseSeparableConv"),
    "course_lib.grading.training_checks": (
        "course_lib.augment.crop_flip", "course_lib.augment.random_crop_flip", "course_lib.imbalance.class_weights",
        "course_lib.imbalance.balanced_sample_weights", "course_lib.imbalance.balanced_sampler",
        "course_lib.imbalance.oversample_indices", "course_lib.imbalance.balanced_accuracy",
        "course_lib.imbalance.per_class_recall", "course_lib.transfer.replace_head",
        "course_lib.transfer.set_trainable", "course_lib.transfer.freeze_batchnorm_stats",
        "course_lib.transfer.FrozenBatchNormModel"),
    "course_lib.grading.rnn_checks": (
        "course_lib.rnn.RNNCell", "course_lib.rnn.LSTMCell", "course_lib.rnn.GRUCell",
        "course_lib.rnn.rnn_cell_from_weights", "course_lib.rnn.lstm_cell_from_weights",
        "course_lib.rnn.gru_cell_from_weights", "course_lib.rnn.cell_from_torch",
        "course_lib.rnn_gradients.clip_grad_norm_"),
    "course_lib.grading.attention_checks": (
        "course_lib.attention.SqueezeExcitation", "course_lib.attention.spatial_softmax",
        "course_lib.attention.AttentionPool2d"),
    "course_lib.grading.segmentation_checks": (
        "course_lib.models.unet.UNet", "course_lib.models.unet.Up", "course_lib.models.unet.DoubleConv",
        "course_lib.segmentation.soft_dice_loss", "course_lib.segmentation.mean_iou",
        "course_lib.segmentation.iou_per_class"),
    # The DCGAN networks only as built (their __init__): the checks hand the student's train_step
    # networks of these classes, whose forward must run.
    "course_lib.grading.gan_checks": (
        "course_lib.models.dcgan.Generator.__init__", "course_lib.models.dcgan.Discriminator.__init__",
        "course_lib.models.dcgan.upsample_block", "course_lib.gan.discriminator_loss",
        "course_lib.gan.generator_loss", "course_lib.gan.gan_step"),
    "course_lib.grading.optim_init_checks": (
        "course_lib.init.fans", "course_lib.init.init_std", "course_lib.losses.smooth_labels",
        "course_lib.losses.label_smoothing_cross_entropy"),
    "course_lib.grading.receptive_field_checks": (
        "course_lib.receptive_field.receptive_fields", "course_lib.receptive_field.layers_to_cover"),
    "course_lib.grading.network_cost_checks": (
        "course_lib.counting.conv2d_num_params", "course_lib.counting.linear_num_params",
        "course_lib.counting.count_parameters", "course_lib.counting.count_mult_adds"),
    "course_lib.grading.cam_checks": ("course_lib.cam.class_activation_map", "course_lib.cam.grad_cam"),
}


def ops_for(names) -> frozenset[str]:
    """The ATen ops (and :data:`AUTOGRAD`) that the dotted ``names`` forbid."""
    return frozenset(op for name in names for op in ATEN_OPS.get(name, ()))


def answers_for(module: str | None) -> tuple[str, ...]:
    """The course library's answers that the checks of ``module`` grade."""
    return ANSWERS.get(module or "", ())


def resolve(name: str):
    """The object behind a dotted name such as ``course_lib.conv.conv2d_loops`` or a method,
    ``course_lib.models.dcgan.Generator.__init__`` (the longest importable prefix is the module)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"no module in {name!r}")


def _functions(obj) -> list[types.FunctionType]:
    """The Python functions of an answer: itself (and what it wraps), or a class's methods."""
    found = []
    members = vars(obj).values() if isinstance(obj, type) else [obj]
    for member in members:
        member = getattr(member, "__func__", member)  # staticmethod, classmethod
        while isinstance(member, types.FunctionType):
            found.append(member)
            member = getattr(member, "__wrapped__", None)
    return found


def _raiser(code: types.CodeType, name: str) -> types.CodeType:
    """A code object that reports ``name`` as used; it has ``code``'s free variables, so that it can
    replace ``code`` in a function with a closure (``super()`` in a method)."""
    free = code.co_freevars
    lines = ["def _outer():", *(f"    {v} = None" for v in free), "    def _raiser(*args, **kwargs):"]
    if free:
        lines.append(f"        ({', '.join(free)},)")
    lines += [f"        __import__({__name__!r}, fromlist=['_']).answer_used({name!r})", "    return _raiser"]
    namespace: dict = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - our own source, built from identifiers
    return namespace["_outer"]().__code__


#: The guards in force (innermost last): each is a :class:`_Guard`.
_ACTIVE: list = []


def answer_used(name: str):
    """Called by an answer's swapped code: fail the call (and remember it)."""
    guard = _ACTIVE[-1] if _ACTIVE else None
    who = guard.who if guard else "your function"
    message = (f"{who} used {name}, the course library's own answer to this part, which this part asks you "
               "to write yourself")
    if guard is not None:
        guard.caught.append(message)
    raise ForbiddenCall(message)


class _Guard:
    """One guarded call: what it may not reach, and what it reached."""

    def __init__(self, ops: frozenset, answers: tuple, who: str):
        self.ops, self.who, self.caught = ops, who, []
        self.answers = [(name, fn) for name in answers for fn in _functions(resolve(name))]
        self.codes = {fn.__code__: name for name, fn in self.answers}

    def op_used(self, op: str) -> None:
        if op == AUTOGRAD:
            message = (f"{self.who} used autograd (torch.autograd.grad or .backward()), which this part asks "
                       "you to replace by your own gradient")
        else:
            message = f"{self.who} used aten.{op}, which this part asks you to write yourself"
        self.caught.append(message)
        raise ForbiddenCall(message)

    def check_frames(self) -> None:
        """An op dispatched from an answer's original code (saved before the call, rebuilt by the student)."""
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code in self.codes:
                answer_used(self.codes[frame.f_code])
            frame = frame.f_back

    @contextlib.contextmanager
    def swapped(self):
        saved = [(fn, fn.__code__) for _, fn in self.answers]
        try:
            for name, fn in self.answers:
                fn.__code__ = _raiser(fn.__code__, name)
            yield
        finally:
            for fn, code in saved:
                fn.__code__ = code


class _DispatchWatch(TorchDispatchMode):
    def __init__(self, guard: _Guard):
        super().__init__()
        self.guard = guard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        guard = self.guard
        op = func.overloadpacket.__name__
        if op in guard.ops:
            guard.op_used(op)
        if AUTOGRAD in guard.ops and torch._C._current_graph_task_id() != -1:
            guard.op_used(AUTOGRAD)
        if guard.codes:
            guard.check_frames()
        return func(*args, **(kwargs or {}))


class _FunctionWatch(TorchFunctionMode):
    def __init__(self, guard: _Guard, names: frozenset):
        super().__init__()
        self.guard, self.names = guard, names

    def __torch_function__(self, func, classes, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.names:
            self.guard.op_used(name)
        return func(*args, **(kwargs or {}))


_LIBRARY_CHECKS: list[bool] = []


@contextlib.contextmanager
def checking_the_library():
    """The course library's own tests check its answers (through adapters) with the students' checks:
    there the answers may run. Never in effect in the sandbox's worker (``strict``)."""
    _LIBRARY_CHECKS.append(True)
    try:
        yield
    finally:
        _LIBRARY_CHECKS.pop()


@contextlib.contextmanager
def guard(names=(), answers=(), who: str = "your function", strict: bool = False):
    """Fail the enclosed call of the student's function ``who`` when it reaches an op that ``names``
    forbid, autograd where they forbid it, or one of ``answers`` (dotted names of the course
    library's answers), unless in :func:`checking_the_library` and not ``strict`` (the worker)."""
    if _LIBRARY_CHECKS and not strict:
        answers = ()
    ops = ops_for(names)
    if not ops and not answers:
        yield
        return
    watch = _Guard(ops, tuple(answers), who)
    composite = ops & COMPOSITE
    _ACTIVE.append(watch)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(watch.swapped())
            if composite:
                stack.enter_context(_FunctionWatch(watch, composite))
            stack.enter_context(_DispatchWatch(watch))
            yield
    finally:
        _ACTIVE.remove(watch)
    if watch.caught:  # raised inside the call, and caught there
        raise ForbiddenCall(watch.caught[0])
