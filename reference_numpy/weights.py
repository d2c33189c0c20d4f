"""The reference's side of the weight contract. The reference layout IS the canonical layout
(affine W (in, out), conv W (FN, C, KH, KW), flatten in (C, H, W) order), so every conversion
is the identity; the list below still names each tensor's home and asserts its shape, like the
ports' lists that transpose or permute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rosetta.weights import load_weights, param_spec, save_weights, validate_params


def conversions(model: Any) -> list[tuple[str, str, str, tuple[int, ...]]]:
    """``(canonical name, layer attribute, tensor attribute, shape)`` for every tensor, in
    ``param_spec`` order. Identity: the canonical name is literally ``layer.tensor``."""
    rows = []
    for name, shape in param_spec(model.config).items():
        layer, tensor = name.split(".")
        rows.append((name, layer, tensor, shape))
    return rows


# [rosetta:weight-loading]
def load_canonical(model: Any, params: Mapping[str, np.ndarray]) -> None:
    """Copy canonical arrays into the model, in place (the layers and optimizer state keep their
    arrays), cast to the model's dtype. Names, shapes and finiteness are validated first."""
    validate_params(params, model.config, source="load_canonical")
    for name, layer, tensor, shape in conversions(model):
        target = getattr(getattr(model, layer), tensor)
        value = np.asarray(params[name])
        assert target.shape == value.shape == shape, (name, target.shape, value.shape, shape)
        target[...] = value  # identity conversion; a float64 file into a float32 model rounds here
# [/rosetta:weight-loading]


def dump_canonical(model: Any) -> dict[str, np.ndarray]:
    """Copies of every canonical tensor (parameters and BatchNorm running statistics)."""
    out: dict[str, np.ndarray] = {}
    for name, layer, tensor, shape in conversions(model):
        value = getattr(getattr(model, layer), tensor)
        assert value.shape == shape, (name, value.shape, shape)
        out[name] = value.copy()
    return out


def save(model: Any, path: str | os.PathLike[str], extra_metadata: Mapping[str, str] | None = None) -> None:
    """Write the model's canonical tensors and config as a shared safetensors weight file."""
    save_weights(path, dump_canonical(model), model.config, extra_metadata)


def load(path: str | os.PathLike[str], dtype: str = "float32", model: str | None = None) -> Any:
    """Build the file's model (MLP, CNN, DeepCNN) from a shared weight file (any framework wrote it)."""
    import reference_numpy  # the package exports every model class under the config's class_name

    params, config = load_weights(path, model=model, dtype=dtype)
    cls = getattr(reference_numpy, config.class_name)
    return cls(config, params=params, dtype=dtype)
