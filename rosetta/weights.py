"""The canonical weight contract shared by all four implementations.

Every implementation loads and dumps parameters in one convention, the NumPy reference's:

* Affine ``W`` is ``(in, out)`` (``y = x @ W + b``); ``b`` is ``(out,)``.
* Convolution ``W`` is ``(out_ch, in_ch, kh, kw)`` (OIHW); ``b`` is ``(out_ch,)``.
* Convolution features are flattened in ``(C, H, W)`` order before the first affine layer.
* BatchNorm holds ``gamma``, ``beta`` (trainable) and ``running_mean``, ``running_var`` (state).

Names are ``<layer>.<tensor>`` (``fc1.W``, ``conv1.b``, ``bn1.running_var``); the layer part is the
attribute name of that layer in every package. A shared weight file is safetensors with metadata
(format version, model name, hyper-parameters, dtype, layout). Loading and saving validate every
tensor and raise :class:`WeightFileError` naming the file and the tensor. Writes are atomic.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rosetta.configs import (
    MODEL_NAMES,
    CNNConfig,
    DeepCNNConfig,
    MLPConfig,
    ModelConfig,
    from_metadata,
    make_config,
    to_metadata,
)

FORMAT_VERSION = 1
LAYOUT = "reference: affine W (in,out); conv W (out,in,kh,kw); flatten (C,H,W)"
INIT_SCHEMES = ("he", "xavier", "lecun", "std")
DTYPES = {"float32": np.float32, "float64": np.float64}
STATE_SUFFIXES = (".running_mean", ".running_var")


__all__ = ["DTYPES", "FORMAT_VERSION", "INIT_SCHEMES", "MODEL_NAMES", "CNNConfig", "DeepCNNConfig",
           "MLPConfig", "ModelConfig", "WeightFileError", "atomic_path", "atomic_write_bytes",
           "config_from_metadata", "config_to_metadata", "init_params", "init_std", "is_state",
           "load_weights", "make_config", "param_spec", "read_metadata", "save_weights",
           "trainable_names", "validate_params"]


class WeightFileError(ValueError):
    """A weight file or parameter dict breaks the contract; the message names file and tensor."""


# Kept under the weight format's names: the metadata holds the config.
config_to_metadata = to_metadata
config_from_metadata = from_metadata


def param_spec(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every canonical tensor name and shape, in forward order (parameters and BatchNorm state)."""
    return config.param_spec()


def is_state(name: str) -> bool:
    """True for BatchNorm running statistics: stored in the file, never trained."""
    return name.endswith(STATE_SUFFIXES)


def trainable_names(config: ModelConfig) -> list[str]:
    """Names of the tensors that receive gradients, in forward order."""
    return [n for n in param_spec(config) if not is_state(n)]


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 2:  # affine (in, out)
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))  # conv (out, in, kh, kw)
    return shape[1] * receptive, shape[0] * receptive


def init_std(shape: tuple[int, ...], scheme: str, std: float = 0.01) -> float:
    """Standard deviation of a weight under an init scheme.

    he: sqrt(2 / fan_in) (ReLU); xavier (Glorot): sqrt(2 / (fan_in + fan_out));
    lecun: sqrt(1 / fan_in) (what the course calls "Xavier"); std: the fixed ``std``.
    """
    fan_in, fan_out = _fans(shape)
    if scheme == "he":
        return float(np.sqrt(2.0 / fan_in))
    if scheme == "xavier":
        return float(np.sqrt(2.0 / (fan_in + fan_out)))
    if scheme == "lecun":
        return float(np.sqrt(1.0 / fan_in))
    if scheme == "std":
        return float(std)
    raise ValueError(f"unknown init scheme {scheme!r}; choose one of: {', '.join(INIT_SCHEMES)}")


def init_params(
    config: ModelConfig | str,
    seed: int = 0,
    scheme: str = "he",
    dtype: type | str = np.float32,
    std: float = 0.01,
) -> dict[str, np.ndarray]:
    """Deterministic canonical weights, bit-identical on every machine.

    Weights are drawn in float64 from PCG64 (``np.random.default_rng([seed, i])`` for the i-th
    tensor of :func:`param_spec`, so adding a layer never shifts another's values), scaled by the
    scheme's std, then cast to ``dtype``. Biases and beta are 0, gamma 1, running mean 0, var 1.
    """
    if isinstance(config, str):
        config = make_config(config)
    np_dtype = np.dtype(dtype)
    params: dict[str, np.ndarray] = {}
    for i, (name, shape) in enumerate(param_spec(config).items()):
        if name.endswith(".W"):
            rng = np.random.default_rng([seed, i])
            value = rng.standard_normal(shape) * init_std(shape, scheme, std)
        elif name.endswith((".gamma", ".running_var")):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        params[name] = value.astype(np_dtype)
    return params


def validate_params(
    params: Mapping[str, np.ndarray], config: ModelConfig, source: str = "parameters",
    dtype: type | str | None = None,
) -> None:
    """Check names, shapes, dtype and finiteness against the contract; raise WeightFileError."""
    spec = param_spec(config)
    missing = [n for n in spec if n not in params]
    unexpected = [n for n in params if n not in spec]
    if missing:
        raise WeightFileError(f"{source}: missing tensor {missing[0]!r} for model {config.name!r}"
                              f" (missing: {', '.join(missing)})")
    if unexpected:
        raise WeightFileError(f"{source}: unexpected tensor {unexpected[0]!r} for model "
                              f"{config.name!r} (expected: {', '.join(spec)})")
    first = next(iter(spec))
    want = np.dtype(dtype) if dtype is not None else np.asarray(params[first]).dtype
    for name, shape in spec.items():
        value = np.asarray(params[name])
        if value.shape != shape:
            raise WeightFileError(f"{source}: tensor {name!r} has shape {value.shape}, expected {shape}"
                                  f" for model {config.name!r}")
        if value.dtype not in (np.float32, np.float64):
            raise WeightFileError(f"{source}: tensor {name!r} has dtype {value.dtype}, expected "
                                  "float32 or float64")
        if value.dtype != want:
            like = "" if dtype is not None else f" like {first!r}"
            raise WeightFileError(f"{source}: tensor {name!r} has dtype {value.dtype}, expected "
                                  f"{want}{like} (one dtype for all tensors)")
        if not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise WeightFileError(f"{source}: tensor {name!r} has {bad} non-finite value(s)")


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temp path in ``path``'s folder (ending in ``suffix``, for writers that pick the format
    by extension), fsynced and renamed onto ``path`` when the block succeeds, removed otherwise:
    an interrupted write never leaves a half-written ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file to write", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_weights(
    path: str | os.PathLike[str], params: Mapping[str, np.ndarray], config: ModelConfig,
    extra_metadata: Mapping[str, str] | None = None,
) -> None:
    """Validate ``params`` against ``config`` and write them atomically as safetensors."""
    from safetensors.numpy import save

    validate_params(params, config, source=f"{os.fspath(path)} (not written)")
    spec = param_spec(config)
    dtype = str(np.asarray(params[next(iter(spec))]).dtype)
    metadata = {
        "format": "mnist-rosetta",
        "format_version": str(FORMAT_VERSION),
        "model": config.name,
        "hparams": json.dumps(config_to_metadata(config), sort_keys=True),
        "dtype": dtype,
        "layout": LAYOUT,
        **dict(extra_metadata or {}),
    }
    tensors = {n: np.ascontiguousarray(params[n]) for n in spec}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata header of a weight file, validated for format and version."""
    path = Path(path)
    if path.is_dir():
        raise WeightFileError(f"{path}: is a folder, not a weight file")
    if not path.is_file():
        raise WeightFileError(f"{path}: no such weight file")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WeightFileError(f"{path}: not a safetensors weight file ({exc})") from None
    meta = header.get("__metadata__") or {}
    if meta.get("format") != "mnist-rosetta":
        raise WeightFileError(f"{path}: not an mnist-rosetta weight file (metadata 'format' is "
                              f"{meta.get('format')!r})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise WeightFileError(f"{path}: format_version {meta.get('format_version')!r} is not "
                              f"supported (this version reads {FORMAT_VERSION})")
    if meta.get("model") not in MODEL_NAMES:
        raise WeightFileError(f"{path}: unknown model {meta.get('model')!r} in metadata")
    return meta


def load_weights(
    path: str | os.PathLike[str], model: str | None = None, dtype: type | str | None = None,
) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """Read and validate a weight file; return ``(params, config)``.

    ``model`` ("mlp"/"cnn"), when given, must match the file's model. ``dtype``, when given,
    casts the tensors after validation (float32 <-> float64).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    meta = read_metadata(path)
    if model is not None and meta["model"] != model:
        raise WeightFileError(f"{path}: holds weights for model {meta['model']!r}, not {model!r}")
    try:
        config = config_from_metadata(meta["model"], json.loads(meta.get("hparams", "{}")))
    except (TypeError, ValueError) as exc:
        raise WeightFileError(f"{path}: bad hyper-parameters in metadata ({exc})") from None
    try:
        params = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightFileError(f"{path}: cannot read tensors ({exc})") from None
    validate_params(params, config, source=os.fspath(path))
    spec = param_spec(config)
    if dtype is not None:
        params = {n: params[n].astype(dtype) for n in spec}
    return {n: params[n] for n in spec}, config
