"""Registry of the four implementations behind the one :class:`Adapter` interface."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import numpy as np

from rosetta.adapters.base import OPTIMIZER_DEFAULTS, OPTIMIZERS, Adapter, optimizer_hparams
from rosetta.weights import ModelConfig, init_params

FRAMEWORKS = ("numpy", "torch", "tf", "chainer")
PORTS = ("torch", "tf", "chainer")
# framework -> (adapter module, class, the Python module it needs, the pip extra that installs it)
_REGISTRY = {
    "numpy": ("rosetta.adapters.numpy_adapter", "NumpyAdapter", "numpy", None),
    "torch": ("rosetta.adapters.torch_adapter", "TorchAdapter", "torch", "torch"),
    "tf": ("rosetta.adapters.tf_adapter", "TFAdapter", "tensorflow", "tf"),
    "chainer": ("rosetta.adapters.chainer_adapter", "ChainerAdapter", "chainer", "chainer"),
}

__all__ = ["FRAMEWORKS", "OPTIMIZERS", "OPTIMIZER_DEFAULTS", "PORTS", "Adapter",
           "FrameworkNotInstalled", "adapter_class", "check_framework", "make_adapter",
           "optimizer_hparams"]


class FrameworkNotInstalled(ImportError):
    """The framework's package cannot be imported; the message names the extra to install."""

    def __init__(self, framework: str, cause: BaseException):
        extra = _REGISTRY[framework][3]
        super().__init__(
            f"framework {framework!r} is not installed ({type(cause).__name__}: {cause}); "
            f"install it with: pip install 'mnist-rosetta[{extra}]' (or bash .ci/setup for all four)")
        self.framework = framework
        self.extra = extra


def check_framework(framework: str) -> None:
    """Raise ValueError listing the choices when ``framework`` is unknown."""
    if framework not in _REGISTRY:
        raise ValueError(f"unknown framework {framework!r}; choose one of: {', '.join(FRAMEWORKS)}")


def adapter_class(framework: str) -> type[Adapter]:
    """The adapter class of ``framework``; FrameworkNotInstalled when its package is missing."""
    check_framework(framework)
    module_name, class_name, needs, _ = _REGISTRY[framework]
    try:
        if framework == "chainer":  # through the NumPy 2 shim (chainer_impl/compat.py)
            importlib.import_module("chainer_impl.compat").import_chainer()
        else:
            importlib.import_module(needs)
    except ImportError as exc:
        raise FrameworkNotInstalled(framework, exc) from exc
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def make_adapter(
    framework: str, config: ModelConfig, params: Mapping[str, np.ndarray] | None = None,
    dtype: str = "float32",
) -> Adapter:
    """Build ``framework``'s model from canonical ``params`` (default: ``init_params(config)``)."""
    if params is None:
        params = init_params(config, seed=0, dtype=dtype)
    params = {n: np.asarray(v, dtype=dtype) for n, v in params.items()}
    return adapter_class(framework)(config, params, dtype)
