"""The privacy-utility picture: end-to-end epsilon (x) against student accuracy (y), routes and published anchors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pate_lightning.compare.anchors import ANCHORS
from pate_lightning.io import atomic_path


def draw(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Routes as points with their spread (filled: end to end; open: label-only epsilon, the images not covered),
    public-only students as dotted lines, the anchors as labelled grey points; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 6))
    for index, row in enumerate(rows):
        if row["student_accuracy_mean"] is None:
            continue
        color = f"C{index % 10}"
        end_to_end = row["epsilon_end_to_end"] is not None
        x = row["epsilon_end_to_end"] if end_to_end else row["epsilon_labels"]
        if x is None:
            continue
        label = row["name"] + ("" if end_to_end else " (label-only ε: images not covered)")
        axes.errorbar([x], [100 * row["student_accuracy_mean"]], yerr=[100 * (row["student_accuracy_std"] or 0)],
                      fmt="o", color=color, capsize=4, markerfacecolor=color if end_to_end else "none", label=label)
        if row["public_only_accuracy"] is not None:
            axes.axhline(100 * row["public_only_accuracy"], color=color, linestyle=":", linewidth=1)
    for anchor in ANCHORS:
        axes.plot([anchor["epsilon"]], [100 * anchor["accuracy"]], marker="x", color="0.4")
        axes.annotate(f"{anchor['name']} {anchor['year']}", (anchor["epsilon"], 100 * anchor["accuracy"]),
                      textcoords="offset points", xytext=(4, 3), fontsize=7, color="0.3")
    axes.set_xscale("log")
    axes.set_xlabel("ε (δ = 1e-5): end to end; open markers: labels only")
    axes.set_ylabel("student accuracy on MNIST test (%)")
    axes.set_title("Privacy and utility by route (dotted: each route's public-only student; x: published)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return path
