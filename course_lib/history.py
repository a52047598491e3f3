"""The history of ImageNet classification as the lectures tell it, from small data files with sources.

* ``history_data/ilsvrc.csv`` — the winner of every ILSVRC classification task 2010–2017: team,
  network, top-5 test error and depth (layers with weights; empty for the shallow 2010–2011
  entries and the 2016 ensemble), each row with its source. Human top-5 error: 5.1 %
  (:data:`HUMAN_TOP5_ERROR`, Russakovsky et al. 2015, section 6.4).
* ``history_data/accuracy.csv`` — the papers' ImageNet errors (and parameter counts) of the
  networks chapter 3 counts, with the evaluation protocol each paper used.

The charts put the book's *own* counts (``course_lib.counting`` on the ``course_lib`` models) next to
the papers' accuracies: Canziani, Paszke & Culurciello (2016) drew accuracy against operations in
the same way.
"""
from __future__ import annotations

import csv
from importlib import resources

import matplotlib.pyplot as plt

LABEL_BELOW = ("GoogLeNet",)  # its label would sit on MobileNet v1's point
HUMAN_TOP5_ERROR = 5.1  # % top-5, annotator A1 of Russakovsky et al. (2015), IJCV 115, section 6.4


def _read(name: str) -> list[dict]:
    """Rows of a packaged CSV; numeric columns become floats (``None`` where empty)."""
    text = resources.files("course_lib").joinpath("history_data", name).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    for row in rows:
        for key, value in row.items():
            if key.endswith(("_percent", "_millions")) or key in ("year", "depth"):
                row[key] = None if value == "" else (int(value) if key in ("year", "depth") else float(value))
    return rows


def ilsvrc_winners() -> list[dict]:
    """ILSVRC classification results by year: ``year, winner, network, top5_error_percent, depth, source``."""
    return _read("ilsvrc.csv")


def published_accuracies() -> dict[str, dict]:
    """The papers' ImageNet errors by network: ``top1_error_percent, top5_error_percent,
    paper_params_millions, protocol, source``."""
    return {row["network"]: row for row in _read("accuracy.csv")}


def plot_ilsvrc(rows: list[dict] | None = None):
    """Top-5 error of the ILSVRC winners by year (bars, with depth on top) and the human baseline.

    Returns the figure. Rows of runners-up (``"2nd"`` in ``winner``) are drawn as hatched bars.
    """
    rows = rows or ilsvrc_winners()
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    labels = [f"{r['year']}\n{r['network'].split(',')[0].split(' ')[0]}" for r in rows]
    for x, row in enumerate(rows):
        second = "2nd" in row["winner"]
        ax.bar(x, row["top5_error_percent"], color="#a6cee3" if row["depth"] else "#dddddd",
               edgecolor="#444444", hatch="//" if second else None, lw=0.7)
        depth = f"{row['depth']} layers" if row["depth"] else ("shallow" if row["year"] < 2012 else "ensemble")
        ax.text(x, row["top5_error_percent"] + 0.5, f"{row['top5_error_percent']:g} %\n{depth}",
                ha="center", va="bottom", fontsize=7, bbox=dict(fc="white", ec="none", pad=0.3))
    ax.axhline(HUMAN_TOP5_ERROR, color="#c0392b", ls="--", lw=1, zorder=0,
               label=f"human (Russakovsky et al. 2015): {HUMAN_TOP5_ERROR} %")
    ax.legend(frameon=False, fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("top-5 error, %")
    ax.set_ylim(0, 34)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_cost(counts: dict[str, tuple[int, int]], accuracies: dict[str, dict] | None = None):
    """Top-1 accuracy (the papers') against mult-adds and against parameters (the book's counts).

    Args:
        counts: ``{network: (mult_adds, parameters)}`` as counted by ``course_lib.counting``.
        accuracies: :func:`published_accuracies` (default).

    Returns:
        ``(fig, points)``: ``points`` lists ``(network, mult_adds, parameters, top1_accuracy)`` drawn.
    """
    accuracies = accuracies or published_accuracies()
    points = [(name, cost, params, 100 - accuracies[name]["top1_error_percent"])
              for name, (cost, params) in counts.items() if name in accuracies]
    fig, axes = plt.subplots(1, 2, figsize=(7.4, 3.3), sharey=True)
    for ax, column, xlabel in [(axes[0], 1, "multiply-adds per image (counted), G"),
                               (axes[1], 2, "parameters (counted), M")]:
        for point in points:
            x = point[column] / (1e9 if column == 1 else 1e6)
            ax.scatter(x, point[3], s=28, color="#1f78b4", zorder=3)
            below = point[0] in LABEL_BELOW
            ax.annotate(point[0], (x, point[3]), xytext=(4, -9 if below else 2), textcoords="offset points",
                        fontsize=7)
        ax.set_xscale("log")
        ax.margins(x=0.2)  # room for the labels of the rightmost points
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("ImageNet top-1 accuracy (paper), %")
    fig.tight_layout()
    return fig, points
