"""The Chainer port behind the canonical :class:`Adapter` interface.

Canonical and Chainer layouts agree for inputs (MLP (N, 784), CNNs NCHW) and activations, so the
only conversions are the weights (chainer_impl.weights) and explicit dtype casts of the inputs.
"""

from __future__ import annotations

import numpy as np

from chainer_impl.compat import import_chainer
from rosetta.adapters.base import Adapter

chainer = import_chainer()


class ChainerAdapter(Adapter):
    framework = "chainer"

    def _output(self, a: chainer.Variable | np.ndarray) -> np.ndarray:
        # Copies: flatten is a view of the pool output and eval-mode dropout returns its input.
        return np.array(a.array if isinstance(a, chainer.Variable) else a)

    def _activations(self, x: np.ndarray, train: bool) -> dict[str, chainer.Variable]:
        with chainer.no_backprop_mode():
            return self.model.forward(x, train=train, return_activations=True)[1]

    def _logits(self, x: np.ndarray) -> chainer.Variable:
        with chainer.no_backprop_mode():
            return self.model.forward(x, train=False)
