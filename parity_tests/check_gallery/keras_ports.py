"""Hand-written Keras ports of the course networks (NHWC, as Keras models are written)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops


class SquareDense(keras.layers.Layer):
    """kernel (in, out) like Dense, but applied as x @ kernel.T (torch's habit; square hides it)."""

    def __init__(self, n: int, **kw: object) -> None:
        super().__init__(**kw)
        self.kernel = self.add_weight(shape=(n, n), initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(n,), initializer="zeros", name="bias")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return ops.matmul(x, ops.transpose(self.kernel)) + self.bias


def two_layer_net(
    dtype: str = "float64",
    hidden: int = 50,
    activation: str = "relu",
    output_activation: str | None = None,
    square_bug: bool = False,
    loss: object = None,
    float32_layer: bool = False,
) -> keras.Model:
    inp = keras.Input((784,), dtype=dtype)
    h = keras.layers.Dense(hidden, activation=activation, dtype=dtype, name="fc1")(inp)
    if square_bug:
        y = SquareDense(hidden, dtype=dtype, name="fc2")(h)
    else:
        y = keras.layers.Dense(
            10, activation=output_activation, name="fc2", dtype="float32" if float32_layer else dtype
        )(h)
    model = keras.Model(inp, y)
    if loss is not None:
        model.loss_fn = loss
    return model


def guard_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    p = ops.softmax(y_pred)
    picked = ops.take_along_axis(p, ops.expand_dims(ops.cast(y_true, "int32"), 1), axis=1)
    return -ops.mean(ops.log(picked + 1e-7))


def smoothed_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, dtype=y_pred.dtype)
    return cce(ops.one_hot(y_true, 10, dtype=y_pred.dtype), y_pred)


class SimpleConvNet(keras.Model):
    def __init__(
        self,
        dtype: str = "float64",
        padding: str = "valid",
        filter_size: int = 5,
        pool_padding: str = "valid",
        flatten: str = "hwc",
    ) -> None:
        super().__init__(dtype=dtype)
        self.conv1 = keras.layers.Conv2D(30, filter_size, padding=padding, dtype=dtype)
        self.pool1 = keras.layers.MaxPooling2D(2, padding=pool_padding, dtype=dtype)
        self.flat = keras.layers.Flatten(dtype=dtype)
        self.fc1 = keras.layers.Dense(100, activation="relu", dtype=dtype)
        self.fc2 = keras.layers.Dense(10, dtype=dtype)
        self.order = flatten
        n = (28 - filter_size + 1) // 2
        self(np.zeros((1, 28, 28, 1), dtype=dtype))
        del n

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        h = self.pool1(ops.relu(self.conv1(x)))  # (N, 12, 12, 30)
        if self.order == "cwh":
            h = ops.transpose(h, (0, 3, 2, 1))  # (N, 30, 12, 12) meant as NCHW, but W and H swapped
        return self.fc2(self.fc1(self.flat(h)))


class MultiLayerNetExtend(keras.Model):
    def __init__(
        self,
        dtype: str = "float64",
        hidden: tuple[int, ...] = (20, 20),
        batchnorm: bool = True,
        dropout: float = 0.0,
        epsilon: float = 1e-5,
        momentum: float = 0.9,
        frozen_bn: bool = False,
    ) -> None:
        super().__init__(dtype=dtype)
        self.fcs = [keras.layers.Dense(h, dtype=dtype) for h in hidden]
        self.bns = (
            [keras.layers.BatchNormalization(epsilon=epsilon, momentum=momentum, dtype=dtype) for _ in hidden]
            if batchnorm
            else []
        )
        self.drops = [keras.layers.Dropout(dropout, dtype=dtype) for _ in hidden] if dropout else []
        self.out = keras.layers.Dense(10, dtype=dtype)
        for bn in self.bns:
            # frozen_bn: a BatchNormalization with trainable=False runs in inference mode even
            # when called with training=True (keras-training-flag)
            bn.trainable = not frozen_bn
        self(np.zeros((1, 784), dtype=dtype))

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if self.bns:
                x = self.bns[i](x, training=training)
            x = ops.relu(x)
            if self.drops:
                x = self.drops[i](x, training=training)
        return self.out(x)


class NotesMLP(keras.Model):
    """The course notes' Chainer MLP in Keras: 784-100-100-10, ReLU, ReLU, sigmoid output."""

    def __init__(self, dtype: str = "float64", keras_loss: bool = False) -> None:
        super().__init__(dtype=dtype)
        if keras_loss:
            # Keras's own loss on a sigmoid output: it takes the values before the sigmoid
            self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
        self.l1 = keras.layers.Dense(100, activation="relu", dtype=dtype)
        self.l2 = keras.layers.Dense(100, activation="relu", dtype=dtype)
        self.l3 = keras.layers.Dense(10, activation="sigmoid", dtype=dtype)
        self(np.zeros((1, 784), dtype=dtype))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.l3(self.l2(self.l1(x)))
