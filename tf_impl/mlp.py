"""The MLP (course: MultiLayerNet) as a Keras model: fc1, [bn1], act1, [drop1], fc2, ..., fc3."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from rosetta.weights import MLPConfig, init_params
from tf_impl.layers import BatchNorm, Dropout, softmax_cross_entropy
from tf_impl.weights import load_canonical


# [rosetta:mlp]
class MLP(keras.Model):
    """784-100-100-10 by default; ReLU or sigmoid; optional BatchNorm and Dropout per hidden layer."""

    def __init__(
        self, config: MLPConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        # NOTE(framework): init-defaults: Keras's glorot_uniform kernels are overwritten by
        # rosetta.weights.init_params (He by default).
        # NOTE(framework): Keras layers compute in float32 unless each is given its dtype; the
        # dtype goes to every layer here (never a global keras.config.set_floatx).
        super().__init__(name="mlp", dtype=dtype)
        self.config = config if config is not None else MLPConfig()
        if not isinstance(self.config, MLPConfig):
            raise TypeError(f"MLP needs a MLPConfig, got {type(self.config).__name__}")
        c = self.config
        sizes = [c.input_size, *c.hidden_sizes, c.output_size]
        self.layer_names: list[str] = []
        for i in range(1, len(sizes)):
            # [rosetta:dense]
            # y = x @ W + b, W (in, out): Keras' kernel layout is the canonical one.
            self._add(f"fc{i}", keras.layers.Dense(sizes[i], dtype=dtype, name=f"fc{i}"))
            # [/rosetta:dense]
            if i == len(sizes) - 1:
                break
            if c.use_batchnorm:
                self._add(f"bn{i}", BatchNorm(c.bn_momentum, c.bn_eps, dtype=dtype, name=f"bn{i}"))
            self._add(f"act{i}", keras.layers.Activation(c.activation, dtype=dtype, name=f"act{i}"))
            if c.dropout_ratio > 0:
                self._add(f"drop{i}", Dropout(c.dropout_ratio, dtype=dtype, name=f"drop{i}"))
        self.last_layer = softmax_cross_entropy
        # NOTE(framework): Keras creates variables on the first call; build now so that the
        # weights can be loaded and model.save_weights / load_weights work at once.
        self(tf.zeros((1, c.input_size), dtype=dtype), training=False)
        load_canonical(self, params if params is not None else init_params(c, seed=0, dtype=dtype))

    def _add(self, name: str, layer: keras.layers.Layer) -> None:
        setattr(self, name, layer)
        self.layer_names.append(name)

    def weight_matrices(self) -> list[keras.Variable]:
        """Every affine ``W`` (the L2 penalty's terms), in forward order."""
        return [getattr(self, n).kernel for n in self.layer_names if n.startswith("fc")]

    def forward(
        self, x: tf.Tensor, train: bool = False, return_activations: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        activations: dict[str, tf.Tensor] = {}
        # fc1, [bn1], act1, [drop1], fc2, [bn2], act2, [drop2], fc3 (the course's OrderedDict loop)
        for name in self.layer_names:
            # NOTE(framework): keras-training-flag: a Keras layer called without `training` runs
            # in inference mode;
            # Keras hands the flag only to layers whose call takes it (BatchNorm, Dropout).
            x = activations[name] = getattr(self, name)(x, training=train)  # (N, units of the layer)
        return (x, activations) if return_activations else x

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.forward(x, train=bool(training))
# [/rosetta:mlp]
