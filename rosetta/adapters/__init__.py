"""The four implementations behind the one :class:`Adapter` interface (rows of rosetta.registry)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rosetta.adapters.base import OPTIMIZER_DEFAULTS, OPTIMIZERS, Adapter, optimizer_hparams
from rosetta.registry import FRAMEWORK_NAMES, PORTS, FrameworkNotInstalled, adapter_class, resolve_framework
from rosetta.weights import ModelConfig, init_params

FRAMEWORKS = FRAMEWORK_NAMES

__all__ = ["FRAMEWORKS", "OPTIMIZERS", "OPTIMIZER_DEFAULTS", "PORTS", "Adapter",
           "FrameworkNotInstalled", "adapter_class", "check_framework", "make_adapter",
           "optimizer_hparams"]


def check_framework(framework: str) -> str:
    """The framework's one name (aliases resolve); ValueError listing the choices when unknown."""
    return resolve_framework(framework)


def make_adapter(
    framework: str, config: ModelConfig, params: Mapping[str, np.ndarray] | None = None,
    dtype: str = "float32",
) -> Adapter:
    """Build ``framework``'s model from canonical ``params`` (default: ``init_params(config)``)."""
    if params is None:
        params = init_params(config, seed=0, dtype=dtype)
    params = {n: np.asarray(v, dtype=dtype) for n, v in params.items()}
    return adapter_class(framework)(config, params, dtype)
