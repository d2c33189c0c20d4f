"""The loss, the gradients by canonical name, and one training step, compiled into TF graphs."""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tf_impl.optimizers import Optimizer
from tf_impl.weights import dump_grads, trainable_variables, weight_matrices


def native_input_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """One example's native shape: image inputs (C, H, W) are (H, W, C) in Keras."""
    # NOTE(framework:conv-layout): Keras convolutions take NHWC; the canonical layout is NCHW.
    return (*input_shape[1:], input_shape[0]) if len(input_shape) == 3 else tuple(input_shape)


def input_signature(model: keras.Model) -> list[tf.TensorSpec]:
    """Specs of ``(x, t)``: any batch size, the native input layout, the model's dtype."""
    return [tf.TensorSpec((None, *native_input_shape(model.config.input_shape)),
                          model.dtype_policy.compute_dtype),
            tf.TensorSpec((None,), tf.int64)]


# [rosetta:loss]
def loss_fn(model: keras.Model, logits: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """mean_n(logsumexp(z_n) - z_n[t_n]) + 0.5 * weight_decay * sum ||W||^2 + l1 * sum |W|."""
    # Softmax with cross-entropy fused on the logits (see layers.softmax_cross_entropy).
    loss = model.last_layer(logits, t)
    weight_decay = model.config.weight_decay
    if weight_decay:
        # The L2 term is part of the loss, so the tape adds weight_decay * W to each gradient.
        loss = loss + 0.5 * weight_decay * tf.add_n([tf.reduce_sum(w * w) for w in weight_matrices(model)])
    weight_decay_l1 = model.config.weight_decay_l1
    if weight_decay_l1:
        # l1 * sum |W|: the tape's gradient of abs is sign(W), 0 at W = 0, as the course's.
        loss = loss + weight_decay_l1 * tf.add_n([tf.reduce_sum(tf.abs(w)) for w in weight_matrices(model)])
    return loss
# [/rosetta:loss]


def _compiled(model: keras.Model, train: bool, input_grad: bool) -> Callable[..., object]:
    """The loss-and-gradient graph of this mode, traced once per model and reused for any batch."""
    cache = model.__dict__.setdefault("_rosetta_grad_fns", {})
    key = (train, input_grad)
    if key not in cache:
        variables = trainable_variables(model)

        # [rosetta:gradcheck]
        def grads(x: tf.Tensor, t: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = loss_fn(model, model(x, training=train), t)
            return loss, tape.gradient(loss, [x, *variables] if input_grad else variables)
        # [/rosetta:gradcheck]

        cache[key] = tf.function(grads, input_signature=input_signature(model), autograph=False)
    return cache[key]


def loss_and_grads(
    model: keras.Model, x: tf.Tensor, t: tf.Tensor, train: bool = True, input_grad: bool = False,
) -> tuple[float, dict[str, np.ndarray], tf.Tensor | None]:
    """Loss, every gradient by canonical name and layout, and d loss / d x (native NHWC for the
    CNNs) when ``input_grad``."""
    loss, grads = _compiled(model, train, input_grad)(x, t)
    dx = grads[0] if input_grad else None
    return float(loss), dump_grads(model, [g.numpy() for g in grads[int(input_grad):]]), dx


def retrace(model: keras.Model, optimizer: Optimizer | None = None) -> None:
    """Drop the compiled graphs (an injected dropout mask is a graph constant)."""
    model.__dict__.pop("_rosetta_grad_fns", None)
    if optimizer is not None:
        optimizer.compiled_step = None


# [rosetta:train-step]
def train_step(model: keras.Model, optimizer: Optimizer, x: np.ndarray | tf.Tensor,
               t: np.ndarray | tf.Tensor) -> float:
    """One step in train mode: forward, backward, optimizer update. Returns the loss."""
    # NOTE(framework:tf-function): the step runs as one tf.function graph, traced once per
    # (model, optimizer) for any batch size; eager TensorFlow is 3-20x slower on this model.
    # autograph=False: the step has no tensor-dependent Python control flow to convert, and
    # skipping the conversion makes the first trace ~3x faster (measured: MLP 0.60 s -> 0.19 s).
    if optimizer.compiled_step is None:
        optimizer.compiled_step = tf.function(functools.partial(_step, model, optimizer),
                                              input_signature=input_signature(model), autograph=False)
    return float(optimizer.compiled_step(x, t))


def _step(model: keras.Model, optimizer: Optimizer, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    # [step:forward]
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = loss_fn(model, logits, t)
    # [step:backward]
    grads = tape.gradient(loss, optimizer.variables)
    # [step:update]
    optimizer.update(grads)
    # [step:return]
    return loss
# [/rosetta:train-step]
