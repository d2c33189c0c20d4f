"""The CNN (course: SimpleConvNet): conv 30x5x5 -> ReLU -> max-pool 2x2 -> affine 100 -> ReLU ->
affine 10, on NCHW input (N, 1, 28, 28)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from reference_numpy.layers import Affine, BatchNormalization, Convolution, Flatten, MaxPooling, Relu
from reference_numpy.network import Network
from rosetta.configs import activation_store
from rosetta.weights import CNNConfig

CONV_PARAM_KEYS = ("filter_num", "filter_size", "pad", "stride")


def config_from_conv_param(
    conv_param: Mapping[str, int], base: CNNConfig | None = None, **hparams: object,
) -> CNNConfig:
    """The course's ``conv_param`` dict ({'filter_num': 30, 'filter_size': 5, 'pad': 0,
    'stride': 1}) as a CNNConfig; other fields from ``base`` and ``hparams`` (input_dim, ...)."""
    unknown = sorted(set(conv_param) - set(CONV_PARAM_KEYS))
    if unknown:
        raise ValueError(f"unknown conv_param key {unknown[0]!r}; allowed: {', '.join(CONV_PARAM_KEYS)}")
    base = CNNConfig() if base is None else base
    return dataclasses.replace(base, **{k: int(v) for k, v in conv_param.items()}, **hparams)


# [rosetta:cnn]
class CNN(Network):
    """``conv1, [bn1], relu1, pool1, flatten, fc1, relu2, fc2``; ``last_layer`` is softmax + CE.

    Build from a CNNConfig, or from the course's ``conv_param`` dict (applied over ``config``).
    ``route`` ("fast" or "course") picks how conv and pool compute; both give the same bits.
    """

    def __init__(
        self, config: CNNConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str | type = "float32", *, conv_param: Mapping[str, int] | None = None,
        route: str = "fast",
    ) -> None:
        config = CNNConfig() if config is None else config
        if not isinstance(config, CNNConfig):
            raise TypeError(f"CNN needs a CNNConfig, got {type(config).__name__}")
        if conv_param is not None:
            config = config_from_conv_param(conv_param, config)
        super().__init__(config, dtype)
        c_in = config.input_dim[0]
        fn, k = config.filter_num, config.filter_size
        W1 = self.params["conv1.W"] = self._zeros((fn, c_in, k, k))  # (FN, C, KH, KW)
        b1 = self.params["conv1.b"] = self._zeros((fn,))
        self._add("conv1", Convolution(W1, b1, config.stride, config.pad, route))
        if config.use_batchnorm:
            gamma = self.params["bn1.gamma"] = self._zeros((fn,))
            beta = self.params["bn1.beta"] = self._zeros((fn,))
            self._add("bn1", BatchNormalization(
                gamma, beta, config.bn_momentum, config.bn_eps,
                running_mean=self._zeros((fn,)), running_var=self._zeros((fn,))))
        self._add("relu1", Relu())
        self._add("pool1", MaxPooling(pool_h=2, pool_w=2, stride=2, route=route))
        self._add("flatten", Flatten())
        W2 = self.params["fc1.W"] = self._zeros((config.pool_output_size, config.hidden_size))
        b2 = self.params["fc1.b"] = self._zeros((config.hidden_size,))
        self._add("fc1", Affine(W2, b2))
        self._add("relu2", Relu())
        W3 = self.params["fc2.W"] = self._zeros((config.hidden_size, config.output_size))
        b3 = self.params["fc2.b"] = self._zeros((config.output_size,))
        self._add("fc2", Affine(W3, b3))
        self._init_or_load(params)

    def forward(
        self, x: np.ndarray, train: bool = False, return_activations: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits (N, K), or ``(logits, activations)`` with every layer's output by name."""
        x = self._check_input(x, self.config.input_shape)  # (N, 1, 28, 28)
        a: dict[str, np.ndarray] = activation_store(return_activations)
        x = a["conv1"] = self.conv1.forward(x)  # (N, 30, 24, 24)
        if self.config.use_batchnorm:
            x = a["bn1"] = self.bn1.forward(x, train)  # (N, 30, 24, 24), per channel over (N, H, W)
        x = a["relu1"] = self.relu1.forward(x)  # (N, 30, 24, 24)
        x = a["pool1"] = self.pool1.forward(x)  # (N, 30, 12, 12)
        x = a["flatten"] = self.flatten.forward(x)  # (N, 4320) in (C, H, W) order
        x = a["fc1"] = self.fc1.forward(x)  # (N, 100)
        x = a["relu2"] = self.relu2.forward(x)  # (N, 100)
        x = a["fc2"] = self.fc2.forward(x)  # (N, 10)
        return (x, a) if return_activations else x
# [/rosetta:cnn]
