"""Block diagrams of the networks of chapter 3, drawn from the ``course_lib`` modules themselves.

Every function traces the module (:func:`~course_lib.diagrams.trace.trace`: forward hooks on a zero
input of the model's input size), draws what the trace found, and returns the figure together with
the records it drew, so a test can compare the drawing with the module.

* :func:`draw_network` — a whole network as a row of bars (LeNet-5, AlexNet, VGG): one bar per
  convolution, pooling and fully connected layer; height ∝ log of the map's side, width ∝ log of
  its channels, the output shape above and the operation below.
* :func:`draw_branches` — a block as parallel columns that meet in a concatenation or a sum
  (the Inception module, the residual and bottleneck blocks) or a single column (the
  depthwise-separable block).
* :func:`draw_dense_block` — a dense block with all its ``L(L+1)/2`` connections.
"""
from __future__ import annotations

import math

from torch import nn

from course_lib.diagrams.draw import FONT, arrow, box, new_axes, node
from course_lib.diagrams.trace import LayerRecord, shape_text, trace


def network_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerRecord]:
    """The convolution, pooling and fully connected layers of ``model`` that change the shape.

    An adaptive pool that returns its input unchanged (AlexNet's and VGG's at 224×224) is left
    out: on the ImageNet input it does nothing.
    """
    records = trace(model, input_shape, kinds=("conv", "upconv", "pool", "fc"))
    return [r for r in records if not (r.kind == "pool" and r.in_shape == r.out_shape)]


def _bar_size(shape, max_side: int, max_channels: int, max_features: int) -> tuple[float, float]:
    """Width ∝ log(channels) and height ∝ log(side) of a map; a feature vector is a thin bar."""
    if len(shape) == 3:
        C, H, _ = shape
        return 0.2 + 0.45 * math.log(C + 1) / math.log(max_channels + 1), \
            0.15 + 1.05 * math.log(H + 1) / math.log(max_side + 1)
    return 0.12, 0.15 + 1.05 * math.log(shape[0] + 1) / math.log(max_features + 1)


def draw_network(model: nn.Module, input_shape: tuple[int, ...], title: str | None = None):
    """A whole network as a row of bars, one per shape-changing layer, read from the module.

    Returns:
        ``(fig, records)``: the figure and the :class:`LayerRecord` of every bar after the input.
    """
    records = network_layers(model, input_shape)
    items = [("input", "input", tuple(input_shape))] + [(r.kind, r.label, r.out_shape) for r in records]
    maps = [s for *_, s in items if len(s) == 3]
    vectors = [s[0] for *_, s in items if len(s) == 1] or [10]
    max_side, max_channels = max(s[1] for s in maps), max(s[0] for s in maps)
    n = len(items)
    fig, ax = new_axes(min(7.5, max(4.5, 0.36 * n + 0.6)), 3.3, (-0.7, n - 0.3), (-1.75, 1.75))
    ax.set_aspect("auto")
    ax.plot([0, n - 1], [0, 0], color="#999999", lw=0.8, zorder=0)
    for x, (kind, label, shape) in enumerate(items):
        w, h = _bar_size(shape, max_side, max_channels, max(vectors))
        box(ax, x, 0, "", kind, w=w, h=h)
        ax.text(x, 0.7, shape_text(shape), rotation=90, ha="center", va="bottom", fontsize=FONT - 0.5)
        ax.text(x, -0.7, label, rotation=90, ha="center", va="top", fontsize=FONT - 0.5)
    if title:
        ax.set_title(title, fontsize=FONT + 1)
    return fig, records


def _fold(records: list[LayerRecord]) -> list[tuple[str, str, tuple[int, ...]]]:
    """Merge each norm/activation into the box of the layer before it: ``conv 3×3, BN, ReLU``."""
    boxes: list[list] = []
    for r in records:
        if r.kind in ("norm", "act") and boxes and boxes[-1][2] == r.out_shape:
            boxes[-1][0] += f", {r.label}"
        else:
            boxes.append([r.label, r.kind, r.out_shape])
    return [tuple(b) for b in boxes]


def _column(ax, x: float, y: float, boxes, w: float, step: float) -> float:
    """Boxes top to bottom from ``y`` with arrows between; returns the y below the last one."""
    for k, (label, kind, shape) in enumerate(boxes):
        if k:
            arrow(ax, (x, y + step - 0.25), (x, y + 0.25))
        box(ax, x, y, f"{label}\n{shape_text(shape)}", kind, w=w, h=0.5, fontsize=FONT - 0.5)
        y -= step
    return y


def draw_branches(module: nn.Module, input_shape: tuple[int, ...], branches: list[str] | None = None,
                  merge: str | None = None, title: str | None = None):
    """A block as parallel columns meeting in a concatenation (``merge="concat"``) or a sum (``"add"``).

    Args:
        module: the block, e.g. ``models.Inception(192, 64, 96, 128, 16, 32, 32)``.
        input_shape: ``(C, H, W)`` of its input.
        branches: child-module names that start each column (``["branch1", ...]`` for Inception,
            ``["", "downsample"]`` for a residual block: ``""`` collects every other layer). ``None``:
            one column with every layer (the depthwise-separable block).
        merge: ``"concat"``, ``"add"`` or ``None``. With ``"add"`` the last activation of the
            first column runs after the sum (``relu(F(x) + x)``) and is drawn below it.

    Returns:
        ``(fig, records)``: the figure and every traced layer, in forward order.
    """
    records = trace(module, input_shape)
    names = branches or [""]
    columns = {b: [r for r in records if b and (r.name == b or r.name.startswith(b + "."))] for b in names}
    rest = [r for r in records if not any(r in c for c in columns.values())]
    columns.update({b: rest for b in names if not b})
    after = []
    if merge == "add" and columns[names[0]] and columns[names[0]][-1].kind == "act":
        after = [columns[names[0]].pop()]
    folded = [_fold(columns[b]) for b in names]
    step, w = 0.8, 1.9 if len(names) > 2 else 2.4
    depth = max(len(f) for f in folded) or 1
    width = max(2.8, (w + 0.35) * len(names))
    height = step * (depth + 1 + (merge is not None)) + 0.6
    fig, ax = new_axes(min(7.5, 0.85 * width), 0.85 * height, (-width / 2, width / 2), (-height + 0.3, 0.3))
    box(ax, 0, 0, f"input\n{shape_text(tuple(input_shape))}", "input", w=w, h=0.5, fontsize=FONT - 0.5)
    xs = [(-(len(names) - 1) / 2 + k) * (w + 0.35) for k in range(len(names))]
    merge_y = -step * (depth + 1)
    for x, boxes in zip(xs, folded):
        if boxes:
            arrow(ax, (0, -0.25), (x, -step + 0.25))
        bottom = _column(ax, x, -step, boxes, w, step)
        if not boxes:  # an identity shortcut: the input itself goes to the sum
            ax.plot([w / 2, x, x], [0, 0, merge_y], color="#333333", lw=0.9)
            ax.text(x + 0.08, -step, "identity", fontsize=FONT - 0.5, ha="left", va="center", style="italic")
            arrow(ax, (x, merge_y), (0.14, merge_y))
            continue
        end = merge_y + (0.14 if merge else 0.25)
        arrow(ax, (x, bottom + step - 0.25), (0 if merge else x, end))
    out_shape = records[-1].out_shape
    if merge == "concat":  # the branches' maps side by side
        out_shape = (sum(columns[b][-1].out_shape[0] for b in names),) + out_shape[1:]
    y = merge_y
    if merge:
        node(ax, 0, y, {"concat": "C", "add": "+"}[merge])
        if merge == "concat":
            ax.text(0.22, y, "concatenate channels", fontsize=FONT - 0.5, va="center")
        else:  # left of the node: the identity arrives from the right
            ax.text(-0.22, y, "sum", fontsize=FONT - 0.5, va="center", ha="right")
        y -= step
        arrow(ax, (0, y + step - 0.14), (0, y + 0.25))
    box(ax, 0, y, f"{'output' if not after else _fold(after)[0][0]}\n{shape_text(out_shape)}",
        after[0].kind if after else "input", w=w, h=0.5, fontsize=FONT - 0.5)
    if title:
        ax.set_title(title, fontsize=FONT + 1)
    return fig, records


def dense_block_layers(block: nn.Module, input_shape: tuple[int, ...]):
    """``(in_shape, out_shape)`` of every layer of a dense block, by forward hooks on ``block.layers``."""
    shapes = []
    handles = [layer.register_forward_hook(
        lambda m, i, o: shapes.append((tuple(i[0].shape[1:]), tuple(o.shape[1:])))) for layer in block.layers]
    try:
        trace(block, input_shape, kinds=())  # one forward pass; the leaf records are not needed
    finally:
        for h in handles:
            h.remove()
    return shapes


def draw_dense_block(block: nn.Module, input_shape: tuple[int, ...], title: str | None = None):
    """A dense block: layer ``i`` reads the concatenation of the input and every earlier layer's maps.

    Returns:
        ``(fig, shapes)``: the figure and ``(in_shape, out_shape)`` of every layer, as traced.
    """
    shapes = dense_block_layers(block, input_shape)
    L, gap = len(shapes), 1.6
    fig, ax = new_axes(7.5, 3.0, (-1.0, gap * (L + 1) + 0.2), (-1.3, 2.3))
    colours = ["#555555", "#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928"]  # one per source
    box(ax, 0, 0, f"input\n{shape_text(tuple(input_shape))}", "input", w=1.1, h=0.55, fontsize=FONT - 1)
    sources = [0.55]  # where each feature map leaves the main line: the input, then each layer
    for i, (in_shape, out_shape) in enumerate(shapes, start=1):
        cx = gap * i - 0.45
        for j, sx in enumerate(sources[:-1]):  # earlier maps arrive over arcs; the last one on the line
            arrow(ax, (sx, 0.3), (cx, 0.14), colour=colours[j % len(colours)], rad=-0.35, style="-|>")
        arrow(ax, (sources[-1], 0), (cx - 0.14, 0), colour=colours[(len(sources) - 1) % len(colours)])
        node(ax, cx, 0, "C")
        ax.text(cx, -0.3, f"{in_shape[0]}", ha="center", va="top", fontsize=FONT - 1)
        arrow(ax, (cx + 0.14, 0), (gap * i - 0.05 - 0.05, 0))
        box(ax, gap * i + 0.35, 0, f"layer {i}\n+{out_shape[0]}", "conv", w=0.8, h=0.55, fontsize=FONT - 1)
        sources.append(gap * i + 0.75)
    cx = gap * (L + 1) - 0.45
    for j, sx in enumerate(sources[:-1]):
        arrow(ax, (sx, 0.3), (cx, 0.14), colour=colours[j % len(colours)], rad=-0.35)
    arrow(ax, (sources[-1], 0), (cx - 0.14, 0), colour=colours[(len(sources) - 1) % len(colours)])
    node(ax, cx, 0, "C")
    out_channels = shapes[-1][0][0] + shapes[-1][1][0]
    ax.text(cx, -0.3, f"output\n{shape_text((out_channels,) + shapes[-1][1][1:])}", ha="center", va="top",
            fontsize=FONT - 1)
    ax.text(-0.55, -1.1, "C: concatenate channels; each layer is BN, ReLU, conv 1×1, BN, ReLU, conv 3×3",
            fontsize=FONT - 1, ha="left")
    if title:
        ax.set_title(title, fontsize=FONT + 1)
    return fig, shapes
