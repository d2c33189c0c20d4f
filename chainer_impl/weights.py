"""Canonical weights <-> the Chainer models, through one explicit list of conversions.

Canonical (rosetta.weights): affine W (in, out), conv W (out, in, kh, kw), BatchNorm gamma, beta,
running_mean, running_var. Chainer: L.Linear W (out, in) -> transposed; L.Convolution2D W OIHW ->
as is; L.BatchNormalization gamma, beta, avg_mean, avg_var.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chainer_impl.compat import import_chainer
from rosetta.weights import ModelConfig, is_state, param_spec

chainer = import_chainer()

# canonical tensor -> (native attribute of the link, transpose?). The link is the layer part of
# the canonical name (fc1.W lives in model.fc1), so this table is the whole conversion.
# NOTE(framework): L.Linear's W is (out, in): the canonical (in, out) is transposed.
# NOTE(framework): Chainer names the BatchNorm running statistics avg_mean and avg_var.
CONVERSIONS: dict[str, tuple[str, bool]] = {
    "fc.W": ("W", True),  # (in, out) <-> (out, in)
    "fc.b": ("b", False),  # (out,)
    "conv.W": ("W", False),  # OIHW both sides
    "conv.b": ("b", False),  # (out_ch,)
    "bn.gamma": ("gamma", False),
    "bn.beta": ("beta", False),
    "bn.running_mean": ("avg_mean", False),  # persistent, not a Parameter: never trained
    "bn.running_var": ("avg_var", False),
}


def conversions(config: ModelConfig) -> list[tuple[str, str, str, bool]]:
    """``(canonical name, link name, native attribute, transpose)`` for every tensor, in order."""
    rows = []
    for name in param_spec(config):
        layer, tensor = name.split(".")
        kind = layer.rstrip("0123456789")  # fc1 -> fc, conv1 -> conv, bn2 -> bn
        attr, transpose = CONVERSIONS[f"{kind}.{tensor}"]
        rows.append((name, layer, attr, transpose))
    return rows


def _native_array(model: chainer.Chain, layer: str, attr: str) -> np.ndarray:
    target = getattr(model[layer], attr)
    return target.array if isinstance(target, chainer.Variable) else target


# [rosetta:weight-loading]
def load_canonical(model: chainer.Chain, params: Mapping[str, np.ndarray]) -> None:
    """Copy canonical tensors into the model's arrays in place (optimizer state stays valid)."""
    spec = param_spec(model.config)
    for name, layer, attr, transpose in conversions(model.config):
        value = np.asarray(params[name])
        assert value.shape == spec[name], f"{name}: shape {value.shape}, expected {spec[name]}"
        native = _native_array(model, layer, attr)
        source = value.T if transpose else value
        assert native.shape == source.shape, f"{name}: native {native.shape} vs {source.shape}"
        # No silent cast: the caller converts dtypes explicitly (the adapter does, at its boundary).
        assert native.dtype == source.dtype, f"{name}: dtype {source.dtype}, model is {native.dtype}"
        native[...] = source
# [/rosetta:weight-loading]


def dump_canonical(model: chainer.Chain) -> dict[str, np.ndarray]:
    """Every canonical tensor (parameters and BatchNorm state), copied, in param_spec order."""
    spec = param_spec(model.config)
    out: dict[str, np.ndarray] = {}
    for name, layer, attr, transpose in conversions(model.config):
        native = _native_array(model, layer, attr)
        value = np.ascontiguousarray(native.T) if transpose else native.copy()
        assert value.shape == spec[name], f"{name}: shape {value.shape}, expected {spec[name]}"
        out[name] = value
    return out


def dump_canonical_grads(model: chainer.Chain) -> dict[str, np.ndarray]:
    """The gradient of every trainable tensor in canonical layout (after ``loss.backward()``)."""
    spec = param_spec(model.config)
    out: dict[str, np.ndarray] = {}
    for name, layer, attr, transpose in conversions(model.config):
        if is_state(name):
            continue
        grad = getattr(model[layer], attr).grad
        value = np.ascontiguousarray(grad.T) if transpose else grad.copy()
        assert value.shape == spec[name], f"{name}: grad shape {value.shape}, expected {spec[name]}"
        out[name] = value
    return out
