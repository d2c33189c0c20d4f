"""The loss, the gradients by canonical name, and one training step of the Chainer models."""

from __future__ import annotations

import numpy as np

from chainer_impl.compat import import_chainer
from chainer_impl.weights import dump_grads

chainer = import_chainer()

import chainer.functions as F  # noqa: E402


def weight_matrices(model: chainer.Chain) -> list[chainer.Parameter]:
    """Every canonical ``.W`` (affine and conv weights): the tensors the L2 and L1 penalties cover."""
    # namedparams() yields "/fc1/W", "/conv1/W", ...: every weight, never a bias or gamma.
    return [p for name, p in model.namedparams() if name.endswith("/W")]


# [rosetta:loss]
def loss_fn(model: chainer.Chain, logits: chainer.Variable, t: np.ndarray) -> chainer.Variable:
    """mean_n(logsumexp(z_n) - z_n[t_n]) + 0.5 * weight_decay * sum ||W||^2 + l1 * sum |W|."""
    # NOTE(framework:label-dtypes): F.softmax_cross_entropy documents int32 labels (its CPU path
    # also takes the canonical int64); astype(copy=False) is free when they already are int32.
    loss = model.last_layer(logits, np.asarray(t).astype(np.int32, copy=False))
    weight_decay = model.config.weight_decay
    if weight_decay:
        loss = loss + 0.5 * weight_decay * sum(F.sum(w * w) for w in weight_matrices(model))
    weight_decay_l1 = model.config.weight_decay_l1
    if weight_decay_l1:
        # l1 * sum |W|: Chainer's gradient of absolute is sign(W), 0 at W = 0, as the course's.
        loss = loss + weight_decay_l1 * sum(F.sum(F.absolute(w)) for w in weight_matrices(model))
    return loss
# [/rosetta:loss]


# [rosetta:gradcheck]
def loss_and_grads(
    model: chainer.Chain, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
) -> tuple[float, dict[str, np.ndarray], np.ndarray | None]:
    """Loss, every gradient by canonical name and layout, and d loss / d x when ``input_grad``."""
    # A Variable input gets a gradient; a plain array does not (and skips that work).
    x_in = chainer.Variable(x) if input_grad else x
    loss = loss_fn(model, model.forward(x_in, train=train), t)
    # NOTE(framework:chainer-cleargrads): Chainer accumulates into .grad: clear before backward.
    model.cleargrads()
    loss.backward()
    return float(loss.array), dump_grads(model), (np.array(x_in.grad) if input_grad else None)
# [/rosetta:gradcheck]


# [rosetta:train-step]
def train_step(
    model: chainer.Chain, optimizer: chainer.Optimizer, x: np.ndarray, t: np.ndarray,
) -> float:
    """Forward in train mode, backward, one optimizer update; returns the loss before the update."""
    # [step:forward]
    logits = model.forward(x, train=True)
    loss = loss_fn(model, logits, t)
    # [step:backward]
    # NOTE(framework:chainer-cleargrads): Chainer accumulates into .grad: clear before backward.
    model.cleargrads()
    loss.backward()
    # [step:update]
    optimizer.update()
    # [step:return]
    return float(loss.array)
# [/rosetta:train-step]
