"""The five optimizers with the reference names and defaults, on Chainer's built-in update rules.

Each built-in computes the reference equation exactly once configured (verified in
parity_tests/test_chainer_port.py); these subclasses only rename the hyper-parameters and put
the course's defaults where Chainer's differ.
"""

from __future__ import annotations

from chainer_impl.compat import import_chainer

chainer = import_chainer()

from chainer import optimizers  # noqa: E402


# [rosetta:opt-sgd]
class SGD(optimizers.SGD):
    def __init__(self, lr: float = 0.01) -> None:
        # [step:update]
        # W <- W - lr * g
        super().__init__(lr=lr)
# [/rosetta:opt-sgd]


# [rosetta:opt-momentum]
class Momentum(optimizers.MomentumSGD):
    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        # [step:v]
        # v <- momentum * v - lr * g   (v starts at 0: the course's form)
        # [step:update]
        # W <- W + v
        super().__init__(lr=lr, momentum=momentum)
# [/rosetta:opt-momentum]


# [rosetta:opt-adagrad]
class AdaGrad(optimizers.AdaGrad):
    def __init__(self, lr: float = 0.01, eps: float = 1e-7) -> None:
        # [step:h]
        # h <- h + g * g   (h starts at 0)
        # [step:update]
        # W <- W - lr * g / (sqrt(h) + eps)
        # NOTE(framework:adagrad): Chainer's defaults are lr=0.001, eps=1e-8.
        super().__init__(lr=lr, eps=eps)
# [/rosetta:opt-adagrad]


# [rosetta:opt-rmsprop]
class RMSProp(optimizers.RMSprop):
    def __init__(self, lr: float = 0.01, rho: float = 0.99, eps: float = 1e-7) -> None:
        # [step:h]
        # h <- rho * h + (1 - rho) * g * g   (h starts at 0)
        # [step:update]
        # W <- W - lr * g / (sqrt(h) + eps)
        # NOTE(framework:rmsprop): Chainer calls rho "alpha"; its eps default is 1e-8; eps_inside_sqrt
        # must stay False (True computes sqrt(h + eps)).
        super().__init__(lr=lr, alpha=rho, eps=eps, eps_inside_sqrt=False)
# [/rosetta:opt-rmsprop]


# [rosetta:opt-adam]
class Adam(optimizers.Adam):
    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7,
    ) -> None:
        # [step:init]
        # t <- 0; m, v <- 0, 0   (Chainer's AdamRule makes m and v at its first update)
        # [step:t]
        # t <- t + 1; lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        # [step:m]
        # m <- m + (1 - beta1) * (g - m)
        # [step:v]
        # v <- v + (1 - beta2) * (g * g - v)
        # [step:update]
        # W <- W - lr_t * m / (sqrt(v) + eps)   (the course's form: eps before bias correction)
        # NOTE(framework:adam): Chainer calls lr "alpha" (alpha_t is lr_t); its eps default is 1e-8;
        # eta=1, weight_decay_rate=0 (AdamW), amsgrad/adabound off keep the plain update.
        super().__init__(alpha=lr, beta1=beta1, beta2=beta2, eps=eps, eta=1.0,
                         weight_decay_rate=0.0, amsgrad=False, adabound=False)
# [/rosetta:opt-adam]


OPTIMIZERS: dict[str, type[chainer.Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam,
}


def make_optimizer(name: str, model: chainer.Link, **hparams: float) -> chainer.Optimizer:
    """A fresh optimizer (state zeroed) set up on ``model``'s parameters.

    BatchNorm running statistics are persistents, not Parameters, so they are never trained.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    optimizer = OPTIMIZERS[name](**hparams)
    optimizer.setup(model)
    return optimizer


def set_lr(optimizer: chainer.Optimizer, lr: float) -> None:
    """Change the learning rate, keeping the optimizer state (for lr schedules)."""
    # NOTE(framework:adam): Chainer's Adam calls the learning rate "alpha"; the others "lr".
    name = "alpha" if isinstance(optimizer, Adam) else "lr"
    setattr(optimizer.hyperparam, name, lr)
