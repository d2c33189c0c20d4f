"""The five optimizers with the reference hyper-parameter names (lr, momentum, eps, rho, beta1, beta2).

torch.optim's SGD, Adagrad and RMSprop compute the contract's equations once configured; Adam is a
small custom optimizer because torch.optim.Adam places eps after the bias correction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


# [rosetta:opt-sgd]
class SGD(torch.optim.SGD):
    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01) -> None:
        # [step:update]
        # W <- W - lr * g
        # NOTE(framework:sgd-lr): torch.optim.SGD's lr defaults to 1e-3; the course's is 0.01.
        super().__init__(params, lr=lr)
# [/rosetta:opt-sgd]


# [rosetta:opt-momentum]
class Momentum(torch.optim.SGD):
    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, momentum: float = 0.9) -> None:
        # [step:v]
        # v <- momentum * v - lr * g   (torch's buffer b, with v = -lr * b: see the NOTE)
        # [step:update]
        # W <- W + v
        # NOTE(framework:momentum-form): torch keeps b <- momentum * b + g; W <- W - lr * b. With a
        # constant lr that is the reference's v <- momentum * v - lr * g; W <- W + v with v = -lr * b.
        super().__init__(params, lr=lr, momentum=momentum, dampening=0.0, nesterov=False)
# [/rosetta:opt-momentum]


# [rosetta:opt-adagrad]
class AdaGrad(torch.optim.Adagrad):
    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, eps: float = 1e-7) -> None:
        # [step:h]
        # h <- h + g * g   (h starts at 0)
        # [step:update]
        # W <- W - lr * g / (sqrt(h) + eps)
        # NOTE(framework:adagrad): torch's defaults are eps=1e-10; initial_accumulator_value and lr_decay
        # are pinned to the reference's h0 = 0 and constant lr.
        super().__init__(params, lr=lr, eps=eps, initial_accumulator_value=0.0, lr_decay=0.0)
# [/rosetta:opt-adagrad]


# [rosetta:opt-rmsprop]
class RMSProp(torch.optim.RMSprop):
    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, rho: float = 0.99,
                 eps: float = 1e-7) -> None:
        # [step:h]
        # h <- rho * h + (1 - rho) * g * g   (h starts at 0)
        # [step:update]
        # W <- W - lr * g / (sqrt(h) + eps)
        # NOTE(framework:rmsprop): torch calls rho ``alpha``; its default eps is 1e-8.
        super().__init__(params, lr=lr, alpha=rho, eps=eps, momentum=0.0, centered=False)
# [/rosetta:opt-rmsprop]


# [rosetta:opt-adam]
class Adam(torch.optim.Optimizer):
    """The course's Adam: eps is added to sqrt(v) *before* the bias correction is applied.

    NOTE(framework:adam): torch.optim.Adam divides by sqrt(v / (1 - beta2^t)) + eps, i.e. adds eps after
    the bias correction; the two differ wherever sqrt(v) is comparable to eps.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.001, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-7) -> None:
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta1, beta2, eps = group["lr"], group["beta1"], group["beta2"], group["eps"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                # [step:init]
                state = self.state[w]
                if not state:
                    state["t"] = 0
                    state["m"] = torch.zeros_like(w)
                    state["v"] = torch.zeros_like(w)
                m, v = state["m"], state["v"]
                # [step:t]
                # t <- t + 1
                state["t"] += 1
                t = state["t"]
                # lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)   (a Python float, exact in float64)
                lr_t = lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
                # [step:m]
                # m <- m + (1 - beta1) * (g - m)
                m.add_(g - m, alpha=1.0 - beta1)
                # [step:v]
                # v <- v + (1 - beta2) * (g * g - v)
                v.add_(g * g - v, alpha=1.0 - beta2)
                # [step:update]
                # W <- W - lr_t * m / (sqrt(v) + eps)
                w.addcdiv_(m, v.sqrt().add_(eps), value=-lr_t)
        return loss
# [/rosetta:opt-adam]


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam,
}


def make_optimizer(name: str, model: nn.Module, **hparams: float) -> torch.optim.Optimizer:
    """A fresh optimizer over the model's trainable parameters (BatchNorm running stats are
    buffers, never trained), with the reference hyper-parameter names."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](model.parameters(), **hparams)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Change the learning rate, keeping the optimizer state (for lr schedules)."""
    for group in optimizer.param_groups:
        old, group["lr"] = group["lr"], lr
        if not isinstance(optimizer, Momentum):
            continue
        # NOTE(framework:momentum-form): torch's momentum buffer b is the course's velocity
        # divided by -lr (v = -lr * b). Rescale b so that v, the state the course keeps, is unchanged.
        for p in group["params"]:
            buffer = optimizer.state.get(p, {}).get("momentum_buffer")
            if buffer is not None:
                buffer.mul_(old / lr)
