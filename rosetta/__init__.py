"""mnist-rosetta: the harness and the contract around the four implementations.

The contract (the only modules ``reference_numpy``, ``torch_impl``, ``tf_impl`` and
``chainer_impl`` may import): :mod:`rosetta.configs` (the model table and hyper-parameters),
:mod:`rosetta.weights` (the weight format), :mod:`rosetta.data` (MNIST) and
:mod:`rosetta.tolerances`. Everything else is the harness: :mod:`rosetta.registry` (the framework
table), the adapters, parity, training, the CLI and its commands, convert, bench, plots and the page.
``parity_tests/test_layout.py`` enforces the rule and the absence of import cycles.

``rosetta.check`` (check your own port) is imported on first use, so ``import rosetta`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

CONTRACT = ("rosetta.configs", "rosetta.weights", "rosetta.data", "rosetta.tolerances")


def __getattr__(name: str) -> Any:
    if name == "check":
        return importlib.import_module("rosetta.check")
    raise AttributeError(f"module 'rosetta' has no attribute {name!r}")
