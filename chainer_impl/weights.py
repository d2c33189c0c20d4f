"""Canonical weights <-> the Chainer models, through one explicit table of conversions.

Canonical (rosetta.weights): affine W (in, out), conv W (out, in, kh, kw), BatchNorm gamma, beta,
running_mean, running_var. Each row is ``(canonical name pattern, native attribute of the link,
permutation)``: the native array is ``np.transpose(canonical, permutation)`` (None: same layout).
Loading, dumping and the gradients walk the same table, and :func:`conversions` checks that it
covers every parameter and running statistic of the model, so one missing from the table fails
loudly instead of keeping Chainer's initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from chainer_impl.compat import import_chainer
from rosetta.weights import atomic_path, is_state, param_spec

chainer = import_chainer()

# (canonical name pattern, native attribute of the same link, permutation canonical -> native)
CONVERSIONS: list[tuple[str, str, tuple[int, ...] | None]] = [
    # NOTE(framework:dense-layout): L.Linear's W is (out, in): the canonical (in, out) is transposed.
    ("fc*.W", "W", (1, 0)),
    ("fc*.b", "b", None),
    ("conv*.W", "W", None),  # OIHW both sides
    ("conv*.b", "b", None),
    ("bn*.gamma", "gamma", None),
    ("bn*.beta", "beta", None),
    # NOTE(framework:bn-running-var): Chainer names the running statistics avg_mean and avg_var
    # (persistents, not Parameters: never trained).
    ("bn*.running_mean", "avg_mean", None),
    ("bn*.running_var", "avg_var", None),
]
# Persistents that are not canonical tensors: BatchNorm's update counter.
NOT_CANONICAL = ("*/N",)


def _native_names(model: chainer.Chain) -> set[str]:
    """Every parameter and array persistent of the model, as ``link/attr`` (serializer paths)."""
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(model)
    return {k for k in serializer.target if not any(fnmatchcase(k, p) for p in NOT_CANONICAL)}


def conversions(model: chainer.Chain) -> list[tuple[str, str, str, tuple[int, ...] | None]]:
    """``(canonical name, link name, native attribute, permutation)`` for every tensor, in
    param_spec order; raises when the table and the model do not cover each other."""
    rows = []
    for name in param_spec(model.config):
        layer, _ = name.split(".")
        match = [(native, perm) for pattern, native, perm in CONVERSIONS if fnmatchcase(name, pattern)]
        if len(match) != 1:
            raise KeyError(f"Chainer conversion table has {len(match)} rows for canonical tensor {name!r}")
        native, perm = match[0]
        rows.append((name, layer, native, perm))
    native_names = _native_names(model)
    uncovered = sorted(native_names - {f"{layer}/{attr}" for _, layer, attr, _ in rows})
    if uncovered:
        raise KeyError(f"Chainer array {uncovered[0]!r} has no canonical name (uncovered: {uncovered})")
    assert len(rows) == len(native_names), (len(rows), len(native_names))
    return rows


def _native_array(model: chainer.Chain, layer: str, attr: str) -> np.ndarray:
    target = getattr(getattr(model, layer), attr)
    return target.array if isinstance(target, chainer.Variable) else target


def _to_canonical(native: np.ndarray, perm: tuple[int, ...] | None) -> np.ndarray:
    return np.ascontiguousarray(native if perm is None else np.transpose(native, np.argsort(perm)))


def load_canonical(model: chainer.Chain, params: Mapping[str, np.ndarray]) -> None:
    """Copy canonical tensors into the model's arrays in place (optimizer state stays valid)."""
    spec = param_spec(model.config)
    for name, layer, attr, perm in conversions(model):
        value = np.asarray(params[name])
        assert value.shape == spec[name], f"{name}: shape {value.shape}, expected {spec[name]}"
        native = _native_array(model, layer, attr)
        source = value if perm is None else np.transpose(value, perm)  # (in, out) -> (out, in)
        assert native.shape == source.shape, f"{name}: native {native.shape} vs {source.shape}"
        # No silent cast: the caller converts dtypes explicitly (the adapter does, at its boundary).
        assert native.dtype == source.dtype, f"{name}: dtype {source.dtype}, model is {native.dtype}"
        native[...] = source


def dump_canonical(model: chainer.Chain) -> dict[str, np.ndarray]:
    """Every canonical tensor (parameters and BatchNorm state), copied, in param_spec order."""
    spec = param_spec(model.config)
    out: dict[str, np.ndarray] = {}
    for name, layer, attr, perm in conversions(model):
        out[name] = _to_canonical(_native_array(model, layer, attr), perm).copy()
        assert out[name].shape == spec[name], f"{name}: shape {out[name].shape}, expected {spec[name]}"
    return out


def dump_grads(model: chainer.Chain) -> dict[str, np.ndarray]:
    """The gradient of every trainable tensor in canonical layout (after ``loss.backward()``)."""
    spec = param_spec(model.config)
    out: dict[str, np.ndarray] = {}
    for name, layer, attr, perm in conversions(model):
        if is_state(name):
            continue
        out[name] = _to_canonical(getattr(getattr(model, layer), attr).grad, perm).copy()
        assert out[name].shape == spec[name], f"{name}: grad shape {out[name].shape}, expected {spec[name]}"
    return out


def save_native(model: chainer.Chain, path: str | Path) -> None:
    """Write Chainer's own ``.npz`` (chainer.serializers.save_npz), atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        chainer.serializers.save_npz(str(tmp), model, compression=False)


# [rosetta:weight-loading]
def load_native(model: chainer.Chain, path: str | Path) -> None:
    """Load a Chainer ``.npz`` without pickle.

    NOTE(framework:chainer-load-npz): chainer.serializers.load_npz opens the file with pickle
    enabled; this reads the arrays with ``allow_pickle=False`` and hands them to Chainer's own
    NpzDeserializer, which then loads exactly as load_npz does.
    """
    with np.load(str(path), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    chainer.serializers.NpzDeserializer(arrays).load(model)
# [/rosetta:weight-loading]
