"""The one layer torch.nn lacks for the contract: Dropout whose keep-mask can be injected.

Everything else is built in: nn.Linear (affine), nn.Conv2d, nn.MaxPool2d, nn.ReLU, nn.Sigmoid,
nn.Flatten, nn.BatchNorm1d/2d (configured in the models) and nn.CrossEntropyLoss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Module):
    """Dropout whose keep-mask can be injected, in either convention (``mode``):

    * "inverted" (default, nn.Dropout's): train ``y = x * mask / (1 - ratio)``, eval ``y = x``;
    * "course": train ``y = x * mask``, eval ``y = x * (1 - ratio)``.

    ``mask`` (bool, activation-shaped) fixes which units are kept, so that every framework can
    drop the same units; with no mask the layer draws a fresh one per call like nn.Dropout.
    """

    def __init__(self, ratio: float = 0.5, mode: str = "inverted") -> None:
        super().__init__()
        if mode not in ("inverted", "course"):
            raise ValueError(f"unknown dropout mode {mode!r}; choose one of: 'inverted', 'course'")
        self.ratio = float(ratio)
        self.mode = mode
        self.mask: torch.Tensor | None = None

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Keep exactly the units where ``mask`` is True (None: random masks again)."""
        if mask is not None and mask.dtype != torch.bool:
            raise TypeError(f"a dropout mask must be bool, got {mask.dtype}")
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.ratio == 0.0:
            # NOTE(framework:dropout-scaling): nn.Dropout knows only the inverted form; the
            # course's form scales at test time instead.
            return x if self.mode == "inverted" else x * (1.0 - self.ratio)
        if self.mask is None:
            if self.mode == "course":
                # NOTE(framework:dropout-masks): the keep-mask comes from torch's RNG.
                return x * (torch.rand_like(x) >= self.ratio)
            # NOTE(framework): torch draws the mask itself (from torch's RNG, not NumPy's).
            return F.dropout(x, p=self.ratio, training=True)
        if self.mask.shape != x.shape:
            raise ValueError(f"dropout mask has shape {tuple(self.mask.shape)}, "
                             f"the activation {tuple(x.shape)}")
        if self.mode == "course":
            return x * self.mask
        return x * self.mask / (1.0 - self.ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, mode={self.mode!r}"
