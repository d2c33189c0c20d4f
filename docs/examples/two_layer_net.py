"""A course TwoLayerNet (784-50-10), written as the course does: params W1..b2, an OrderedDict of
layers, lastLayer. The layers are the course's (reference_numpy.layers)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from reference_numpy.layers import Affine, Relu, SoftmaxWithLoss


class TwoLayerNet:
    def __init__(self, input_size: int = 784, hidden_size: int = 50, output_size: int = 10,
                 weight_init_std: float = 0.01) -> None:
        rng = np.random.default_rng(0)
        self.params = {
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()
