"""The MLP (course: MultiLayerNet) as a Keras model: fc1, [bn1], act1, [drop1], fc2, ..., fc3."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from rosetta.configs import activation_store
from rosetta.weights import MLPConfig, init_params
from tf_impl.layers import BatchNorm, Dropout, softmax_cross_entropy
from tf_impl.weights import load_canonical


# [rosetta:mlp]
class MLP(keras.Model):
    """``fc1, [bn1], act1, [drop1], fc2, [bn2], act2, [drop2], fc3, [out_act]``; input ``(N, 784)``."""

    def __init__(
        self, config: MLPConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        # NOTE(framework:keras-dtype): Keras layers compute in float32 unless each is given its
        # dtype; the dtype goes to every layer here (never a global keras.config.set_floatx).
        super().__init__(name="mlp", dtype=dtype)
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLP needs an MLPConfig, got {type(config).__name__}")
        self.config = config
        # NOTE(framework:init-defaults): Keras's glorot_uniform kernels are overwritten by
        # rosetta.weights.init_params (He by default).
        sizes = config.sizes
        n_affine = len(sizes) - 1
        self.layer_names: list[str] = []
        for i in range(1, n_affine + 1):
            # [rosetta:dense]
            # y = x @ W + b, W (in, out): Keras' kernel layout is the canonical one.
            self._add(f"fc{i}", keras.layers.Dense(sizes[i], dtype=dtype, name=f"fc{i}"))
            # [/rosetta:dense]
            if i == n_affine:
                break  # the last affine layer feeds the loss
            if config.use_batchnorm:
                self._add(f"bn{i}", BatchNorm(config.bn_momentum, config.bn_eps, dtype=dtype, name=f"bn{i}"))
            # [rosetta:activations]
            # "relu" / "sigmoid" by name: keras.activations; the gradient of relu at 0 is 0.
            self._add(f"act{i}", keras.layers.Activation(config.activation, dtype=dtype, name=f"act{i}"))
            # [/rosetta:activations]
            if config.dropout_ratio > 0:
                self._add(f"drop{i}", Dropout(config.dropout_ratio, config.dropout_mode, dtype=dtype,
                                              name=f"drop{i}"))
        if config.output_activation != "identity":  # before the softmax
            self._add("out_act", keras.layers.Activation(config.output_activation, dtype=dtype,
                                                         name="out_act"))
        # Softmax with cross-entropy on the logits, mean over the batch (see train.loss_fn).
        self.last_layer = softmax_cross_entropy
        # NOTE(framework:keras-build): Keras creates variables on the first call; build now so
        # that the weights can be loaded and model.save_weights / load_weights work at once.
        self(tf.zeros((1, config.input_size), dtype=dtype), training=False)
        load_canonical(self, params if params is not None else
                       init_params(config, seed=0, scheme="he", dtype=dtype))

    def _add(self, name: str, layer: keras.layers.Layer) -> None:
        setattr(self, name, layer)
        self.layer_names.append(name)

    def forward(
        self, x: tf.Tensor, train: bool = False, return_activations: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Logits (N, K), or ``(logits, activations)`` with every layer's output by name."""
        # NOTE(framework:keras-training-flag): a Keras layer called without ``training`` runs in
        # inference mode; Keras hands the flag only to layers whose call takes it.
        a: dict[str, tf.Tensor] = activation_store(return_activations)
        # One layer per iteration, in forward order (the course's OrderedDict loop).
        for name in self.layer_names:
            x = a[name] = getattr(self, name)(x, training=train)  # (N, size of the layer)
        return (x, a) if return_activations else x

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.forward(x, train=bool(training))
# [/rosetta:mlp]
