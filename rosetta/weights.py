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
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
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
           "check_writable", "config_from_file", "config_from_metadata", "json_loads",
           "read_safetensors_header", "config_to_metadata", "init_params", "init_std", "is_state",
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
    _check_tensor_names(source, params, spec, config, ", ".join)
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


def check_writable(path: str | os.PathLike[str], option: str = "output") -> None:
    """Raise OSError (naming ``option`` and ``path``) unless a file can be written at ``path``: not
    a folder, no parent that is a file, and the nearest existing folder writable. Commands call it
    for every output before any work starts; nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{option} is a folder, not a file to write", str(path))
    folder = path.parent
    while not folder.exists():
        if folder.is_symlink():  # a dangling link: the folder can never be created
            raise NotADirectoryError(errno.ENOTDIR, f"{option}: {folder} is a broken link", str(path))
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{option}: {folder} is a file, not a folder", str(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{option}: folder {folder} is not writable", str(path))


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temp path in ``path``'s folder (ending in ``suffix``, for writers that pick the format
    by extension), fsynced and renamed onto ``path`` when the block succeeds, removed otherwise:
    an interrupted write never leaves a half-written ``path``. The file gets the usual permissions
    (0666 less the umask) whatever the writer inside the block does; an OSError names ``path``,
    never the temp file."""
    path = Path(path)
    check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        # Writers may replace the temp file (safetensors does, with mode 0600): set the mode last.
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# Metadata keys the format owns: extra_metadata cannot replace them.
RESERVED_METADATA = ("format", "format_version", "model", "hparams", "dtype", "layout")


def save_weights(
    path: str | os.PathLike[str], params: Mapping[str, np.ndarray], config: ModelConfig,
    extra_metadata: Mapping[str, str] | None = None,
) -> None:
    """Validate ``params`` against ``config`` and write them atomically as safetensors.
    ``extra_metadata`` adds string entries (``epoch``, ``framework``, ...) besides the format's own
    (:data:`RESERVED_METADATA`, which it cannot replace)."""
    from safetensors.numpy import save

    extra = dict(extra_metadata or {})
    clash = [k for k in extra if k in RESERVED_METADATA]
    if clash:
        raise ValueError(f"extra_metadata cannot set {clash[0]!r}: the format owns "
                         f"{', '.join(RESERVED_METADATA)}")
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"extra_metadata entries must be strings, got {bad[0]!r}: {extra[bad[0]]!r}")
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
        **extra,
    }
    tensors = {n: np.ascontiguousarray(params[n]) for n in spec}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


# --- reading untrusted files --------------------------------------------------------------------
# Bounds for what a file may declare, far above what any model here needs (the CNN has 0.4 M
# parameters, its header is 1 kB), so that a crafted file fails with a message instead of
# allocating what it claims.
MAX_HEADER_BYTES = 1 << 20
MAX_TENSORS = 1000
MAX_PARAMETERS = 50_000_000
# safetensors dtype names -> NumPy names, for messages (the canonical file holds F32 or F64 only).
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                      "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64",
                      "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool"}
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
            "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def json_loads(text: str | bytes, source: str, what: str) -> object:
    """``json.loads`` for untrusted text: any failure (invalid, not UTF-8, nested deeper than the
    parser's recursion limit) is a WeightFileError naming ``source`` and ``what``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise WeightFileError(f"{source}: {what} is JSON nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WeightFileError(f"{source}: {what} is not valid JSON ({exc})") from None


def read_safetensors_header(path: str | os.PathLike[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """The tensor entries and the metadata of a safetensors file, checked for structure: every
    entry has a known dtype, a shape and data offsets that fit the file; the metadata is an object
    of strings. WeightFileError names the file and what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise WeightFileError(f"{path}: is a folder, not a weight file")
    if not path.is_file():
        raise WeightFileError(f"{path}: no such weight file")
    source = os.fspath(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise WeightFileError(f"{path}: not a safetensors weight file ({size} bytes, no header)")
            n = int.from_bytes(prefix, "little")
            if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
                raise WeightFileError(f"{path}: not a safetensors weight file (header length {n}, file "
                                      f"{size} bytes, at most {MAX_HEADER_BYTES} read)")
            raw = f.read(n)
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    header = json_loads(raw, source, "the safetensors header")
    if not isinstance(header, dict):
        raise WeightFileError(f"{path}: not a safetensors weight file (header is not a JSON object)")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise WeightFileError(f"{path}: metadata is a JSON {type(meta).__name__}, expected an object of "
                              "strings")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise WeightFileError(f"{path}: metadata {key!r} is {type(value).__name__} {value!r}, "
                                  "expected a string")
    if len(header) > MAX_TENSORS:
        raise WeightFileError(f"{path}: declares {len(header)} tensors (more than {MAX_TENSORS})")
    data_size = size - 8 - n
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise WeightFileError(f"{path}: tensor {name!r}: header entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in ITEMSIZE:
            raise WeightFileError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise WeightFileError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise WeightFileError(f"{path}: tensor {name!r} has data offsets {offsets!r} outside the "
                                  f"file's {data_size} data bytes (truncated or corrupt)")
        if offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]:
            raise WeightFileError(f"{path}: tensor {name!r}: shape {tuple(shape)} of {dtype} needs "
                                  f"{math.prod(shape) * ITEMSIZE[dtype]} bytes, the offsets give "
                                  f"{offsets[1] - offsets[0]}")
    return header, meta


def config_from_file(model: str, hparams: str | None, source: str) -> ModelConfig:
    """The config a file's metadata describes (``hparams`` JSON text), validated and bounded:
    WeightFileError for bad JSON, wrong types or values, or a model larger than
    :data:`MAX_PARAMETERS` / :data:`MAX_TENSORS` (a crafted file must not make a model allocate)."""
    if model not in MODEL_NAMES:
        raise WeightFileError(f"{source}: unknown model {model!r} in metadata")
    values = json_loads(hparams, source, "metadata 'hparams'") if hparams is not None else {}
    if not isinstance(values, dict):
        raise WeightFileError(f"{source}: metadata 'hparams' is a JSON {type(values).__name__}, "
                              "expected an object")
    try:
        config = config_from_metadata(model, values)
        spec = param_spec(config)
    except (TypeError, ValueError, RecursionError) as exc:
        raise WeightFileError(f"{source}: bad hyper-parameters in metadata ({exc})") from None
    total = sum(math.prod(shape) for shape in spec.values())
    if len(spec) > MAX_TENSORS or total > MAX_PARAMETERS:
        raise WeightFileError(f"{source}: hyper-parameters in metadata describe {len(spec)} tensors, "
                              f"{total} values (more than {MAX_TENSORS} tensors or {MAX_PARAMETERS} "
                              "values: not a model of this project)")
    return config


def _check_tensor_names(source: object, present: Iterable[str], spec: Mapping[str, tuple[int, ...]],
                        config: ModelConfig, show: Callable[[list[str]], str]) -> None:
    """WeightFileError naming the first missing, then the first unexpected tensor; ``show``
    writes the list that follows it."""
    present = list(present)
    missing = [n for n in spec if n not in present]
    unexpected = [n for n in present if n not in spec]
    if missing:
        raise WeightFileError(f"{source}: missing tensor {missing[0]!r} for model {config.name!r}"
                              f" (missing: {show(missing)})")
    if unexpected:
        raise WeightFileError(f"{source}: unexpected tensor {unexpected[0]!r} for model "
                              f"{config.name!r} (expected: {show(list(spec))})")


def _check_header_tensors(path: str | os.PathLike[str], header: Mapping[str, dict],
                          config: ModelConfig) -> None:
    """Names, shapes and dtypes declared in the header against the model, before reading data."""
    spec = param_spec(config)
    _check_tensor_names(path, header, spec, config, _few)
    first = next(iter(spec))
    for name, shape in spec.items():
        entry = header[name]
        if tuple(entry["shape"]) != shape:
            raise WeightFileError(f"{path}: tensor {name!r} has shape {tuple(entry['shape'])}, expected "
                                  f"{shape} for model {config.name!r}")
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        if dtype not in DTYPES:
            raise WeightFileError(f"{path}: tensor {name!r} has dtype {dtype}, expected float32 or "
                                  "float64")
        if entry["dtype"] != header[first]["dtype"]:
            raise WeightFileError(f"{path}: tensor {name!r} has dtype {dtype}, expected "
                                  f"{SAFETENSORS_DTYPES[header[first]['dtype']]} like {first!r} "
                                  "(one dtype for all tensors)")


def _few(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata header of a weight file, validated for format and version."""
    _, meta = read_safetensors_header(path)
    if meta.get("format") != "mnist-rosetta":
        hint = (f"; it is a native {meta.get('native')!r} checkpoint: rosetta convert {path} --from "
                f"{meta.get('native')}" if meta.get("format") == "mnist-rosetta-native" else "")
        raise WeightFileError(f"{path}: not an mnist-rosetta weight file (metadata 'format' is "
                              f"{meta.get('format')!r}{hint})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise WeightFileError(f"{path}: format_version {meta.get('format_version')!r} is not "
                              f"supported (this version reads {str(FORMAT_VERSION)!r})")
    if meta.get("model") not in MODEL_NAMES:
        raise WeightFileError(f"{path}: unknown model {meta.get('model')!r} in metadata")
    return meta


def load_weights(
    path: str | os.PathLike[str], model: str | None = None, dtype: type | str | None = None,
) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """Read and validate a weight file; return ``(params, config)``.

    ``model`` ("mlp"/"cnn"), when given, must match the file's model. ``dtype``, when given,
    casts the tensors after validation (float32 <-> float64). Names, shapes and dtypes are checked
    on the header before any tensor data is read.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    header, _ = read_safetensors_header(path)
    meta = read_metadata(path)
    if model is not None and meta["model"] != model:
        raise WeightFileError(f"{path}: holds weights for model {meta['model']!r}, not {model!r}")
    config = config_from_file(meta["model"], meta.get("hparams"), os.fspath(path))
    _check_header_tensors(path, header, config)
    try:
        params = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise WeightFileError(f"{path}: cannot read tensors ({exc})") from None
    validate_params(params, config, source=os.fspath(path))
    spec = param_spec(config)
    if dtype is not None:
        params = {n: params[n].astype(dtype) for n in spec}
    return {n: params[n] for n in spec}, config
