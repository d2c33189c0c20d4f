"""The deep CNN (course: DeepConvNet, the book's 99%+ network): six 3x3 convs in pairs, each pair
followed by a 2x2 max-pool, then affine 50 -> ReLU -> dropout -> affine 10 -> dropout, on NCHW
input (N, 1, 28, 28)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference_numpy.layers import Affine, Convolution, Dropout, Flatten, MaxPooling, Relu
from reference_numpy.network import Network
from rosetta.configs import activation_store
from rosetta.weights import DeepCNNConfig


# [rosetta:deepcnn]
class DeepCNN(Network):
    """``conv1, relu1, conv2, relu2, pool1, conv3, relu3, conv4, relu4, pool2, conv5, relu5, conv6,
    relu6, pool3, flatten, fc1, relu7, [drop1], fc2, [drop2]``; ``last_layer`` is softmax + CE.

    The conv settings are the config's ``conv_params`` (the course's conv_param_1..6); dropout
    follows ``config.dropout_mode`` ("inverted" or the course's); ``dropout_seed`` seeds the
    random masks.
    """

    def __init__(
        self, config: DeepCNNConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str | type = "float32", *, dropout_seed: int | None = None,
    ) -> None:
        config = DeepCNNConfig() if config is None else config
        if not isinstance(config, DeepCNNConfig):
            raise TypeError(f"DeepCNN needs a DeepCNNConfig, got {type(config).__name__}")
        super().__init__(config, dtype)
        c_in = config.input_dim[0]
        for i, (fn, k, pad, stride) in enumerate(config.conv_params, 1):
            W = self.params[f"conv{i}.W"] = self._zeros((fn, c_in, k, k))  # (FN, C, KH, KW)
            b = self.params[f"conv{i}.b"] = self._zeros((fn,))
            self._add(f"conv{i}", Convolution(W, b, stride, pad))
            self._add(f"relu{i}", Relu())
            if i % 2 == 0:
                self._add(f"pool{i // 2}", MaxPooling(pool_h=2, pool_w=2, stride=2))
            c_in = fn
        self._add("flatten", Flatten())
        W7 = self.params["fc1.W"] = self._zeros((config.pool_output_size, config.hidden_size))
        b7 = self.params["fc1.b"] = self._zeros((config.hidden_size,))
        self._add("fc1", Affine(W7, b7))
        self._add("relu7", Relu())
        if config.dropout_ratio > 0:
            seed = None if dropout_seed is None else dropout_seed + 1
            self._add("drop1", Dropout(config.dropout_ratio, config.dropout_mode, seed))
        W8 = self.params["fc2.W"] = self._zeros((config.hidden_size, config.output_size))
        b8 = self.params["fc2.b"] = self._zeros((config.output_size,))
        self._add("fc2", Affine(W8, b8))
        if config.dropout_ratio > 0:
            seed = None if dropout_seed is None else dropout_seed + 2
            self._add("drop2", Dropout(config.dropout_ratio, config.dropout_mode, seed))
        self._init_or_load(params)

    def forward(
        self, x: np.ndarray, train: bool = False, return_activations: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits (N, K), or ``(logits, activations)`` with every layer's output by name."""
        x = self._check_input(x, self.config.input_dim)  # (N, 1, 28, 28)
        a: dict[str, np.ndarray] = activation_store(return_activations)
        x = a["conv1"] = self.conv1.forward(x)  # (N, 16, 28, 28)
        x = a["relu1"] = self.relu1.forward(x)  # (N, 16, 28, 28)
        x = a["conv2"] = self.conv2.forward(x)  # (N, 16, 28, 28)
        x = a["relu2"] = self.relu2.forward(x)  # (N, 16, 28, 28)
        x = a["pool1"] = self.pool1.forward(x)  # (N, 16, 14, 14)
        x = a["conv3"] = self.conv3.forward(x)  # (N, 32, 14, 14)
        x = a["relu3"] = self.relu3.forward(x)  # (N, 32, 14, 14)
        x = a["conv4"] = self.conv4.forward(x)  # (N, 32, 16, 16), pad 2
        x = a["relu4"] = self.relu4.forward(x)  # (N, 32, 16, 16)
        x = a["pool2"] = self.pool2.forward(x)  # (N, 32, 8, 8)
        x = a["conv5"] = self.conv5.forward(x)  # (N, 64, 8, 8)
        x = a["relu5"] = self.relu5.forward(x)  # (N, 64, 8, 8)
        x = a["conv6"] = self.conv6.forward(x)  # (N, 64, 8, 8)
        x = a["relu6"] = self.relu6.forward(x)  # (N, 64, 8, 8)
        x = a["pool3"] = self.pool3.forward(x)  # (N, 64, 4, 4)
        x = a["flatten"] = self.flatten.forward(x)  # (N, 1024) in (C, H, W) order
        x = a["fc1"] = self.fc1.forward(x)  # (N, 50)
        x = a["relu7"] = self.relu7.forward(x)  # (N, 50)
        if self.config.dropout_ratio > 0:
            x = a["drop1"] = self.drop1.forward(x, train)  # (N, 50), random (or fixed) mask in train
        x = a["fc2"] = self.fc2.forward(x)  # (N, 10)
        if self.config.dropout_ratio > 0:
            x = a["drop2"] = self.drop2.forward(x, train)  # (N, 10), dropout on the logits (the book's)
        return (x, a) if return_activations else x
# [/rosetta:deepcnn]
