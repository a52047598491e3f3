"""Schematic figures of chapters 7 and 8, labelled with the symbols of the chapters' equations.

These are pictures of formulas, not of modules, so they are drawn by hand here (in code): the
recurrent cell unrolled in time (Eq. rnn-cell), the LSTM cell (Eq. lstm), the GRU cell (Eq. gru)
and the alternating training of a GAN (chapter 7). Each function returns ``(fig, symbols)``,
``symbols`` being the mathtext labels it placed, so a test can check that every symbol of the
equation is in the figure.
"""
from __future__ import annotations

from matplotlib.patches import FancyBboxPatch

from course_lib.diagrams.draw import FONT, arrow, box, new_axes, node


def _label(ax, symbols: list[str], x: float, y: float, text: str, **kwargs):
    """Write a mathtext label and remember it."""
    symbols.append(text)
    ax.text(x, y, text, ha=kwargs.pop("ha", "center"), va=kwargs.pop("va", "center"),
            fontsize=kwargs.pop("fontsize", FONT + 2), **kwargs)


def draw_rnn_unrolled(steps: int = 4):
    """The recurrent cell folded (a loop through ``W_hh``) and unrolled over ``steps`` time steps:
    ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)``, the same weights at every step."""
    symbols: list[str] = []
    fig, ax = new_axes(7.5, 2.6, (-0.9, 3.0 + 1.6 * steps), (-1.35, 1.35))
    box(ax, 0.6, 0, "tanh", "tanh", w=0.8, h=0.55)  # the folded cell
    arrow(ax, (0.6, -0.95), (0.6, -0.28))
    _label(ax, symbols, 0.6, -1.15, r"$x_t$")
    arrow(ax, (0.6, 0.28), (0.6, 0.95))
    _label(ax, symbols, 0.6, 1.15, r"$h_t$")
    ax.plot([1.0, 1.3, 1.3, 0.85], [0.1, 0.1, -0.55, -0.55], color="#333333", lw=0.9)  # the loop
    arrow(ax, (0.85, -0.55), (0.85, -0.28))
    _label(ax, symbols, 1.35, -0.25, r"$W_{hh}$", fontsize=FONT + 1, ha="left")
    _label(ax, symbols, 0.5, -0.6, r"$W_{xh}$", fontsize=FONT + 1, ha="right")
    ax.text(2.0, 0, "=", fontsize=FONT + 8, ha="center", va="center")
    _label(ax, symbols, 2.45, -0.3, r"$h_0 = 0$", fontsize=FONT + 1)
    for t in range(1, steps + 1):
        x = 1.6 + 1.6 * t
        arrow(ax, (x - 1.6 + (0.4 if t > 1 else 0.45), 0), (x - 0.4, 0))
        _label(ax, symbols, x - 0.8, 0.15, r"$W_{hh}$", fontsize=FONT)
        box(ax, x, 0, "tanh", "tanh", w=0.8, h=0.55)
        arrow(ax, (x, -0.95), (x, -0.28))
        _label(ax, symbols, x + 0.05, -0.6, r"$W_{xh}$", fontsize=FONT, ha="left")
        _label(ax, symbols, x, -1.15, rf"$x_{t}$")
        arrow(ax, (x, 0.28), (x, 0.95))
        _label(ax, symbols, x, 1.15, rf"$h_{t}$")
    arrow(ax, (1.6 + 1.6 * steps + 0.4, 0), (1.6 + 1.6 * steps + 1.0, 0))
    _label(ax, symbols, 1.6 + 1.6 * steps + 1.1, 0, r"$\cdots$", ha="left")
    return fig, symbols


def _gate(ax, symbols, x, y, fn: str, symbol: str, top: float):
    """A gate: a box with its non-linearity fed from the bus below, its symbol on the wire above."""
    box(ax, x, y, fn, "gate" if fn == "σ" else "tanh", w=0.6, h=0.45, fontsize=FONT + 1)
    ax.plot([x, x], [y - 0.75, y - 0.23], color="#333333", lw=0.9)
    arrow(ax, (x, y + 0.23), (x, top))
    _label(ax, symbols, x + 0.08, (y + top) / 2 + 0.1, symbol, fontsize=FONT + 1, ha="left")


def draw_lstm_cell():
    """The LSTM cell of Eq. (lstm): the memory line ``C`` on top, the four gates below it."""
    symbols: list[str] = []
    fig, ax = new_axes(7.5, 3.6, (-1.4, 8.6), (-2.1, 2.7))
    ax.add_patch(FancyBboxPatch((0, -1.6), 7.2, 3.6, boxstyle="round,pad=0,rounding_size=0.2",
                                facecolor="#fafafa", edgecolor="#999999"))
    top, bus = 1.5, -1.15
    _label(ax, symbols, -0.9, top, r"$C_{t-1}$")
    arrow(ax, (-0.5, top), (1.36, top))
    node(ax, 1.5, top, "×")
    arrow(ax, (1.64, top), (3.86, top))
    node(ax, 4.0, top, "+")
    arrow(ax, (4.14, top), (8.0, top))
    _label(ax, symbols, 8.3, top, r"$C_t$")
    _label(ax, symbols, -0.9, bus, r"$h_{t-1}$")
    ax.plot([-0.5, 5.6], [bus, bus], color="#333333", lw=0.9)
    _label(ax, symbols, 0.6, -1.95, r"$x_t$")
    ax.plot([0.6, 0.6], [-1.75, bus], color="#333333", lw=0.9)
    ax.text(0.85, bus - 0.2, r"$[h_{t-1}, x_t]$", fontsize=FONT, va="top")
    _gate(ax, symbols, 1.5, -0.4, "σ", r"$f_t$", top - 0.14)
    _gate(ax, symbols, 2.6, -0.4, "σ", r"$i_t$", 0.36)
    _gate(ax, symbols, 3.6, -0.4, "tanh", r"$\tilde C_t$", 0.5)
    node(ax, 3.1, 0.5, "×")
    ax.plot([2.6, 2.96], [0.36, 0.5], color="#333333", lw=0.9)
    arrow(ax, (3.1, 0.64), (4.0, top - 0.14))
    _gate(ax, symbols, 5.6, -0.4, "σ", r"$o_t$", 0.36)
    box(ax, 6.4, 0.95, "tanh", "tanh", w=0.6, h=0.35)
    arrow(ax, (6.4, top), (6.4, 1.13))
    node(ax, 6.4, 0.36, "×")
    arrow(ax, (6.4, 0.77), (6.4, 0.5))
    arrow(ax, (5.6, 0.36), (6.26, 0.36))
    ax.plot([6.4, 6.4, 7.6], [0.22, -1.15, -1.15], color="#333333", lw=0.9)
    arrow(ax, (7.6, -1.15), (8.0, -1.15))
    _label(ax, symbols, 8.3, -1.15, r"$h_t$")
    ax.text(3.6, 2.35, r"$C_t = f_t * C_{t-1} + i_t * \tilde C_t,\quad h_t = o_t * \tanh(C_t)$",
            ha="center", fontsize=FONT + 1)
    return fig, symbols


def draw_gru_cell():
    """The GRU cell of Eq. (gru): ``h_t = (1 - z_t) * h_{t-1} + z_t * h̃_t`` on the state line."""
    symbols: list[str] = []
    fig, ax = new_axes(7.5, 3.6, (-1.4, 8.6), (-2.1, 2.7))
    ax.add_patch(FancyBboxPatch((0, -1.6), 7.2, 3.6, boxstyle="round,pad=0,rounding_size=0.2",
                                facecolor="#fafafa", edgecolor="#999999"))
    top, bus = 1.5, -1.15
    line = dict(color="#333333", lw=0.9)
    _label(ax, symbols, -0.9, top, r"$h_{t-1}$")
    arrow(ax, (-0.5, top), (4.36, top))
    node(ax, 4.5, top, "×")  # (1 - z_t) * h_{t-1}
    arrow(ax, (4.64, top), (5.86, top))
    node(ax, 6.0, top, "+")
    arrow(ax, (6.14, top), (8.0, top))
    _label(ax, symbols, 8.3, top, r"$h_t$")
    ax.plot([0.3, 0.3, 5.2], [top, bus, bus], **line)  # h_{t-1} down to the gates' input bus
    _label(ax, symbols, 0.9, -1.95, r"$x_t$")
    ax.plot([0.9, 0.9], [-1.75, bus], **line)
    ax.text(0.4, bus - 0.08, r"$[h_{t-1}, x_t]$", fontsize=FONT, va="top")
    _gate(ax, symbols, 1.5, -0.4, "σ", r"$r_t$", 0.36)
    node(ax, 1.5, 0.5, "×")  # r_t * h_{t-1}
    arrow(ax, (0.3, 0.5), (1.36, 0.5))
    ax.plot([1.64, 2.4, 2.4], [0.5, 0.5, -0.4], **line)
    ax.plot([0.9, 0.9, 2.4, 2.4], [bus, -1.4, -1.4, -0.4], **line)  # x_t joins r_t * h_{t-1}
    arrow(ax, (2.4, -0.4), (2.7, -0.4))
    ax.text(2.45, 0.1, r"$[r_t * h_{t-1}, x_t]$", fontsize=FONT, ha="left")
    box(ax, 3.0, -0.4, "tanh", "tanh", w=0.6, h=0.45, fontsize=FONT + 1)
    ax.plot([3.0, 3.0, 6.0], [-0.17, 0.3, 0.3], **line)
    arrow(ax, (6.0, 0.3), (6.0, 0.81))
    _label(ax, symbols, 3.9, 0.45, r"$\tilde h_t$", fontsize=FONT + 1)
    _gate(ax, symbols, 5.2, -0.4, "σ", r"$z_t$", 0.95)
    box(ax, 4.5, 0.95, "1 −", "other", w=0.45, h=0.28, fontsize=FONT)
    ax.plot([5.2, 4.73], [0.95, 0.95], **line)
    arrow(ax, (4.5, 1.09), (4.5, top - 0.14))
    arrow(ax, (5.2, 0.95), (5.86, 0.95))
    node(ax, 6.0, 0.95, "×")  # z_t * h~_t
    arrow(ax, (6.0, 1.09), (6.0, top - 0.14))
    ax.text(3.6, 2.35, r"$h_t = (1 - z_t) * h_{t-1} + z_t * \tilde h_t$", ha="center", fontsize=FONT + 1)
    return fig, symbols


def draw_gan_loop():
    """One step of GAN training (chapter 7): D learns on real and detached fakes, then G through D."""
    symbols: list[str] = []
    fig, ax = new_axes(7.5, 2.65, (-0.5, 10.5), (-1.65, 2.0))
    _label(ax, symbols, 0.5, 0.9, r"$z \sim \mathcal{N}(0, I)$", fontsize=FONT + 1)
    arrow(ax, (0.5, 0.7), (1.6, 0.9))
    box(ax, 2.3, 0.9, "generator $G$", "network", w=1.4, h=0.55)
    arrow(ax, (3.0, 0.9), (4.1, 0.9))
    box(ax, 4.8, 0.9, "fake $G(z)$", "data", w=1.3, h=0.5)
    box(ax, 4.8, -0.6, "real $x$\n(Fashion-MNIST)", "data", w=1.5, h=0.6)
    arrow(ax, (5.45, 0.9), (6.2, 0.3))  # tips on D's left edge (the box spans 6.2 to 7.8)
    arrow(ax, (5.55, -0.6), (6.2, 0.0))
    box(ax, 7.0, 0.15, "discriminator $D$", "network", w=1.6, h=0.55)
    arrow(ax, (7.8, 0.15), (8.5, 0.15))
    _label(ax, symbols, 9.4, 0.15, r"$D(\cdot) \in (0, 1)$", fontsize=FONT + 1)
    _label(ax, symbols, 7.0, -1.35,
           r"1. $D$ step: $\mathcal{L}_D = -\log D(x) - \log(1 - D(G(z)))$, fakes detached",
           fontsize=FONT + 1, color="#1f4e79")
    _label(ax, symbols, 4.3, 1.75, r"2. $G$ step: $\mathcal{L}_G = -\log D(G(z))$, gradient through $D$ into $G$",
           fontsize=FONT + 1, color="#7b2d26")
    arrow(ax, (7.6, -0.15), (7.0, -0.15), colour="#1f4e79", rad=-1.2)
    arrow(ax, (8.6, 0.45), (2.5, 1.2), colour="#7b2d26", rad=0.25)
    return fig, symbols
