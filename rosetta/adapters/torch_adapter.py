"""The PyTorch port behind the canonical Adapter interface (arrays cross as canonical NumPy)."""

from __future__ import annotations

import numpy as np
import torch

from rosetta.adapters.base import Adapter


class TorchAdapter(Adapter):
    framework = "torch"

    # Canonical layout is torch's (MLP (N, 784), CNNs NCHW): only the dtype may change.
    def _input(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=self.dtype))

    def _labels(self, t: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64))

    def _output(self, a: torch.Tensor) -> np.ndarray:
        return np.array(a.detach().numpy(), order="C")

    def _activations(self, x: torch.Tensor, train: bool) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.model(x, train=train, return_activations=True)[1]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x, train=False)
