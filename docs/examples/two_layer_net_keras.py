"""two_layer_net.py ported to Keras, step by step as in docs/porting.md.

Every layer gets the dtype (a Keras layer computes in float32 otherwise), the loss is taken from
the logits with the model's dtype, and the training step is written with tf.GradientTape, the
counterpart of the course's gradient().

    rosetta check docs/examples/two_layer_net.py:TwoLayerNet \
        docs/examples/two_layer_net_keras.py:TwoLayerNet
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


class TwoLayerNet(keras.Model):
    def __init__(self, dtype: str = "float64") -> None:
        super().__init__(dtype=dtype)
        self.fc1 = keras.layers.Dense(50, dtype=dtype, name="fc1")  # kernel (in, out), as the course's W1
        self.fc2 = keras.layers.Dense(10, dtype=dtype, name="fc2")
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
        self(np.zeros((1, 784), dtype=dtype))  # Keras creates the variables on the first call

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.fc2(keras.ops.relu(self.fc1(x)))  # the logits, as the course's predict()


def from_course(params: dict[str, np.ndarray]) -> TwoLayerNet:
    """Dense's kernel is (in, out) like the course's W: no transpose."""
    net = TwoLayerNet()
    net.fc1.set_weights([params["W1"], params["b1"]])
    net.fc2.set_weights([params["W2"], params["b2"]])
    return net


def to_course(net: TwoLayerNet) -> dict[str, np.ndarray]:
    (w1, b1), (w2, b2) = net.fc1.get_weights(), net.fc2.get_weights()
    return {"W1": w1, "b1": b1, "W2": w2, "b2": b2}


class SGD:
    """The course's SGD on Keras variables. keras.optimizers.SGD would do, but it holds lr in
    float32 (0.1 becomes 0.10000000149), so a float64 port would step with a rounded lr
    (keras-float32-hparams); here lr is a Python float, applied in the variable's dtype."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def apply_gradients(self, pairs: object) -> None:
        for grad, var in pairs:
            var.assign_sub(self.lr * grad)


def train_step(net: TwoLayerNet, optimizer: SGD, x: np.ndarray, t: np.ndarray) -> float:
    with tf.GradientTape() as tape:
        loss = net.loss_fn(t, net(x))  # integer labels: the Sparse loss
    grads = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
    return float(loss)


def train(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    """The course's loop, same seeded batches."""
    rng = np.random.default_rng(seed)
    optimizer = SGD(lr=lr)
    return [train_step(net, optimizer, x[idx], t[idx])
            for idx in (rng.choice(len(x), batch_size) for _ in range(iters))]


def save(net: TwoLayerNet, path: str | Path) -> None:
    net.save_weights(path)  # the name must end in .weights.h5


def load(path: str | Path) -> TwoLayerNet:
    net = TwoLayerNet()  # built in the constructor, so there are variables to load into
    net.load_weights(path)
    return net
