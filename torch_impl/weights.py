"""Canonical weights <-> torch state: one explicit table of conversions, each with a shape assert.

Canonical (rosetta/weights.py): affine W (in, out), conv W (out, in, kh, kw), BatchNorm gamma, beta,
running_mean, running_var. The native tensor is ``canonical.permute(permutation)`` (None: the same
layout). Loading, dumping and the gradients walk the same table, and :func:`conversions` checks that
it covers every tensor of the model's state_dict, so a tensor missing from the table fails loudly
instead of keeping torch's initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rosetta.weights import atomic_path, is_state, param_spec

# (canonical name pattern, native tensor of the same layer, permutation canonical -> native)
CONVERSIONS: list[tuple[str, str, tuple[int, ...] | None]] = [
    # NOTE(framework:dense-layout): nn.Linear.weight is (out, in); the canonical affine W is (in, out).
    ("fc*.W", "weight", (1, 0)),
    ("fc*.b", "bias", None),
    ("conv*.W", "weight", None),  # OIHW in both: no permutation
    ("conv*.b", "bias", None),
    # NOTE(framework:bn-momentum): torch calls BatchNorm's gamma and beta ``weight`` and ``bias``.
    ("bn*.gamma", "weight", None),
    ("bn*.beta", "bias", None),
    ("bn*.running_mean", "running_mean", None),
    ("bn*.running_var", "running_var", None),
]
# state_dict entries that are not canonical tensors: BatchNorm's step counter.
NOT_CANONICAL = ("*.num_batches_tracked",)


def conversions(model: nn.Module) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """``(canonical name, state_dict name, permutation)`` for every tensor, in param_spec order;
    raises when the table and the model's state_dict do not cover each other."""
    rows = []
    for name in param_spec(model.config):
        layer, _ = name.split(".")
        match = [(native, perm) for pattern, native, perm in CONVERSIONS if fnmatchcase(name, pattern)]
        if len(match) != 1:
            raise KeyError(f"torch conversion table has {len(match)} rows for canonical tensor {name!r}")
        native, perm = match[0]
        rows.append((name, f"{layer}.{native}", perm))
    native_names = {k for k in model.state_dict() if not any(fnmatchcase(k, p) for p in NOT_CANONICAL)}
    uncovered = sorted(native_names - {n for _, n, _ in rows})
    if uncovered:
        raise KeyError(f"torch tensor {uncovered[0]!r} has no canonical name (uncovered: {uncovered})")
    assert len(rows) == len(native_names), (len(rows), len(native_names))
    return rows


def _to_native(value: torch.Tensor, perm: tuple[int, ...] | None) -> torch.Tensor:
    return value if perm is None else value.permute(perm)


def _to_canonical(value: torch.Tensor, perm: tuple[int, ...] | None) -> np.ndarray:
    value = value if perm is None else value.permute(tuple(np.argsort(perm)))
    return np.array(value.detach().numpy(), order="C")  # a copy: later training must not alias it


def load_canonical(model: nn.Module, params: Mapping[str, np.ndarray]) -> None:
    """Copy every canonical tensor of ``param_spec(model.config)`` into the model, in place."""
    native = model.state_dict()  # tensors sharing storage with the parameters and buffers
    spec = param_spec(model.config)
    with torch.no_grad():
        for name, native_name, perm in conversions(model):
            target = native[native_name]
            value = torch.from_numpy(np.asarray(params[name]))
            assert tuple(value.shape) == spec[name], f"{name}: shape {tuple(value.shape)} != {spec[name]}"
            value = _to_native(value, perm)  # (in, out) -> (out, in) for affine W
            assert target.shape == value.shape, f"{name} -> {native_name}: {tuple(value.shape)} " \
                                                f"!= {tuple(target.shape)}"
            assert target.dtype == value.dtype, f"{name} -> {native_name}: {value.dtype} != " \
                                                f"{target.dtype} (cast explicitly before loading)"
            target.copy_(value)


def dump_canonical(model: nn.Module) -> dict[str, np.ndarray]:
    """Every canonical tensor (parameters and BatchNorm state) as a fresh C-contiguous array."""
    native = model.state_dict()
    spec = param_spec(model.config)
    out: dict[str, np.ndarray] = {}
    for name, native_name, perm in conversions(model):
        out[name] = _to_canonical(native[native_name], perm)  # (out, in) -> (in, out) for affine W
        assert out[name].shape == spec[name], f"{native_name} -> {name}: {out[name].shape} != {spec[name]}"
    return out


def dump_grads(model: nn.Module) -> dict[str, np.ndarray]:
    """The ``.grad`` of every trainable tensor, by canonical name and in canonical layout."""
    parameters = dict(model.named_parameters())
    spec = param_spec(model.config)
    out: dict[str, np.ndarray] = {}
    for name, native_name, perm in conversions(model):
        if is_state(name):
            continue
        grad = parameters[native_name].grad
        if grad is None:
            raise RuntimeError(f"{native_name} has no gradient: run backward first")
        out[name] = _to_canonical(grad, perm)
        assert out[name].shape == spec[name], f"{native_name}.grad -> {name}: {out[name].shape}"
    return out


def native_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The torch-native checkpoint: state_dict names and layouts (incl. num_batches_tracked)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def save_native(model: nn.Module, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write the torch-native checkpoint (the state_dict) as safetensors, atomically: no pickle.
    ``metadata`` goes into the safetensors header, where ``load_state_dict`` never looks."""
    from safetensors.torch import save_file

    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(native_state_dict(model), str(tmp), metadata=dict(metadata) if metadata else None)


# [rosetta:weight-loading]
def load_native(model: nn.Module, path: str | Path) -> None:
    """Load a torch-native safetensors state_dict with torch's own API (strict: every name must match)."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)), strict=True)
# [/rosetta:weight-loading]
