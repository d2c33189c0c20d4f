"""Plots (matplotlib, Agg backend: no display needed): the parity heatmap and learning curves.

The heatmap answers "how close to its bound is each comparison, and did it pass?": each cell is
the worst error / tolerance of one quantity of one layer (1 is the bound), one panel per model,
rows framework x dtype, failures marked. The argmax agreement after the trajectories, a share and
not an error, is drawn in its own panel. The learning curves show the training loss per iteration
(smoothed) and the test accuracy per epoch, one line style and colour per implementation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rosetta.weights import atomic_write_bytes

# One colour, line style and marker per implementation, so that lines lying on top of each other
# stay distinguishable (the four frameworks often agree to the pixel).
STYLES = {
    "numpy": ("#1f77b4", "-", "o"),
    "torch": ("#d62728", "--", "s"),
    "tf": ("#ff7f0e", "-.", "^"),
    "chainer": ("#2ca02c", ":", "D"),
}
AGREEMENT_PREFIX = "argmax disagreement"


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


def _layer(tensor: str) -> str:
    """The layer a record's tensor belongs to: 'adam step 3: fc1.W' -> 'fc1', 'x' -> 'input'."""
    name = tensor.split(": ")[-1].replace(" (missing)", "")
    if name in ("x", "loss", "loss (train)", "train loss"):
        return "input" if name == "x" else "loss"
    return name.split(".")[0]


def heatmap_cells(records: Iterable) -> dict[str, dict[tuple[str, str], tuple[float, bool]]]:  # noqa: ANN001
    """model -> {(row, column): (worst err / tol, all passed)}; row "case framework dtype",
    column "quantity layer". Agreement records are left out (see :func:`agreement_cells`)."""
    panels: dict[str, dict[tuple[str, str], tuple[float, bool]]] = {}
    for r in records:
        if AGREEMENT_PREFIX in r.tensor:
            continue
        model, _, case = r.model.partition(":")
        cells = panels.setdefault(model, {})
        key = (f"{case or 'default'} {r.framework} {r.dtype}", f"{r.quantity} {_layer(r.tensor)}")
        ratio = r.max_rel_err / r.tol if r.tol else math.inf
        old = cells.get(key, (0.0, True))
        cells[key] = (max(old[0], ratio), old[1] and r.passed)
    return panels


def agreement_cells(records: Iterable) -> dict[tuple[str, str], float]:  # noqa: ANN001
    """(model, "framework dtype optimizer") -> share of identical argmax predictions."""
    out = {}
    for r in records:
        if AGREEMENT_PREFIX in r.tensor:
            optimizer = r.tensor.split(" ")[0]
            out[(r.model, f"{r.framework} {r.dtype} {optimizer}")] = 1.0 - r.max_rel_err
    return out


def parity_heatmap(records: Iterable, path: str | os.PathLike[str]) -> None:  # noqa: ANN001
    """log10(error / tolerance) per quantity and layer: one panel per model, failures marked x."""
    records = list(records)
    plt = _pyplot()
    panels = heatmap_cells(records)
    agreement = agreement_cells(records)
    models = list(panels)
    n_panels = len(models) + (1 if agreement else 0)
    widths = [max(4.0, 0.32 * len({c for _, c in panels[m]})) for m in models] + ([3.5] if agreement else [])
    height = max(4.0, 0.16 * max(len({k[0] for k in panels[m]}) for m in models)) if models else 4.0
    fig, axes = plt.subplots(1, n_panels, figsize=(sum(widths) + 1.5, height),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    image = None
    for ax, model in zip(axes[0], models, strict=False):
        cells = panels[model]
        rows = sorted({k[0] for k in cells}, key=lambda r: (r.split(" ")[0] != "default", r))
        cols = sorted({k[1] for k in cells}, key=lambda c: (c.split(" ")[0], c))
        grid = np.full((len(rows), len(cols)), np.nan)
        for (row, col), (ratio, _) in cells.items():
            grid[rows.index(row), cols.index(col)] = np.log10(max(ratio, 1e-6))
        image = ax.imshow(grid, aspect="auto", cmap="RdYlGn_r", vmin=-6, vmax=2)
        for (row, col), (_, passed) in cells.items():
            if not passed:
                ax.text(cols.index(col), rows.index(row), "x", ha="center", va="center", fontsize=9,
                        fontweight="bold", color="black")
        ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"{model}", fontsize=10)
    if agreement:
        ax = axes[0][-1]
        keys = sorted(agreement)
        values = [agreement[k] * 100 for k in keys]
        ax.barh(range(len(keys)), values, color="#4c72b0")
        ax.set_yticks(range(len(keys)), [f"{m} {k}" for m, k in keys], fontsize=7)
        ax.yaxis.tick_right()
        ax.set_xlim(min(99.0, min(values) - 0.1), 100.0)
        ax.axvline(99.9, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel("identical argmax on 10k test images (%)\n(dashed: the 99.9% bound)", fontsize=8)
        ax.set_title("trajectory agreement", fontsize=10)
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[0][:len(models)]), fraction=0.02, pad=0.01)
        bar.set_label("log10(error / tolerance): 0 is the bound, below passes", fontsize=8)
    fig.suptitle("parity vs reference_numpy: worst error per quantity and layer, relative to its "
                 "tolerance (x: failed; blank: not compared in that case)", fontsize=10)
    _save(fig, path)
    plt.close(fig)


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Moving average over ``window`` values (shorter at the start), same length as ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(v) == 0:
        return v
    cumsum = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def learning_curves(history: Mapping[str, Sequence[Mapping[str, object]]], path: str | os.PathLike[str],
                    ) -> None:
    """Training loss per iteration (smoothed; per epoch when no step losses were recorded) and test
    accuracy per epoch, one style per implementation; integer epoch ticks for any epoch count."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, epochs in history.items():
        color, style, marker = STYLES.get(name, ("#555555", "-", "o"))
        steps = [float(x) for e in epochs for x in e.get("step_losses", [])]  # type: ignore[union-attr]
        if steps:
            per_epoch = len(steps) / max(len(epochs), 1)
            x = np.arange(1, len(steps) + 1) / per_epoch
            window = max(1, int(per_epoch // 20))
            ax_loss.plot(x, smooth(steps, window), color=color, linestyle=style, linewidth=1.3,
                         label=f"{name} (mean of {window} steps)")
        else:
            ax_loss.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], color=color,
                         linestyle=style, marker=marker, label=name)
        ax_acc.plot([e["epoch"] for e in epochs], [100 * float(e["test_acc"]) for e in epochs],  # type: ignore[arg-type]
                    color=color, linestyle=style, marker=marker, markersize=5, label=name)
    n_epochs = max((len(e) for e in history.values()), default=1)
    ticks = np.arange(0, n_epochs + 1, max(1, n_epochs // 10))
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.set_xticks(ticks if ax is ax_loss else ticks[ticks >= 1] if n_epochs > 1 else [1])
        ax.set_xlim(0 if ax is ax_loss else 0.8, n_epochs + (0 if ax is ax_loss else 0.2))
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    ax_loss.set_title("training loss per iteration")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("test accuracy per epoch")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
