"""The layers Keras lacks in the contract's form.

* :class:`Dropout`: inverted dropout whose keep-mask can be injected (Keras draws its own).
* :class:`BatchNorm`: the contract's running statistics (momentum 0.9 on the old value, unbiased
  running variance, eps 1e-5). ``keras.layers.BatchNormalization`` keeps the *biased* batch variance
  in ``moving_variance`` and cannot be configured otherwise.
* :func:`softmax_cross_entropy`: the loss from logits in the model dtype (Keras losses compute in
  float32 unless given a dtype).

Every layer takes ``training`` explicitly: a Keras layer called without it runs in inference mode.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf


# [rosetta:dropout]
class Dropout(keras.layers.Layer):
    """Dropout with ``mode`` "inverted" (train ``y = x * mask / (1 - ratio)``, eval ``y = x``, as
    keras.layers.Dropout) or "course" (train ``y = x * mask``, eval ``y = x * (1 - ratio)``).

    ``keep_mask`` (bool, activation-shaped) fixes the mask; None draws a fresh one per call.
    """

    def __init__(self, ratio: float, mode: str = "inverted", **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.ratio = float(ratio)
        self.mode = mode
        # NOTE(framework:dropout-masks): keras.layers.Dropout draws its mask internally; no injection point.
        # An injected mask is a graph constant: a compiled step must be retraced after changing it.
        self.keep_mask: np.ndarray | None = None

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        # NOTE(framework:dropout-scaling): the course scales at test time, the frameworks in training.
        if not training:
            return x if self.mode == "inverted" else x * (1.0 - self.ratio)
        if self.keep_mask is None:
            keep = tf.random.uniform(tf.shape(x), dtype=x.dtype) >= self.ratio
        else:
            keep = tf.constant(self.keep_mask, dtype=tf.bool)
        if self.mode == "course":
            return x * tf.cast(keep, x.dtype)  # y = x * mask
        return x * tf.cast(keep, x.dtype) / (1.0 - self.ratio)  # y = x * mask / (1 - ratio)
# [/rosetta:dropout]


def set_dropout_masks(model: keras.Model, masks: Mapping[str, np.ndarray] | None) -> None:
    """Fix each Dropout layer's keep-mask by layer name (bool, activation-shaped); None: random.

    A keep-mask is a constant of the traced graphs: the caller retraces (tf_impl.train.retrace).
    """
    layers = {layer.name: layer for layer in model.layers if isinstance(layer, Dropout)}
    unknown = sorted(set(masks or {}) - set(layers))
    if unknown:
        raise ValueError(f"no Dropout layer named {unknown[0]!r}; the model has: "
                         f"{', '.join(layers) or 'none'}")
    for name, layer in layers.items():
        mask = None if masks is None else masks.get(name)
        layer.keep_mask = None if mask is None else np.array(mask, dtype=bool)


# [rosetta:batchnorm]
class BatchNorm(keras.layers.Layer):
    """Batch normalization over every axis but the last (features, or NHWC channels).

    train: ``y = gamma * (x - mu) / sqrt(var + eps) + beta`` with the batch mean and biased
    variance; ``running = momentum * running + (1 - momentum) * batch``, the running variance
    unbiased (``var * m / (m - 1)``, m values per feature). eval: the running statistics.
    """

    def __init__(self, momentum: float = 0.9, eps: float = 1e-5, **kwargs: object) -> None:
        super().__init__(**kwargs)
        # NOTE(framework:bn-eps): keras BatchNormalization defaults to momentum=0.99, epsilon=1e-3 and a
        # biased moving_variance; this layer is the contract's (momentum=0.9, eps=1e-5, unbiased).
        self.momentum = float(momentum)
        self.eps = float(eps)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        n = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(n,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(n,), initializer="zeros", name="beta")
        # Running statistics are state, not parameters: no gradient, no optimizer update.
        self.running_mean = self.add_weight(shape=(n,), initializer="zeros", trainable=False,
                                            name="running_mean")
        self.running_var = self.add_weight(shape=(n,), initializer="ones", trainable=False,
                                           name="running_var")

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        axes = list(range(len(x.shape) - 1))  # (N,) for (N, D); (N, H, W) for NHWC
        if training:
            mu = tf.reduce_mean(x, axis=axes)
            xc = x - mu
            var = tf.reduce_mean(xc * xc, axis=axes)
            std = tf.sqrt(var + self.eps)
            xn = xc / std
            m = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)  # values per feature
            unbiased = var * (m / tf.maximum(m - 1, 1))  # m = 1: var is 0 and stays 0
            # running_mean <- momentum * running_mean + (1 - momentum) * mu
            self.running_mean.assign(self.momentum * self.running_mean + (1 - self.momentum) * mu)
            # running_var <- momentum * running_var + (1 - momentum) * var * m / (m - 1)
            self.running_var.assign(
                self.momentum * self.running_var + (1 - self.momentum) * unbiased)
        else:
            xc = x - self.running_mean
            xn = xc / tf.sqrt(self.running_var + self.eps)
        return self.gamma * xn + self.beta
# [/rosetta:batchnorm]


def softmax_cross_entropy(logits: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy ``mean_n(logsumexp(z_n) - z_n[t_n])`` in the dtype of ``logits``."""
    # NOTE(framework:softmax-ce): from logits; Keras losses default to from_logits=False (they
    # expect probabilities) and the course's cross_entropy_error adds 1e-7 inside the log.
    # NOTE(framework:keras-loss-float32): keras.losses.SparseCategoricalCrossentropy returns float32 unless
    # built
    # with dtype=...; the tf.nn op computes in the logits' dtype and never forms log(softmax).
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=logits)
    return tf.reduce_mean(per_sample)
