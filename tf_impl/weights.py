"""Canonical weights <-> Keras variables, through one explicit table of conversions.

Each row is ``(canonical name pattern, native variable of the layer, permutation)``: the native
tensor is ``np.transpose(canonical, permutation)`` (None: same layout). Loading, dumping and the
gradients walk the same table, and :func:`conversions` checks that it covers every variable of the
model, so a variable missing from the table fails loudly instead of keeping Keras's initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import keras
import numpy as np

from rosetta.weights import atomic_path, is_state, param_spec

# NOTE(framework:conv-layout): Keras conv kernels are HWIO (kh, kw, in, out); canonical is OIHW.
OIHW_TO_HWIO = (2, 3, 1, 0)

# (canonical name pattern, native variable of the same layer, permutation canonical -> native)
CONVERSIONS: list[tuple[str, str, tuple[int, ...] | None]] = [
    # Dense kernels are (in, out), as canonical. fc1's rows stay in (C, H, W) order because the
    # CNNs transpose NHWC -> NCHW before flatten (see flatten-order in the porting guide).
    ("fc*.W", "kernel", None),
    ("fc*.b", "bias", None),
    ("conv*.W", "kernel", OIHW_TO_HWIO),
    ("conv*.b", "bias", None),
    ("bn*.gamma", "gamma", None),
    ("bn*.beta", "beta", None),
    ("bn*.running_mean", "running_mean", None),
    ("bn*.running_var", "running_var", None),
]

Conversion = tuple[str, keras.Variable, tuple[int, ...] | None]


def conversions(model: keras.Model) -> list[Conversion]:
    """``(canonical name, Keras variable, permutation)`` for every tensor, in param_spec order;
    raises when the table and the model's variables do not cover each other."""
    rows: list[Conversion] = []
    for name in param_spec(model.config):
        layer, _ = name.split(".")
        match = [(native, perm) for pattern, native, perm in CONVERSIONS if fnmatchcase(name, pattern)]
        if len(match) != 1:
            raise KeyError(f"Keras conversion table has {len(match)} rows for canonical tensor {name!r}")
        native, perm = match[0]
        rows.append((name, getattr(getattr(model, layer), native), perm))
    covered = {id(v) for _, v, _ in rows}
    uncovered = [v.path for v in model.weights if id(v) not in covered]
    if uncovered:
        raise KeyError(f"Keras variable {uncovered[0]!r} has no canonical name (uncovered: {uncovered})")
    assert len(rows) == len(model.weights), (len(rows), len(model.weights))
    return rows


def _to_canonical(native: np.ndarray, perm: tuple[int, ...] | None) -> np.ndarray:
    return np.ascontiguousarray(native if perm is None else np.transpose(native, np.argsort(perm)))


def load_canonical(model: keras.Model, params: Mapping[str, np.ndarray]) -> None:
    """Assign every canonical tensor (parameters and BatchNorm state) to its Keras variable."""
    spec = param_spec(model.config)
    for name, variable, perm in conversions(model):
        value = np.asarray(params[name])
        assert value.shape == spec[name], f"{name}: canonical shape {value.shape} != {spec[name]}"
        assert value.dtype == variable.dtype, f"{name}: dtype {value.dtype} != model {variable.dtype}"
        native = value if perm is None else np.transpose(value, perm)  # OIHW -> HWIO for conv W
        assert native.shape == tuple(variable.shape), f"{name}: {native.shape} != {variable.shape}"
        variable.assign(native)


def dump_canonical(model: keras.Model) -> dict[str, np.ndarray]:
    """Every canonical tensor of ``model`` as NumPy, in ``param_spec`` order."""
    spec = param_spec(model.config)
    params: dict[str, np.ndarray] = {}
    for name, variable, perm in conversions(model):
        params[name] = _to_canonical(variable.numpy(), perm)  # HWIO -> OIHW for conv W
        assert params[name].shape == spec[name], f"{name}: {params[name].shape} != {spec[name]}"
    return params


def trainable_variables(model: keras.Model) -> list[keras.Variable]:
    """The trainable variables in canonical (param_spec) order: what the gradient tape watches."""
    return [v for name, v, _ in conversions(model) if not is_state(name)]


def weight_matrices(model: keras.Model) -> list[keras.Variable]:
    """Every canonical ``.W`` (affine and conv kernels): the tensors the L2 and L1 penalties cover."""
    return [v for name, v, _ in conversions(model) if name.endswith(".W")]


def dump_grads(model: keras.Model, grads: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Gradients of :func:`trainable_variables` (Keras keeps none itself) by canonical name and layout."""
    spec = param_spec(model.config)
    rows = [(name, perm) for name, _, perm in conversions(model) if not is_state(name)]
    out = {name: _to_canonical(np.asarray(g), perm) for (name, perm), g in zip(rows, grads, strict=True)}
    for name, value in out.items():
        assert value.shape == spec[name], f"{name}.grad: {value.shape} != {spec[name]}"
    return out


def save_native(model: keras.Model, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write Keras's own ``.weights.h5`` (model.save_weights), atomically; ``metadata`` goes into
    an HDF5 root attribute ``mnist_rosetta`` that ``load_weights`` never reads."""
    import json

    import h5py

    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(str(tmp))
        if metadata:
            with h5py.File(tmp, "a") as f:
                f.attrs["mnist_rosetta"] = json.dumps(dict(metadata), sort_keys=True)


# [rosetta:weight-loading]
def load_native(model: keras.Model, path: str | Path) -> None:
    """Load a ``.weights.h5`` with Keras's own ``model.load_weights``."""
    model.load_weights(str(path))
# [/rosetta:weight-loading]
