"""The U-Net of chapter 6 drawn from a :class:`course_lib.models.unet.UNet`: the "U" of its paper.

Forward hooks on the model's levels (``stem``, ``down[i]``, ``up[i].up``, ``up[i]``, ``head``)
give every map's shape; the figure puts the contracting path on the left, the expanding path on
the right, one row per resolution, and the skip connections across. With ``skips=False`` it
draws the plain encoder–decoder: the same encoder and up-convolutions, nothing across.
"""
from __future__ import annotations

from torch import nn

from course_lib.diagrams.draw import FONT, arrow, box, new_axes
from course_lib.diagrams.trace import shape_text, trace


def unet_levels(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, list[tuple[int, ...]]]:
    """Output shapes of the U-Net's parts, by forward hooks: ``{"encoder": [...], "upconv": [...],
    "decoder": [...], "head": [...]}``, encoder from the top level down, decoder from the bottom up."""
    parts = {"encoder": [model.stem, *model.down], "upconv": [u.up for u in model.up],
             "decoder": list(model.up), "head": [model.head]}
    shapes: dict[str, list] = {name: [] for name in parts}
    handles = [m.register_forward_hook(lambda m, i, o, name=name: shapes[name].append(tuple(o.shape[1:])))
               for name, modules in parts.items() for m in modules]
    try:
        trace(model, input_shape, kinds=())  # one forward pass
    finally:
        for h in handles:
            h.remove()
    return shapes


def draw_unet(model: nn.Module, input_shape: tuple[int, ...], skips: bool = True, title: str | None = None):
    """The U-Net (or, with ``skips=False``, the encoder–decoder without its skip connections).

    Returns:
        ``(fig, levels)``: the figure and the shapes of :func:`unet_levels`.
    """
    levels = unet_levels(model, input_shape)
    depth = len(levels["upconv"])
    dx, dy, w = 0.75, 1.0, 1.35
    right = 2 * depth * dx + 2.6
    xlim, ylim = (-1.9, right + 2.3), (-depth * dy - 0.4, 0.9)
    fig, ax = new_axes(7.5, 7.5 * (ylim[1] - ylim[0]) / (xlim[1] - xlim[0]), xlim, ylim)
    box(ax, -1.2, 0.55, f"input\n{shape_text(tuple(input_shape))}", "input", w=1.2, h=0.5, fontsize=FONT - 1)
    arrow(ax, (-1.2, 0.3), (0, 0.22))
    for level, shape in enumerate(levels["encoder"]):
        x, y = level * dx if level < depth else right / 2, -level * dy
        label = "2 × conv 3×3"
        box(ax, x, y, f"{label}\n{shape_text(shape)}", "conv", w=w, h=0.45, fontsize=FONT - 1)
        if level < depth:
            nx = (level + 1) * dx if level + 1 < depth else right / 2
            arrow(ax, (x, y - 0.23), (nx - (0.3 if level + 1 == depth else 0), y - dy + 0.23),
                  "max pool 2×2", colour="#c0392b", text_offset=(-0.7, 0))
    for k, (up_shape, out_shape) in enumerate(zip(levels["upconv"], levels["decoder"])):
        level = depth - 1 - k
        x, y = right - level * dx, -level * dy
        sx = right - (level + 1) * dx if level + 1 < depth else right / 2
        arrow(ax, (sx + (0.3 if level + 1 == depth else 0), y - dy + 0.23), (x, y - 0.23),
              f"up-conv 2×2/2\n→ {shape_text(up_shape)}", colour="#27ae60", text_offset=(0.75, 0))
        text = f"2 × conv 3×3\n{shape_text(out_shape)}" if skips else f"up-sampled\n{shape_text(up_shape)}"
        box(ax, x, y, text, "upconv", w=w, h=0.45, fontsize=FONT - 1)
        if skips:
            skip = levels["encoder"][level]
            arrow(ax, (level * dx + w / 2, y), (x - w / 2, y), f"copy: concat {skip[0]} + {up_shape[0]} maps",
                  colour="#777777", text_offset=(0, 0.12), linestyle="--")
    head = levels["head"][0]
    box(ax, right + 1.2, 0.55, f"conv 1×1\n{shape_text(head)}", "conv", w=1.2, h=0.5, fontsize=FONT - 1)
    arrow(ax, (right, 0.22), (right + 1.2, 0.3))
    if title:
        ax.set_title(title, fontsize=FONT + 1)
    return fig, levels
