"""Figures written as PNG with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from emotk.fileio import atomic_path


def plot_confusion(labels: Sequence[str], matrix, path: str | Path, title: str = "") -> Path:
    """Confusion matrix: colour = row-normalized % (recall on the diagonal), text = count and %."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = np.asarray(matrix, dtype=np.float64)
    rows = c.sum(axis=1, keepdims=True)
    pct = np.divide(100 * c, rows, out=np.zeros_like(c), where=rows > 0)
    k = len(labels)
    size = 1.2 + 0.75 * k
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label="% of reference class")
    ax.set_xticks(range(k), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(c[i, j])}\n{pct[i, j]:.0f}%", ha="center", va="center", fontsize=8,
                    color="white" if pct[i, j] > 60 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path
