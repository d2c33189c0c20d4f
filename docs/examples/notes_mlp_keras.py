"""The course notes' Chainer MLP migrated to Keras (``notes_mlp_chainer.py``).

The output sigmoid is the last Dense's activation, and Chainer's F.softmax_cross_entropy applies
the softmax to the sigmoid's output. Keras's own losses cannot be used for that: given the output
of a sigmoid layer with ``from_logits=True``, they take the values *before* the sigmoid (with a
warning), which silently drops it; ``rosetta check`` names that (``notes-keras-loss`` in the
gallery). The loss here is tf.nn's, which takes its input as it is. ``dtype`` goes to every layer
(Keras computes in float32 otherwise), so the check can run in float64.

    rosetta check docs/examples/notes_mlp_chainer.py:model docs/examples/notes_mlp_keras.py:model
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def softmax_cross_entropy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """F.softmax_cross_entropy: mean over the batch, softmax applied to y_pred as it is."""
    labels = tf.cast(y_true, tf.int64)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=y_pred))


def model(dtype: str = "float32") -> keras.Model:
    inp = keras.Input((784,), dtype=dtype)
    h1 = keras.layers.Dense(100, activation="relu", dtype=dtype, name="l1")(inp)
    h2 = keras.layers.Dense(100, activation="relu", dtype=dtype, name="l2")(h1)
    y = keras.layers.Dense(10, activation="sigmoid", dtype=dtype, name="l3")(h2)
    net = keras.Model(inp, y)
    net.loss_fn = softmax_cross_entropy
    return net


def train(x: np.ndarray, t: np.ndarray, epochs: int = 1, batch: int = 100) -> keras.Model:
    net = model()
    adam = keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    net.compile(optimizer=adam, loss=softmax_cross_entropy)
    net.fit(x, t, batch_size=batch, epochs=epochs, shuffle=False, verbose=0)
    return net
