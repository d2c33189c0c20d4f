"""The CNN (course: SimpleConvNet) as a Keras model: conv1, [bn1], relu1, pool1, flatten, fc1,
relu2, fc2. Native input is NHWC ``(N, 28, 28, 1)``."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from rosetta.configs import activation_store
from rosetta.weights import CNNConfig, init_params
from tf_impl.layers import BatchNorm, softmax_cross_entropy
from tf_impl.weights import load_canonical


# [rosetta:cnn]
class CNN(keras.Model):
    """conv 30x5x5 -> ReLU -> 2x2 max-pool -> affine 100 -> ReLU -> affine 10 (by default)."""

    def __init__(
        self, config: CNNConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        # NOTE(framework:keras-dtype): Keras layers compute in float32 unless each is given its dtype; the
        # dtype goes to every layer here (never a global keras.config.set_floatx).
        super().__init__(name="cnn", dtype=dtype)
        self.config = config if config is not None else CNNConfig()
        if not isinstance(self.config, CNNConfig):
            raise TypeError(f"CNN needs a CNNConfig, got {type(self.config).__name__}")
        c = self.config
        # [rosetta:conv]
        # Cross-correlation, kernel HWIO (canonical OIHW is transposed at load time).
        # NOTE(framework:same-padding): Keras has only padding="valid"/"same"; a config pad is applied
        # explicitly in forward, so the layer itself never pads.
        self.conv1 = keras.layers.Conv2D(c.filter_num, c.filter_size, strides=c.stride,
                                         padding="valid", dtype=dtype, name="conv1")
        # [/rosetta:conv]
        if c.use_batchnorm:
            self.bn1 = BatchNorm(c.bn_momentum, c.bn_eps, dtype=dtype, name="bn1")
        self.relu1 = keras.layers.ReLU(dtype=dtype, name="relu1")
        # [rosetta:pool]
        # 2x2 max-pool, stride 2, no padding, floor.
        self.pool1 = keras.layers.MaxPooling2D(pool_size=2, strides=2, padding="valid", dtype=dtype,
                                               name="pool1")
        # [/rosetta:pool]
        self.flatten = keras.layers.Flatten(dtype=dtype, name="flatten")
        self.fc1 = keras.layers.Dense(c.hidden_size, dtype=dtype, name="fc1")
        self.relu2 = keras.layers.ReLU(dtype=dtype, name="relu2")
        self.fc2 = keras.layers.Dense(c.output_size, dtype=dtype, name="fc2")
        self.last_layer = softmax_cross_entropy
        # NOTE(framework:keras-build): Keras creates variables on the first call; build now so that the
        # weights can be loaded and model.save_weights / load_weights work at once.
        ch, h, w = c.input_dim
        self(tf.zeros((1, h, w, ch), dtype=dtype), training=False)
        # [rosetta:init]
        # NOTE(framework:init-defaults): Keras's glorot_uniform kernels are overwritten by the
        # contract's He-normal weights (init_params' default scheme), identical in all four.
        load_canonical(self, params if params is not None else init_params(c, seed=0, dtype=dtype))
        # [/rosetta:init]

    def forward(
        self, x: tf.Tensor, train: bool = False, return_activations: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
        a: dict[str, tf.Tensor] = activation_store(return_activations)
        p = self.config.pad
        if p > 0:
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))  # (N, 28+2p, 28+2p, 1)
        # [rosetta:im2col]
        # No im2col in user code: Conv2D leaves the lowering (patches + contraction) to TensorFlow.
        # NOTE(framework:conv-layout): NHWC, TF's CPU conv layout.
        x = a["conv1"] = self.conv1(x)  # (N, 24, 24, 30)
        # [/rosetta:im2col]
        if self.config.use_batchnorm:
            x = a["bn1"] = self.bn1(x, training=train)  # (N, 24, 24, 30), per channel over (N, H, W)
        x = a["relu1"] = self.relu1(x)  # (N, 24, 24, 30)
        x = a["pool1"] = self.pool1(x)  # (N, 12, 12, 30)
        # NOTE(framework:flatten-order): back to NCHW before flatten, so fc1.W keeps the canonical
        # (C, H, W) row order.
        x = ops.transpose(x, (0, 3, 1, 2))  # (N, 30, 12, 12)
        x = a["flatten"] = self.flatten(x)  # (N, 4320) in (C, H, W) order
        x = a["fc1"] = self.fc1(x)  # (N, 100)
        x = a["relu2"] = self.relu2(x)  # (N, 100)
        x = a["fc2"] = self.fc2(x)  # (N, 10)
        return (x, a) if return_activations else x

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.forward(x, train=bool(training))
# [/rosetta:cnn]
