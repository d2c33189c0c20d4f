"""The one layer torch.nn lacks for the contract: Dropout whose keep-mask can be injected.

Everything else is built in: nn.Linear (affine), nn.Conv2d, nn.MaxPool2d, nn.ReLU, nn.Sigmoid,
nn.Flatten, nn.BatchNorm1d/2d (configured in the models) and nn.CrossEntropyLoss.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn


# [rosetta:dropout]
class Dropout(nn.Module):
    """Dropout with ``mode`` "inverted" (train ``y = x * mask / (1 - ratio)``, eval ``y = x``, as
    nn.Dropout) or "course" (train ``y = x * mask``, eval ``y = x * (1 - ratio)``).

    ``mask`` (bool, activation-shaped) fixes which units are kept, so that every framework can
    drop the same units; with no mask the layer draws a fresh one per call like nn.Dropout.
    """

    def __init__(self, ratio: float = 0.5, mode: str = "inverted") -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.mode = mode
        self.mask: torch.Tensor | None = None

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Keep exactly the units where ``mask`` is True (None: random masks again)."""
        if mask is not None and mask.dtype != torch.bool:
            raise TypeError(f"a dropout mask must be bool, got {mask.dtype}")
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NOTE(framework:dropout-scaling): the course scales at test time, the frameworks in training.
        if not self.training:
            return x if self.mode == "inverted" else x * (1.0 - self.ratio)
        if self.mask is None:
            # NOTE(framework:dropout-masks): torch draws the mask itself (torch's RNG, not NumPy's).
            keep = torch.rand_like(x) >= self.ratio
        else:
            if self.mask.shape != x.shape:
                raise ValueError(f"dropout mask has shape {tuple(self.mask.shape)}, "
                                 f"the activation {tuple(x.shape)}")
            keep = self.mask
        if self.mode == "course":
            return x * keep  # y = x * mask
        return x * keep / (1.0 - self.ratio)  # y = x * mask / (1 - ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, mode={self.mode}"
# [/rosetta:dropout]


def set_dropout_masks(model: nn.Module, masks: Mapping[str, np.ndarray] | None) -> None:
    """Fix each Dropout layer's keep-mask by layer name (bool, activation-shaped); None: random."""
    layers = {n: m for n, m in model.named_children() if isinstance(m, Dropout)}
    unknown = sorted(set(masks or {}) - set(layers))
    if unknown:
        raise ValueError(f"no Dropout layer named {unknown[0]!r}; the model has: "
                         f"{', '.join(layers) or 'none'}")
    for name, layer in layers.items():
        mask = None if masks is None else masks.get(name)
        layer.set_mask(None if mask is None else torch.from_numpy(np.array(mask, dtype=bool)))
