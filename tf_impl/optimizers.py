"""The five optimizers of the course, as small classes updating Keras variables with tf ops.

NOTE(framework:keras-float32-hparams): the Keras built-ins are not used. They hold the learning rate as a
float32
variable (so a float64 model steps with lr rounded to float32), and their defaults differ from the
contract: Adagrad puts eps inside the sqrt and starts its accumulator at 0.1, RMSprop puts eps
inside the sqrt and defaults to rho=0.9. Every hyper-parameter here is a constant in the
variable's own dtype, so float64 stays float64. (parity_tests/test_tf_port.py measures each gap.)

``update(grads)`` runs inside the compiled train step; ``grads`` follow ``variables``' order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf


def _zeros_like(variables: Sequence[keras.Variable]) -> list[tf.Variable]:
    return [tf.Variable(tf.zeros(v.shape, dtype=v.dtype), trainable=False) for v in variables]


class Optimizer:
    """Base: the model's trainable variables, the learning rate, one step of the update rule.

    ``lr`` lives in a float64 variable, as the reference's Python float: ``opt.lr = 0.005`` (an lr
    schedule) reaches the compiled step without a retrace; each update casts it to the weight's
    dtype, where the reference's NumPy does the same implicitly.
    """

    def __init__(self, variables: Sequence[keras.Variable], lr: float) -> None:
        self.variables = list(variables)
        self.lr_var = tf.Variable(lr, dtype=tf.float64, trainable=False)
        # The compiled train step of tf_impl.train.train_step, traced on first use.
        self.compiled_step: Callable[..., tf.Tensor] | None = None

    @property
    def lr(self) -> float:
        return float(self.lr_var.numpy())

    @lr.setter
    def lr(self, value: float) -> None:
        self.lr_var.assign(value)

    def update(self, grads: Sequence[tf.Tensor]) -> None:
        raise NotImplementedError


# [rosetta:opt-sgd]
class SGD(Optimizer):
    def __init__(self, variables: Sequence[keras.Variable], lr: float = 0.01) -> None:
        super().__init__(variables, lr)

    def update(self, grads: Sequence[tf.Tensor]) -> None:
        for w, g in zip(self.variables, grads, strict=True):
            # [step:update]
            # W <- W - lr * g
            w.assign_sub(tf.cast(self.lr_var, w.dtype) * g)
# [/rosetta:opt-sgd]


# [rosetta:opt-momentum]
class Momentum(Optimizer):
    def __init__(self, variables: Sequence[keras.Variable], lr: float = 0.01,
                 momentum: float = 0.9) -> None:
        super().__init__(variables, lr)
        self.momentum = momentum
        self.v = _zeros_like(self.variables)  # v starts at 0

    def update(self, grads: Sequence[tf.Tensor]) -> None:
        for w, v, g in zip(self.variables, self.v, grads, strict=True):
            # [step:v]
            # v <- momentum * v - lr * g
            v.assign(tf.constant(self.momentum, w.dtype) * v - tf.cast(self.lr_var, w.dtype) * g)
            # [step:update]
            # W <- W + v
            w.assign_add(v)
# [/rosetta:opt-momentum]


# [rosetta:opt-adagrad]
class AdaGrad(Optimizer):
    def __init__(self, variables: Sequence[keras.Variable], lr: float = 0.01,
                 eps: float = 1e-7) -> None:
        super().__init__(variables, lr)
        self.eps = eps
        self.h = _zeros_like(self.variables)  # h starts at 0 (NOTE(framework:adagrad): Keras: 0.1)

    def update(self, grads: Sequence[tf.Tensor]) -> None:
        for w, h, g in zip(self.variables, self.h, grads, strict=True):
            # [step:h]
            # h <- h + g * g
            h.assign_add(g * g)
            # [step:update]
            # W <- W - lr * g / (sqrt(h) + eps)   NOTE(framework:adagrad): Keras: sqrt(h + eps)
            w.assign_sub(tf.cast(self.lr_var, w.dtype) * g / (tf.sqrt(h) + tf.constant(self.eps, w.dtype)))
# [/rosetta:opt-adagrad]


# [rosetta:opt-rmsprop]
class RMSProp(Optimizer):
    def __init__(self, variables: Sequence[keras.Variable], lr: float = 0.01, rho: float = 0.99,
                 eps: float = 1e-7) -> None:
        super().__init__(variables, lr)
        self.rho, self.eps = rho, eps
        self.h = _zeros_like(self.variables)  # h starts at 0

    def update(self, grads: Sequence[tf.Tensor]) -> None:
        for w, h, g in zip(self.variables, self.h, grads, strict=True):
            # [step:h]
            # h <- rho * h + (1 - rho) * g * g
            h.assign(tf.constant(self.rho, w.dtype) * h + tf.constant(1 - self.rho, w.dtype) * g * g)
            # [step:update]
            # W <- W - lr * g / (sqrt(h) + eps)   NOTE(framework:rmsprop): Keras: sqrt(h + eps)
            w.assign_sub(tf.cast(self.lr_var, w.dtype) * g / (tf.sqrt(h) + tf.constant(self.eps, w.dtype)))
# [/rosetta:opt-rmsprop]


# [rosetta:opt-adam]
class Adam(Optimizer):
    """The course's Adam: eps added to sqrt(v) before the bias correction folded into lr_t."""

    def __init__(self, variables: Sequence[keras.Variable], lr: float = 0.001, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-7) -> None:
        super().__init__(variables, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        # [step:init]
        self.t = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.m = _zeros_like(self.variables)
        self.v = _zeros_like(self.variables)

    def update(self, grads: Sequence[tf.Tensor]) -> None:
        # [step:t]
        # t <- t + 1
        t = tf.cast(self.t.assign_add(1), tf.float64)
        # lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t); a scalar, computed in float64 like the
        # reference's Python floats and then cast once to each variable's dtype.
        lr_t = self.lr_var * tf.sqrt(1.0 - tf.pow(tf.constant(self.beta2, tf.float64), t)) \
            / (1.0 - tf.pow(tf.constant(self.beta1, tf.float64), t))
        for w, m, v, g in zip(self.variables, self.m, self.v, grads, strict=True):
            # [step:m]
            # m <- m + (1 - beta1) * (g - m)
            m.assign_add(tf.constant(1 - self.beta1, w.dtype) * (g - m))
            # [step:v]
            # v <- v + (1 - beta2) * (g * g - v)
            v.assign_add(tf.constant(1 - self.beta2, w.dtype) * (g * g - v))
            # [step:update]
            # W <- W - lr_t * m / (sqrt(v) + eps)
            w.assign_sub(tf.cast(lr_t, w.dtype) * m / (tf.sqrt(v) + tf.constant(self.eps, w.dtype)))
# [/rosetta:opt-adam]


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam,
}


def make_optimizer(name: str, model: keras.Model, **hparams: float) -> Optimizer:
    """A fresh optimizer (zeroed state) over ``model.trainable_variables`` with the reference
    hyper-parameter names (lr, momentum, eps, rho, beta1, beta2) and defaults."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    try:
        return OPTIMIZERS[name](model.trainable_variables, **hparams)
    except TypeError as exc:  # an unknown hyper-parameter name
        raise ValueError(f"optimizer {name!r}: {exc}") from None


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Change the learning rate, keeping the optimizer state (for lr schedules)."""
    # A variable of the compiled step: no retrace. Momentum's v is the course's velocity itself,
    # so unlike torch's buffer it needs no rescaling.
    optimizer.lr = lr
