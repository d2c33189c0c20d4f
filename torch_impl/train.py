"""The loss, the gradients by canonical name, and one training step."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from torch_impl.weights import dump_grads


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """Every canonical ``.W`` (affine and conv weights): the tensors the L2 and L1 penalties cover."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


# [rosetta:loss]
def loss_fn(model: nn.Module, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """mean_n(logsumexp(z_n) - z_n[t_n]) + 0.5 * weight_decay * sum ||W||^2 + l1 * sum |W|."""
    # Softmax with cross-entropy fused on the logits (log-softmax: no exp overflow, no log(0)).
    loss = model.last_layer(logits, t)
    weight_decay = model.config.weight_decay
    if weight_decay:
        # NOTE(framework:weight-decay): the L2 term is part of the loss (autograd adds
        # weight_decay * W to each gradient), not torch.optim's weight_decay option, so every
        # optimizer sees the same gradients and biases are never decayed.
        loss = loss + 0.5 * weight_decay * sum(w.square().sum() for w in weight_matrices(model))
    weight_decay_l1 = model.config.weight_decay_l1
    if weight_decay_l1:
        # l1 * sum |W|: autograd's gradient of abs is sign(W), 0 at W = 0, as the course's.
        loss = loss + weight_decay_l1 * sum(w.abs().sum() for w in weight_matrices(model))
    return loss
# [/rosetta:loss]


# [rosetta:gradcheck]
def loss_and_grads(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, train: bool = True, input_grad: bool = False,
) -> tuple[float, dict[str, np.ndarray], torch.Tensor | None]:
    """Loss, every gradient by canonical name and layout, and d loss / d x when ``input_grad``."""
    model.zero_grad(set_to_none=True)
    if input_grad:
        x = x.detach().requires_grad_(True)
    loss = loss_fn(model, model(x, train=train), t)
    loss.backward()
    grads = dump_grads(model)
    model.zero_grad(set_to_none=True)
    return loss.item(), grads, (x.grad if input_grad else None)
# [/rosetta:gradcheck]


# [rosetta:train-step]
def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, t: torch.Tensor,
               ) -> float:
    """Forward in train mode, backward, one optimizer update; returns the loss before the update."""
    optimizer.zero_grad(set_to_none=True)
    # [step:forward]
    logits = model(x, train=True)
    loss = loss_fn(model, logits, t)
    # [step:backward]
    loss.backward()
    # [step:update]
    optimizer.step()
    # [step:return]
    return loss.item()
# [/rosetta:train-step]
