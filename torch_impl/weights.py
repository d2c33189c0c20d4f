"""Canonical weights <-> torch state: one explicit list of conversions, each with a shape assert.

Canonical (rosetta/weights.py): affine W (in, out), conv W (out, in, kh, kw), BatchNorm gamma, beta,
running_mean, running_var. torch-native checkpoints use state_dict names (``fc1.weight``), see
native_state_dict / load_native_state_dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

import numpy as np
import torch
from torch import nn

from rosetta.weights import is_state, param_spec

# (canonical tensor, native tensor of the same layer, transpose?) -- the whole mapping.
CONVERSIONS: list[tuple[str, str, bool]] = [
    # NOTE(framework): nn.Linear.weight is (out, in); the canonical affine W is (in, out).
    ("fc*.W", "weight", True),
    ("fc*.b", "bias", False),
    ("conv*.W", "weight", False),  # OIHW in both: no permutation
    ("conv*.b", "bias", False),
    # NOTE(framework): torch calls BatchNorm's gamma and beta ``weight`` and ``bias``.
    ("bn*.gamma", "weight", False),
    ("bn*.beta", "bias", False),
    ("bn*.running_mean", "running_mean", False),
    ("bn*.running_var", "running_var", False),
]


def native_name(canonical: str) -> tuple[str, bool]:
    """The state_dict name of a canonical tensor and whether it is stored transposed."""
    layer = canonical.split(".")[0]
    for pattern, native, transpose in CONVERSIONS:
        if fnmatchcase(canonical, pattern):
            return f"{layer}.{native}", transpose
    raise KeyError(f"no torch conversion for canonical tensor {canonical!r}")


# [rosetta:weight-loading]
def load_canonical(model: nn.Module, params: Mapping[str, np.ndarray]) -> None:
    """Copy every canonical tensor of ``param_spec(model.config)`` into the model, in place."""
    native = model.state_dict()  # tensors sharing storage with the parameters and buffers
    with torch.no_grad():
        for name in param_spec(model.config):
            target_name, transpose = native_name(name)
            target = native[target_name]
            value = torch.from_numpy(np.asarray(params[name]))
            if transpose:
                value = value.T  # (in, out) -> (out, in)
            assert target.shape == value.shape, f"{name} -> {target_name}: {tuple(value.shape)} " \
                                                f"!= {tuple(target.shape)}"
            assert target.dtype == value.dtype, f"{name} -> {target_name}: {value.dtype} != " \
                                                f"{target.dtype} (cast explicitly before loading)"
            target.copy_(value)
# [/rosetta:weight-loading]


def dump_canonical(model: nn.Module) -> dict[str, np.ndarray]:
    """Every canonical tensor (parameters and BatchNorm state) as a fresh C-contiguous array."""
    native = model.state_dict()
    out: dict[str, np.ndarray] = {}
    for name, shape in param_spec(model.config).items():
        source_name, transpose = native_name(name)
        value = native[source_name].detach()
        if transpose:
            value = value.T  # (out, in) -> (in, out)
        assert tuple(value.shape) == shape, f"{source_name} -> {name}: {tuple(value.shape)} != {shape}"
        out[name] = np.array(value.numpy(), order="C")  # a copy: later training must not alias it
    return out


def canonical_grads(model: nn.Module) -> dict[str, np.ndarray]:
    """The ``.grad`` of every trainable tensor, by canonical name and in canonical layout."""
    parameters = dict(model.named_parameters())
    out: dict[str, np.ndarray] = {}
    for name, shape in param_spec(model.config).items():
        if is_state(name):
            continue
        source_name, transpose = native_name(name)
        grad = parameters[source_name].grad
        if grad is None:
            raise RuntimeError(f"{source_name} has no gradient: run backward first")
        if transpose:
            grad = grad.T  # (out, in) -> (in, out)
        assert tuple(grad.shape) == shape, f"{source_name}.grad -> {name}: {tuple(grad.shape)} != {shape}"
        out[name] = np.array(grad.numpy(), order="C")
    return out


def native_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The torch-native checkpoint: state_dict names and layouts (incl. num_batches_tracked)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def load_native_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a torch-native checkpoint with torch's own API (strict: every name must match)."""
    model.load_state_dict(dict(state), strict=True)
