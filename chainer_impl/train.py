"""The loss and one training step of the Chainer models."""

from __future__ import annotations

import numpy as np

from chainer_impl.compat import import_chainer

chainer = import_chainer()

import chainer.functions as F  # noqa: E402


# [rosetta:loss]
def loss_fn(
    model: chainer.Chain, x: np.ndarray | chainer.Variable, t: np.ndarray, train: bool = True,
) -> chainer.Variable:
    """mean_n(logsumexp(z_n) - z_n[t_n]) + 0.5 * weight_decay * sum over every W of ||W||^2
    + weight_decay_l1 * sum over every W of |W|."""
    z = model.forward(x, train=train)  # (N, 10)
    # NOTE(framework): F.softmax_cross_entropy documents int32 labels (its CPU path also takes
    # the canonical int64); astype(copy=False) is free when they already are int32.
    loss = model.last_layer(z, t.astype(np.int32, copy=False))
    weight_decay = model.config.weight_decay
    weight_decay_l1 = model.config.weight_decay_l1
    # namedparams() yields "/fc1/W", "/conv1/W", ...: every weight, never a bias or gamma.
    weights = [p for name, p in model.namedparams() if name.endswith("/W")]
    if weight_decay:
        l2 = sum(F.sum(p * p) for p in weights)
        loss = loss + 0.5 * weight_decay * l2
    if weight_decay_l1:
        # d|W|/dW is sign(W) (0 at 0, as np.sign): backward adds weight_decay_l1 * sign(W).
        l1 = sum(F.sum(F.absolute(p)) for p in weights)
        loss = loss + weight_decay_l1 * l1
    return loss
# [/rosetta:loss]


# [rosetta:train-step]
def train_step(
    model: chainer.Chain, optimizer: chainer.Optimizer, x: np.ndarray, t: np.ndarray,
) -> float:
    """Forward in train mode, backward, one optimizer update; returns the loss before the update."""
    loss = loss_fn(model, x, t, train=True)
    # NOTE(framework): Chainer accumulates into .grad, so it is cleared before every backward.
    model.cleargrads()
    loss.backward()
    optimizer.update()
    return float(loss.array)
# [/rosetta:train-step]
