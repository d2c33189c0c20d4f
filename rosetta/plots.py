"""Plots (matplotlib, Agg backend: no display needed): parity heatmap and learning curves."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rosetta.weights import atomic_write_bytes


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str]) -> None:  # noqa: ANN001
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def parity_heatmap(records: Iterable, path: str | os.PathLike[str]) -> None:  # noqa: ANN001
    """log10 of the worst relative error, rows framework (x model, dtype), columns tensor."""
    plt = _pyplot()
    cells: dict[tuple[str, str], float] = {}
    for r in records:
        row = f"{r.framework} {r.model} {r.dtype}"
        col = f"{r.quantity}: {r.tensor.split(': ')[-1]}"
        err = max(r.max_rel_err, 1e-17)
        cells[(row, col)] = max(cells.get((row, col), 0.0), err)
    rows = sorted({k[0] for k in cells})
    cols = sorted({k[1] for k in cells})
    grid = np.full((len(rows), len(cols)), np.nan)
    for (row, col), err in cells.items():
        grid[rows.index(row), cols.index(col)] = np.log10(err)
    fig, ax = plt.subplots(figsize=(max(8, 0.28 * len(cols)), max(3, 0.4 * len(rows))))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=-17, vmax=-3)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title("parity: log10 relative error vs reference_numpy (worst per tensor)")
    fig.colorbar(image, ax=ax, label="log10 rel err")
    _save(fig, path)
    plt.close(fig)


def learning_curves(history: Mapping[str, Sequence[Mapping[str, float]]], path: str | os.PathLike[str],
                    metrics: Sequence[str] = ("train_loss", "test_acc")) -> None:
    """One panel per metric, one line per implementation (x: epoch)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        for name, epochs in history.items():
            ax.plot([e["epoch"] for e in epochs], [e[metric] for e in epochs], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
