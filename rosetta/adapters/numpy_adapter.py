"""The NumPy reference behind the canonical Adapter interface (its layout is the canonical one)."""

from __future__ import annotations

import numpy as np

from rosetta.adapters.base import Adapter


class NumpyAdapter(Adapter):
    framework = "numpy"

    def _output(self, a: np.ndarray) -> np.ndarray:
        # Copies: a later forward must not change what a caller holds (flatten is a view).
        return np.array(a)
