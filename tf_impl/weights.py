"""Canonical weights <-> Keras variables, through one explicit list of conversions.

Each entry is ``(canonical name, native variable, permutation)``: the native tensor is
``np.transpose(canonical, permutation)`` (None: same layout). Loading and dumping walk the same
list, so the round trip canonical -> native -> canonical is bit-exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from rosetta.weights import param_spec

Conversion = tuple[str, keras.Variable, tuple[int, ...] | None]

# Conv kernel: canonical OIHW (out, in, kh, kw) -> Keras HWIO (kh, kw, in, out).
OIHW_TO_HWIO = (2, 3, 1, 0)


def _bn(model: keras.Model, layer: str) -> list[Conversion]:
    bn = getattr(model, layer)
    return [
        (f"{layer}.gamma", bn.gamma, None),
        (f"{layer}.beta", bn.beta, None),
        (f"{layer}.running_mean", bn.running_mean, None),
        (f"{layer}.running_var", bn.running_var, None),
    ]


def conversions(model: keras.Model) -> list[Conversion]:
    """Every canonical tensor of ``model`` with its Keras variable, in ``param_spec`` order.

    Walks the config's layers: every ``conv*`` (kernel permuted), ``bn*`` and ``fc*`` layer.
    """
    out: list[Conversion] = []
    for name in model.config.layer_names():
        kind = name.rstrip("0123456789")  # conv3 -> conv, fc1 -> fc, bn2 -> bn
        layer = getattr(model, name, None)
        if kind == "conv":
            # NOTE(framework): Keras conv kernels are HWIO; the canonical layout is OIHW.
            out += [(f"{name}.W", layer.kernel, OIHW_TO_HWIO), (f"{name}.b", layer.bias, None)]
        elif kind == "fc":
            # Dense kernels are (in, out), as canonical; the first fc's rows stay in (C, H, W)
            # order because the CNNs transpose NHWC -> NCHW before flatten.
            out += [(f"{name}.W", layer.kernel, None), (f"{name}.b", layer.bias, None)]
        elif kind == "bn":
            out += _bn(model, name)
    return out


# [rosetta:weight-loading]
def load_canonical(model: keras.Model, params: Mapping[str, np.ndarray]) -> None:
    """Assign every canonical tensor (parameters and BatchNorm state) to its Keras variable."""
    spec = param_spec(model.config)
    table = conversions(model)
    assert [n for n, _, _ in table] == list(spec), "conversion list out of step with param_spec"
    for name, variable, perm in table:
        value = np.asarray(params[name])
        assert value.shape == spec[name], f"{name}: canonical shape {value.shape} != {spec[name]}"
        assert value.dtype == variable.dtype, f"{name}: dtype {value.dtype} != model {variable.dtype}"
        native = value if perm is None else np.transpose(value, perm)
        assert native.shape == tuple(variable.shape), f"{name}: {native.shape} != {variable.shape}"
        variable.assign(native)
# [/rosetta:weight-loading]


def dump_canonical(model: keras.Model) -> dict[str, np.ndarray]:
    """Every canonical tensor of ``model`` as NumPy, in ``param_spec`` order."""
    spec = param_spec(model.config)
    params: dict[str, np.ndarray] = {}
    for name, variable, perm in conversions(model):
        native = variable.numpy()
        value = native if perm is None else np.transpose(native, np.argsort(perm))
        assert value.shape == spec[name], f"{name}: {value.shape} != {spec[name]}"
        params[name] = np.ascontiguousarray(value)
    return params


def to_canonical(name: str, native: np.ndarray, model: keras.Model) -> np.ndarray:
    """A native-layout array of tensor ``name`` (a value or its gradient) in canonical layout."""
    perm = {n: p for n, _, p in conversions(model)}[name]
    return np.ascontiguousarray(native if perm is None else np.transpose(native, np.argsort(perm)))
