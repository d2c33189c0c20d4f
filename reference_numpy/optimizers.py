"""Optimizers, course API: ``update(params, grads)`` on dicts keyed by canonical name, in place.

Every hyper-parameter is explicit; the defaults are the course's (and
``rosetta.adapters.base.OPTIMIZER_DEFAULTS``). Only the keys of ``grads`` are updated, so
BatchNorm running statistics are never trained. Updates are in place and keep the dtype: Python
float hyper-parameters never upcast a float32 array under NumPy 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class Optimizer:
    """Base: ``update(params, grads)``; ``step(grads)`` updates the params bound by make_optimizer."""

    hparam_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] | None = None

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        if self.params is None:
            raise RuntimeError("this optimizer is bound to no parameters; call update(params, grads)")
        self.update(self.params, grads)

    def hparams(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.hparam_names}


# [rosetta:opt-sgd]
class SGD(Optimizer):
    hparam_names = ("lr",)

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.lr = lr

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for key in grads:
            # [step:update]
            # W <- W - lr * g
            params[key] -= self.lr * grads[key]
# [/rosetta:opt-sgd]


# [rosetta:opt-momentum]
class Momentum(Optimizer):
    hparam_names = ("lr", "momentum")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__()
        self.lr = lr
        self.momentum = momentum
        self.v: dict[str, np.ndarray] = {}

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for key in grads:
            if key not in self.v:
                self.v[key] = np.zeros_like(params[key])  # v starts at 0
            # [step:v]
            # v <- momentum * v - lr * g
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            # [step:update]
            # W <- W + v
            params[key] += self.v[key]
# [/rosetta:opt-momentum]


class Nesterov(Optimizer):
    """Nesterov's accelerated gradient in the course's form (Sutskever's reformulation, which
    keeps W at the look-ahead point so the gradient is taken where the update lands)."""

    hparam_names = ("lr", "momentum")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__()
        self.lr = lr
        self.momentum = momentum
        self.v: dict[str, np.ndarray] = {}

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for key in grads:
            if key not in self.v:
                self.v[key] = np.zeros_like(params[key])
            # v <- momentum * v - lr * g
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            # W <- W + momentum^2 * v - (1 + momentum) * lr * g
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


# [rosetta:opt-adagrad]
class AdaGrad(Optimizer):
    hparam_names = ("lr", "eps")

    def __init__(self, lr: float = 0.01, eps: float = 1e-7) -> None:
        super().__init__()
        self.lr = lr
        self.eps = eps
        self.h: dict[str, np.ndarray] = {}

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for key in grads:
            if key not in self.h:
                self.h[key] = np.zeros_like(params[key])  # h starts at 0
            # [step:h]
            # h <- h + g * g
            self.h[key] += grads[key] * grads[key]
            # [step:update]
            # W <- W - lr * g / (sqrt(h) + eps)
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + self.eps)
# [/rosetta:opt-adagrad]


# [rosetta:opt-rmsprop]
class RMSProp(Optimizer):
    hparam_names = ("lr", "rho", "eps")

    def __init__(self, lr: float = 0.01, rho: float = 0.99, eps: float = 1e-7) -> None:
        super().__init__()
        self.lr = lr
        self.rho = rho
        self.eps = eps
        self.h: dict[str, np.ndarray] = {}

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for key in grads:
            if key not in self.h:
                self.h[key] = np.zeros_like(params[key])  # h starts at 0
            # [step:h]
            # h <- rho * h + (1 - rho) * g * g
            self.h[key] *= self.rho
            self.h[key] += (1 - self.rho) * grads[key] * grads[key]
            # [step:update]
            # W <- W - lr * g / (sqrt(h) + eps)
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + self.eps)
# [/rosetta:opt-rmsprop]


# [rosetta:opt-adam]
class Adam(Optimizer):
    """The course's Adam: bias correction folded into the step size, eps added before it."""

    hparam_names = ("lr", "beta1", "beta2", "eps")

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        # [step:init]
        self.iter = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        # [step:t]
        # t <- t + 1; lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for key in grads:
            if key not in self.m:
                self.m[key] = np.zeros_like(params[key])
                self.v[key] = np.zeros_like(params[key])
            g = grads[key]
            # [step:m]
            # m <- m + (1 - beta1) * (g - m)
            self.m[key] += (1 - self.beta1) * (g - self.m[key])
            # [step:v]
            # v <- v + (1 - beta2) * (g * g - v)
            self.v[key] += (1 - self.beta2) * (g * g - self.v[key])
            # [step:update]
            # W <- W - lr_t * m / (sqrt(v) + eps)
            params[key] -= float(lr_t) * self.m[key] / (np.sqrt(self.v[key]) + self.eps)
# [/rosetta:opt-adam]


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "nesterov": Nesterov,
    "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam,
}


def make_optimizer(name: str, model_or_params: Any = None, **hparams: float) -> Optimizer:
    """Optimizer ``name`` (sgd|momentum|nesterov|adagrad|rmsprop|adam) with explicit hyper-parameters.

    ``model_or_params`` (a model with ``.params`` or a params dict) is bound so ``step(grads)``
    works; ``update(params, grads)`` works either way. Unknown names raise one ValueError.
    """
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[key]
    unknown = sorted(set(hparams) - set(cls.hparam_names))
    if unknown:
        raise ValueError(f"optimizer {key!r} takes {list(cls.hparam_names)}, not {unknown}")
    opt = cls(**hparams)
    if model_or_params is not None:
        opt.params = model_or_params if isinstance(model_or_params, dict) else model_or_params.params
    return opt


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Change the learning rate, keeping the optimizer state (for lr schedules)."""
    optimizer.lr = lr
