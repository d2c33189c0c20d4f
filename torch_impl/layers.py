"""The one layer torch.nn lacks for the contract: Dropout whose keep-mask can be injected.

Everything else is built in: nn.Linear (affine), nn.Conv2d, nn.MaxPool2d, nn.ReLU, nn.Sigmoid,
nn.Flatten, nn.BatchNorm1d/2d (configured in the models) and nn.CrossEntropyLoss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Module):
    """Inverted dropout: train ``y = x * mask / (1 - ratio)``, eval ``y = x``.

    ``mask`` (bool, activation-shaped) fixes which units are kept, so that every framework can
    drop the same units; with no mask the layer draws a fresh one per call like nn.Dropout.
    """

    def __init__(self, ratio: float = 0.5) -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.mask: torch.Tensor | None = None

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Keep exactly the units where ``mask`` is True (None: random masks again)."""
        if mask is not None and mask.dtype != torch.bool:
            raise TypeError(f"a dropout mask must be bool, got {mask.dtype}")
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.ratio == 0.0:
            return x
        if self.mask is None:
            # NOTE(framework): torch draws the mask itself (from torch's RNG, not NumPy's).
            return F.dropout(x, p=self.ratio, training=True)
        if self.mask.shape != x.shape:
            raise ValueError(f"dropout mask has shape {tuple(self.mask.shape)}, "
                             f"the activation {tuple(x.shape)}")
        return x * self.mask / (1.0 - self.ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"
