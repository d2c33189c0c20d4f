"""The loss and one training step, compiled into a TensorFlow graph."""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from tf_impl.optimizers import Optimizer


def input_signature(model: keras.Model) -> list[tf.TensorSpec]:
    """Specs of ``(x, t)``: any batch size, the native input layout, the model's dtype."""
    shape = model.config.input_shape  # canonical: (784,) or (C, H, W)
    if len(shape) == 3:
        ch, h, w = shape
        x_shape: tuple[int | None, ...] = (None, h, w, ch)  # NHWC
    else:
        x_shape = (None, *shape)
    return [tf.TensorSpec(x_shape, model.dtype_policy.compute_dtype),
            tf.TensorSpec((None,), tf.int64)]


# [rosetta:loss]
def loss_fn(model: keras.Model, logits: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """mean_n(logsumexp(z_n) - z_n[t_n]) + 0.5 * weight_decay * sum ||W||^2
    + weight_decay_l1 * sum |W|, in the logits' dtype."""
    # Softmax with cross-entropy fused on the logits (see layers.softmax_cross_entropy).
    loss = model.last_layer(logits, t)
    weight_decay = model.config.weight_decay
    if weight_decay:
        # The L2 term is part of the loss, so the tape adds weight_decay * W to each gradient.
        loss = loss + 0.5 * weight_decay * tf.add_n([tf.reduce_sum(w * w) for w in model.weight_matrices()])
    weight_decay_l1 = model.config.weight_decay_l1
    if weight_decay_l1:
        # d|W|/dW is sign(W) (0 at 0, as np.sign): the tape adds weight_decay_l1 * sign(W).
        loss = loss + weight_decay_l1 * tf.add_n([tf.reduce_sum(tf.abs(w)) for w in model.weight_matrices()])
    return loss
# [/rosetta:loss]


# [rosetta:train-step]
def train_step(model: keras.Model, optimizer: Optimizer, x: np.ndarray | tf.Tensor,
               t: np.ndarray | tf.Tensor) -> float:
    """One step in train mode: forward, backward, optimizer update. Returns the loss."""
    # NOTE(framework): the step runs as one tf.function graph, traced once per (model, optimizer)
    # for any batch size; eager TensorFlow is 3-20x slower on this model.
    if optimizer.compiled_step is None:
        optimizer.compiled_step = tf.function(functools.partial(_step, model, optimizer),
                                              input_signature=input_signature(model))
    return float(optimizer.compiled_step(x, t))


def _step(model: keras.Model, optimizer: Optimizer, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = loss_fn(model, logits, t)
    grads = tape.gradient(loss, optimizer.variables)
    optimizer.update(grads)
    return loss
# [/rosetta:train-step]
