"""The deep CNN (course: DeepConvNet) as a Keras model: six 3x3 convs in pairs, each pair followed
by a 2x2 max-pool, then fc1, relu7, [drop1], fc2, [drop2]. Native input is NHWC ``(N, 28, 28, 1)``."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from rosetta.configs import activation_store
from rosetta.weights import DeepCNNConfig, init_params
from tf_impl.layers import Dropout, softmax_cross_entropy
from tf_impl.weights import load_canonical


# [rosetta:deepcnn]
class DeepCNN(keras.Model):
    """conv 16, 16, pool, conv 32, 32 (pad 2), pool, conv 64, 64, pool -> affine 50 -> ReLU ->
    dropout -> affine 10 -> dropout (by default)."""

    def __init__(
        self, config: DeepCNNConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        # NOTE(framework:keras-dtype): Keras layers compute in float32 unless each is given its dtype; the
        # dtype goes to every layer here (never a global keras.config.set_floatx).
        super().__init__(name="deepcnn", dtype=dtype)
        self.config = config if config is not None else DeepCNNConfig()
        if not isinstance(self.config, DeepCNNConfig):
            raise TypeError(f"DeepCNN needs a DeepCNNConfig, got {type(self.config).__name__}")
        c = self.config
        for i, (fn, k, _, stride) in enumerate(c.conv_params, 1):
            # Cross-correlation, kernel HWIO (canonical OIHW is transposed at load time).
            # NOTE(framework:same-padding): Keras has only padding="valid"/"same"; each conv's pad
            # is applied explicitly in forward, so the layer itself never pads.
            setattr(self, f"conv{i}", keras.layers.Conv2D(fn, k, strides=stride, padding="valid",
                                                          dtype=dtype, name=f"conv{i}"))
            setattr(self, f"relu{i}", keras.layers.ReLU(dtype=dtype, name=f"relu{i}"))
            if i % 2 == 0:
                # 2x2 max-pool, stride 2, no padding, floor.
                setattr(self, f"pool{i // 2}", keras.layers.MaxPooling2D(
                    pool_size=2, strides=2, padding="valid", dtype=dtype, name=f"pool{i // 2}"))
        self.flatten = keras.layers.Flatten(dtype=dtype, name="flatten")
        self.fc1 = keras.layers.Dense(c.hidden_size, dtype=dtype, name="fc1")
        self.relu7 = keras.layers.ReLU(dtype=dtype, name="relu7")
        if c.dropout_ratio > 0:
            # NOTE(framework:dropout-scaling): keras.layers.Dropout is inverted only; the port's
            # Dropout also computes the course's form (config.dropout_mode).
            self.drop1 = Dropout(c.dropout_ratio, c.dropout_mode, dtype=dtype, name="drop1")
        self.fc2 = keras.layers.Dense(c.output_size, dtype=dtype, name="fc2")
        if c.dropout_ratio > 0:
            self.drop2 = Dropout(c.dropout_ratio, c.dropout_mode, dtype=dtype, name="drop2")
        self.last_layer = softmax_cross_entropy
        # The layer names in forward order (the Dropout layers among them are found by name).
        self.layer_names: list[str] = c.layer_names()
        # NOTE(framework:keras-build): Keras creates variables on the first call; build now so that the
        # weights can be loaded and model.save_weights / load_weights work at once.
        ch, h, w = c.input_dim
        self(tf.zeros((1, h, w, ch), dtype=dtype), training=False)
        load_canonical(self, params if params is not None else init_params(c, seed=0, dtype=dtype))

    def _pad(self, x: tf.Tensor, i: int) -> tf.Tensor:
        """Zero padding of conv ``i`` on both spatial sides (NHWC), as the course's pad."""
        p = self.config.conv_params[i - 1][2]
        return ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p > 0 else x

    def forward(
        self, x: tf.Tensor, train: bool = False, return_activations: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        a: dict[str, tf.Tensor] = activation_store(return_activations)
        # NOTE(framework:conv-layout): NHWC, TF's CPU conv layout; the shapes are (N, H, W, C).
        x = self._pad(x, 1)  # (N, 30, 30, 1)
        x = a["conv1"] = self.conv1(x)  # (N, 28, 28, 16)
        x = a["relu1"] = self.relu1(x)  # (N, 28, 28, 16)
        x = self._pad(x, 2)  # (N, 30, 30, 16)
        x = a["conv2"] = self.conv2(x)  # (N, 28, 28, 16)
        x = a["relu2"] = self.relu2(x)  # (N, 28, 28, 16)
        x = a["pool1"] = self.pool1(x)  # (N, 14, 14, 16)
        x = self._pad(x, 3)  # (N, 16, 16, 16)
        x = a["conv3"] = self.conv3(x)  # (N, 14, 14, 32)
        x = a["relu3"] = self.relu3(x)  # (N, 14, 14, 32)
        x = self._pad(x, 4)  # (N, 18, 18, 32), pad 2
        x = a["conv4"] = self.conv4(x)  # (N, 16, 16, 32)
        x = a["relu4"] = self.relu4(x)  # (N, 16, 16, 32)
        x = a["pool2"] = self.pool2(x)  # (N, 8, 8, 32)
        x = self._pad(x, 5)  # (N, 10, 10, 32)
        x = a["conv5"] = self.conv5(x)  # (N, 8, 8, 64)
        x = a["relu5"] = self.relu5(x)  # (N, 8, 8, 64)
        x = self._pad(x, 6)  # (N, 10, 10, 64)
        x = a["conv6"] = self.conv6(x)  # (N, 8, 8, 64)
        x = a["relu6"] = self.relu6(x)  # (N, 8, 8, 64)
        x = a["pool3"] = self.pool3(x)  # (N, 4, 4, 64)
        # NOTE(framework:flatten-order): back to NCHW before flatten so fc1.W keeps the canonical
        # (C, H, W) rows.
        x = ops.transpose(x, (0, 3, 1, 2))  # (N, 64, 4, 4)
        x = a["flatten"] = self.flatten(x)  # (N, 1024) in (C, H, W) order
        x = a["fc1"] = self.fc1(x)  # (N, 50)
        x = a["relu7"] = self.relu7(x)  # (N, 50)
        if self.config.dropout_ratio > 0:
            # NOTE(framework:keras-training-flag): without training=True a Keras layer runs in
            # inference mode; the port's Dropout takes the flag explicitly.
            x = a["drop1"] = self.drop1(x, training=train)  # (N, 50)
        x = a["fc2"] = self.fc2(x)  # (N, 10)
        if self.config.dropout_ratio > 0:
            x = a["drop2"] = self.drop2(x, training=train)  # (N, 10), dropout on the logits (the book's)
        return (x, a) if return_activations else x

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.forward(x, train=bool(training))
# [/rosetta:deepcnn]
