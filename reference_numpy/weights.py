"""The reference's side of the weight contract. The reference layout IS the canonical layout
(affine W (in, out), conv W (FN, C, KH, KW), flatten in (C, H, W) order), so every conversion
is the identity; the list below still names each tensor's home and asserts its shape, like the
ports' lists that transpose or permute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from rosetta.weights import load_weights, param_spec, save_weights, validate_params

# (canonical name pattern, native attribute of the layer, permutation canonical -> native): the
# reference layout IS the canonical one, so no row permutes; the table still says where each
# tensor lives, like the ports' tables that transpose or permute.
CONVERSIONS: list[tuple[str, str, tuple[int, ...] | None]] = [
    ("fc*.W", "W", None),  # (in, out)
    ("fc*.b", "b", None),
    ("conv*.W", "W", None),  # (FN, C, KH, KW)
    ("conv*.b", "b", None),
    ("bn*.gamma", "gamma", None),
    ("bn*.beta", "beta", None),
    ("bn*.running_mean", "running_mean", None),
    ("bn*.running_var", "running_var", None),
]


def conversions(model: Any) -> list[tuple[str, str, str, tuple[int, ...] | None]]:
    """``(canonical name, layer attribute, tensor attribute, permutation)`` for every tensor, in
    ``param_spec`` order; raises when the table and the model's ``params`` do not cover each other."""
    rows = []
    for name in param_spec(model.config):
        layer, _ = name.split(".")
        match = [(native, perm) for pattern, native, perm in CONVERSIONS if fnmatchcase(name, pattern)]
        if len(match) != 1:
            raise KeyError(f"reference conversion table has {len(match)} rows for canonical tensor {name!r}")
        native, perm = match[0]
        rows.append((name, layer, native, perm))
    uncovered = sorted(set(model.params) - {n for n, _, _, _ in rows})
    if uncovered:
        raise KeyError(f"reference parameter {uncovered[0]!r} has no canonical name")
    return rows


def load_canonical(model: Any, params: Mapping[str, np.ndarray]) -> None:
    """Copy canonical arrays into the model, in place (the layers and optimizer state keep their
    arrays). Names, shapes and finiteness are validated first; the dtype must be the model's."""
    validate_params(params, model.config, source="load_canonical")
    for name, layer, attr, _ in conversions(model):
        target = getattr(getattr(model, layer), attr)
        value = np.asarray(params[name])
        assert target.shape == value.shape, f"{name}: shape {value.shape} != {target.shape}"
        assert target.dtype == value.dtype, f"{name}: dtype {value.dtype} != model {target.dtype} " \
                                            "(cast explicitly before loading)"
        target[...] = value  # identity conversion


def dump_canonical(model: Any) -> dict[str, np.ndarray]:
    """Copies of every canonical tensor (parameters and BatchNorm running statistics)."""
    spec = param_spec(model.config)
    out: dict[str, np.ndarray] = {}
    for name, layer, attr, _ in conversions(model):
        out[name] = getattr(getattr(model, layer), attr).copy()
        assert out[name].shape == spec[name], f"{name}: {out[name].shape} != {spec[name]}"
    return out


def save_native(model: Any, path: str | os.PathLike[str]) -> None:
    """The reference's native format is the canonical weight file itself."""
    save_weights(path, dump_canonical(model), model.config)


# [rosetta:weight-loading]
def load_native(model: Any, path: str | os.PathLike[str]) -> None:
    """Load a canonical weight file into ``model`` (its config must match the file's)."""
    params, config = load_weights(path, model=model.config.name, dtype=model.dtype)
    if config != model.config:
        raise ValueError(f"{path}: holds {config.describe()}, the model is {model.config.describe()}")
    load_canonical(model, params)
# [/rosetta:weight-loading]
