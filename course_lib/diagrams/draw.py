"""The drawing primitives every course diagram shares: one palette, boxes, arrows, operator nodes.

All figures use data coordinates on an axis with equal aspect and no frame, so a box of width 1
is the same size in every diagram of the book.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

# One colour per kind of layer, the same in every figure (colour-blind-safe Okabe–Ito tints).
COLOURS = {
    "input": "#e8e8e8", "conv": "#a6cee3", "upconv": "#b2df8a", "pool": "#fdbf6f", "fc": "#cab2d6",
    "norm": "#f0f0f0", "act": "#ffffcc", "other": "#ffffff", "gate": "#fddbc7", "tanh": "#d1e5f0",
    "network": "#c7e9c0", "data": "#fee0b6", "loss": "#f4cccc",
}
FONT = 8  # points; at the book's ~700 px column a 7.5-inch figure is drawn at about 93 dpi


def new_axes(width: float, height: float, xlim: tuple[float, float], ylim: tuple[float, float]):
    """A frameless figure ``width × height`` inches whose axes span ``xlim × ylim`` (equal aspect)."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.subplots_adjust(0.01, 0.01, 0.99, 0.99)
    return fig, ax


def box(ax, x: float, y: float, text: str, kind: str = "other", w: float = 1.0, h: float = 0.4,
        fontsize: float = FONT, **text_kwargs):
    """A rounded box centred at ``(x, y)`` filled with the colour of ``kind``, ``text`` inside."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                facecolor=COLOURS.get(kind, COLOURS["other"]), edgecolor="#444444", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, **text_kwargs)


def arrow(ax, start, end, text: str | None = None, colour: str = "#333333", style: str = "-|>",
          rad: float = 0.0, text_offset=(0.0, 0.0), fontsize: float = FONT - 1, **kwargs):
    """An arrow from ``start`` to ``end`` (straight, or bent by ``rad``), optionally labelled at its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=colour, lw=0.9,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0, **kwargs))
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=fontsize, color=colour)


def node(ax, x: float, y: float, symbol: str, r: float = 0.14, fontsize: float = FONT + 1):
    """A small circle with an operator: ``"+"`` (add), ``"×"`` (element-wise product), ``"C"`` (concat)."""
    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor="#444444", lw=0.8))
    ax.text(x, y, symbol, ha="center", va="center", fontsize=fontsize)
