"""The MLP (course: MultiLayerNet / MultiLayerNetExtend), default 784-100-100-10 with ReLU."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference_numpy.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid
from reference_numpy.network import Network
from rosetta.weights import MLPConfig

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


# [rosetta:mlp]
class MLP(Network):
    """``fc1, [bn1], act1, [drop1], fc2, [bn2], act2, [drop2], fc3`` (one block per hidden size).

    Starts from ``init_params(config, seed=0, scheme="he")`` unless ``params`` (canonical) is given.
    ``dropout_mode``: "inverted" (contract) or "course"; ``dropout_seed`` seeds the random masks.
    """

    def __init__(
        self, config: MLPConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str | type = "float32", *, weight_decay_l1: float = 0.0,
        dropout_mode: str = "inverted", dropout_seed: int | None = None,
    ) -> None:
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLP needs an MLPConfig, got {type(config).__name__}")
        super().__init__(config, dtype, weight_decay_l1)
        sizes = [config.input_size, *config.hidden_sizes, config.output_size]
        n_affine = len(sizes) - 1
        for i in range(1, n_affine + 1):
            W = self.params[f"fc{i}.W"] = self._zeros((sizes[i - 1], sizes[i]))  # (in, out)
            b = self.params[f"fc{i}.b"] = self._zeros((sizes[i],))
            self._add(f"fc{i}", Affine(W, b))
            if i == n_affine:
                break  # the last affine layer outputs the logits
            if config.use_batchnorm:
                gamma = self.params[f"bn{i}.gamma"] = self._zeros((sizes[i],))
                beta = self.params[f"bn{i}.beta"] = self._zeros((sizes[i],))
                self._add(f"bn{i}", BatchNormalization(
                    gamma, beta, config.bn_momentum, config.bn_eps,
                    running_mean=self._zeros((sizes[i],)), running_var=self._zeros((sizes[i],))))
            self._add(f"act{i}", ACTIVATIONS[config.activation]())
            if config.dropout_ratio > 0:
                seed = None if dropout_seed is None else dropout_seed + i
                self._add(f"drop{i}", Dropout(config.dropout_ratio, dropout_mode, seed))
        self._init_or_load(params)

    def forward(
        self, x: np.ndarray, train: bool = False, return_activations: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits (N, K), or ``(logits, activations)`` with every layer's output by name."""
        h = self._check_input(x, (self.config.input_size,))  # (N, 784)
        acts: dict[str, np.ndarray] = {}
        for name, layer in self.layers.items():
            if isinstance(layer, BatchNormalization | Dropout):
                h = layer.forward(h, train)  # train: batch statistics / random (or fixed) mask
            else:
                h = layer.forward(h)  # fc: (N, out); act: same shape
            acts[name] = h
        return (h, acts) if return_activations else h
# [/rosetta:mlp]
