"""simple_conv_net.py ported to Keras, step by step as in docs/porting.md.

Keras's Conv2D takes NHWC input and keeps an HWIO kernel, and its Flatten lists the pooled
(N, H, W, C) map in (H, W, C) order: the course's W1 is transposed, the rows of its W2 permuted,
and the course's NCHW batches transposed once before training. Every layer gets the dtype, as in
two_layer_net_keras.py.

    rosetta check docs/examples/simple_conv_net.py:SimpleConvNet \
        docs/examples/simple_conv_net_keras.py:SimpleConvNet
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

C, H, W, HIDDEN = 30, 12, 12, 100  # the pooled map (channels, height, width) and fc1's width


class SimpleConvNet(keras.Model):
    def __init__(self, dtype: str = "float64") -> None:
        super().__init__(dtype=dtype)
        # NOTE(framework:padding-stride): padding="valid" is the course's pad 0; Keras has no other
        # number (padding="same" would pad 2 on each side of a 5x5 kernel).
        self.conv1 = keras.layers.Conv2D(C, 5, strides=1, padding="valid", dtype=dtype, name="conv1")
        self.pool1 = keras.layers.MaxPooling2D(2, strides=2, padding="valid", dtype=dtype, name="pool1")
        self.flatten = keras.layers.Flatten(dtype=dtype)  # (N, 12, 12, 30) -> (N, 4320), (H, W, C) order
        self.fc1 = keras.layers.Dense(HIDDEN, dtype=dtype, name="fc1")
        self.fc2 = keras.layers.Dense(10, dtype=dtype, name="fc2")
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
        self(np.zeros((1, 28, 28, 1), dtype=dtype))  # an NHWC image: Keras builds on the first call

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h = self.pool1(keras.ops.relu(self.conv1(x)))  # (N, 12, 12, 30)
        return self.fc2(keras.ops.relu(self.fc1(self.flatten(h))))  # the logits


def to_nhwc(x: np.ndarray) -> np.ndarray:
    # NOTE(framework:conv-layout): the course's (N, C, H, W) batch as Keras's (N, H, W, C).
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def from_course(params: dict[str, np.ndarray]) -> SimpleConvNet:
    net = SimpleConvNet()
    # NOTE(framework:conv-layout): OIHW -> HWIO is a transpose; a reshape would scramble the taps.
    net.conv1.set_weights([params["W1"].transpose(2, 3, 1, 0), params["b1"]])
    # NOTE(framework:flatten-order): W2's rows are in (C, H, W) order, Keras flattens (H, W, C).
    w2 = params["W2"].reshape(C, H, W, HIDDEN).transpose(1, 2, 0, 3).reshape(C * H * W, HIDDEN)
    net.fc1.set_weights([w2, params["b2"]])
    net.fc2.set_weights([params["W3"], params["b3"]])  # Dense's kernel is (in, out), as W3
    return net


def to_course(net: SimpleConvNet) -> dict[str, np.ndarray]:
    (w1, b1), (w2, b2), (w3, b3) = (layer.get_weights() for layer in (net.conv1, net.fc1, net.fc2))
    w2 = w2.reshape(H, W, C, HIDDEN).transpose(2, 0, 1, 3).reshape(C * H * W, HIDDEN)  # back to (C, H, W)
    return {"W1": w1.transpose(3, 2, 0, 1), "b1": b1, "W2": w2, "b2": b2, "W3": w3, "b3": b3}


class SGD:
    """The course's SGD with lr a Python float, as in two_layer_net_keras.py: keras.optimizers.SGD
    holds lr in float32, so a float64 port would step with a rounded lr (keras-float32-hparams)."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def apply_gradients(self, pairs: object) -> None:
        for grad, var in pairs:
            var.assign_sub(self.lr * grad)


def train_step(net: SimpleConvNet, optimizer: SGD, x: np.ndarray, t: np.ndarray) -> float:
    """x: an NHWC batch."""
    with tf.GradientTape() as tape:
        loss = net.loss_fn(t, net(x))  # integer labels: the Sparse loss
    grads = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
    return float(loss)


def train(net: SimpleConvNet, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    """The course's loop on its NCHW images, same seeded batches."""
    x = to_nhwc(x)  # once, not per batch
    rng = np.random.default_rng(seed)
    optimizer = SGD(lr=lr)
    return [train_step(net, optimizer, x[idx], t[idx])
            for idx in (rng.choice(len(x), batch_size) for _ in range(iters))]


def save(net: SimpleConvNet, path: str | Path) -> None:
    net.save_weights(path)  # the name must end in .weights.h5; the native HWIO and (H, W, C) layouts


def load(path: str | Path) -> SimpleConvNet:
    net = SimpleConvNet()  # built in the constructor, so there are variables to load into
    net.load_weights(path)
    return net
