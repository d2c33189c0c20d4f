"""The reference package marks each side-by-side region exactly once (docs/conventions.md)."""

from __future__ import annotations

from pathlib import Path

import reference_numpy

REGIONS = ("dense", "conv", "pool", "loss", "opt-sgd", "opt-momentum", "opt-adagrad", "opt-rmsprop",
           "opt-adam", "mlp", "cnn", "deepcnn", "train-step", "weight-loading")


def test_each_region_marked_once() -> None:
    package = Path(reference_numpy.__file__).parent
    lines = [line.strip() for f in sorted(package.glob("*.py")) for line in f.read_text().splitlines()]
    for region in REGIONS:
        assert lines.count(f"# [rosetta:{region}]") == 1, region
        assert lines.count(f"# [/rosetta:{region}]") == 1, region


def test_reference_imports_no_framework() -> None:
    package = Path(reference_numpy.__file__).parent
    for f in package.glob("*.py"):
        text = f.read_text()
        for framework in ("torch", "tensorflow", "chainer", "keras"):
            assert f"import {framework}" not in text and f"from {framework}" not in text, (f.name, framework)
