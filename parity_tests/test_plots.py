"""The plots answer their question: error relative to the bound with pass/fail marks, one panel
per model, agreement apart; learning curves per iteration with sane axes for any epoch count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rosetta.parity import Record
from rosetta.plots import agreement_cells, heatmap_cells, learning_curves, parity_heatmap, smooth


def record(model: str, quantity: str, tensor: str, rel: float, tol: float = 1e-12) -> Record:
    return Record(model, "torch", "float64", quantity, tensor, rel, rel, tol, rel <= tol)


RECORDS = [
    record("mlp", "grad", "fc1.W", 1e-15), record("mlp", "grad", "fc1.b", 3e-12),
    record("mlp", "optimizer", "adam step 2: fc1.W", 1e-14),
    record("cnn", "activation", "conv1", 1e-16), record("cnn:odd", "activation", "conv1", 1e-16),
    Record("mlp", "torch", "float64", "trajectory", "sgd x100: argmax disagreement on 10k test",
           0.0002, 0.0002, 0.001, True),
]


def test_cells_are_error_over_tolerance_by_layer_with_failures_marked() -> None:
    panels = heatmap_cells(RECORDS)
    assert set(panels) == {"mlp", "cnn"}  # one panel per model, its cases as rows
    assert {row for row, _ in panels["cnn"]} == {"default torch float64", "odd torch float64"}
    ratio, passed = panels["mlp"][("default torch float64", "grad fc1")]  # fc1.W and fc1.b in one cell
    assert np.isclose(ratio, 3.0) and not passed
    assert panels["mlp"][("default torch float64", "optimizer fc1")][1]
    assert not any("argmax" in col for cells in panels.values() for _, col in cells)
    assert agreement_cells(RECORDS) == {("mlp", "torch float64 sgd"): 0.9998}


def test_heatmap_and_curves_are_written(tmp_path: Path) -> None:
    heat = tmp_path / "heat.png"
    parity_heatmap(RECORDS, heat)
    assert heat.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = {name: [{"epoch": 1, "train_loss": 0.3, "test_acc": 0.95,
                       "step_losses": list(np.linspace(2.3, 0.2, 60))}] for name in ("numpy", "torch")}
    curves = tmp_path / "curves.png"
    learning_curves(history, curves)
    assert curves.stat().st_size > 1000


def test_smoothing_keeps_length_and_mean() -> None:
    v = np.arange(10.0)
    s = smooth(v, 3)
    assert len(s) == 10 and s[0] == 0 and s[-1] == 8.0
    assert np.array_equal(smooth(v, 1), v)
