"""The MLP (course: MultiLayerNet / MultiLayerNetExtend), default 784-100-100-10 with ReLU."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference_numpy.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid
from reference_numpy.network import Network
from rosetta.configs import activation_store
from rosetta.weights import MLPConfig

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


# [rosetta:mlp]
class MLP(Network):
    """``fc1, [bn1], act1, [drop1], fc2, [bn2], act2, [drop2], fc3, [out_act]``; input ``(N, 784)``.

    Starts from ``init_params(config, seed=0, scheme="he")`` unless ``params`` (canonical) is given.
    ``dropout_seed`` seeds the random dropout masks.
    """

    def __init__(
        self, config: MLPConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str | type = "float32", *, dropout_seed: int | None = None,
    ) -> None:
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLP needs an MLPConfig, got {type(config).__name__}")
        super().__init__(config, dtype)
        sizes = config.sizes
        n_affine = len(sizes) - 1
        for i in range(1, n_affine + 1):
            W = self.params[f"fc{i}.W"] = self._zeros((sizes[i - 1], sizes[i]))  # (in, out)
            b = self.params[f"fc{i}.b"] = self._zeros((sizes[i],))
            self._add(f"fc{i}", Affine(W, b))
            if i == n_affine:
                break  # the last affine layer feeds the loss
            if config.use_batchnorm:
                gamma = self.params[f"bn{i}.gamma"] = self._zeros((sizes[i],))
                beta = self.params[f"bn{i}.beta"] = self._zeros((sizes[i],))
                self._add(f"bn{i}", BatchNormalization(
                    gamma, beta, config.bn_momentum, config.bn_eps,
                    running_mean=self._zeros((sizes[i],)), running_var=self._zeros((sizes[i],))))
            self._add(f"act{i}", ACTIVATIONS[config.activation]())
            if config.dropout_ratio > 0:
                seed = None if dropout_seed is None else dropout_seed + i
                self._add(f"drop{i}", Dropout(config.dropout_ratio, config.dropout_mode, seed))
        if config.output_activation != "identity":
            self._add("out_act", ACTIVATIONS[config.output_activation]())  # before the softmax
        self._init_or_load(params)

    def forward(
        self, x: np.ndarray, train: bool = False, return_activations: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits (N, K), or ``(logits, activations)`` with every layer's output by name."""
        x = self._check_input(x, self.config.input_shape)  # (N, 784)
        a: dict[str, np.ndarray] = activation_store(return_activations)
        # One layer per iteration, in forward order (the course's OrderedDict loop).
        for name, layer in self.layers.items():
            if isinstance(layer, BatchNormalization | Dropout):
                x = a[name] = layer.forward(x, train)  # batch statistics / mask in training
            else:
                x = a[name] = layer.forward(x)  # (N, size of the layer)
        return (x, a) if return_activations else x
# [/rosetta:mlp]
