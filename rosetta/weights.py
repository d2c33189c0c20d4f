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
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
LAYOUT = "reference: affine W (in,out); conv W (out,in,kh,kw); flatten (C,H,W)"
INIT_SCHEMES = ("he", "xavier", "lecun", "std")
DTYPES = {"float32": np.float32, "float64": np.float64}
STATE_SUFFIXES = (".running_mean", ".running_var")


class WeightFileError(ValueError):
    """A weight file or parameter dict breaks the contract; the message names file and tensor."""


@dataclass(frozen=True)
class MLPConfig:
    """Hyper-parameters of the MLP (course: MultiLayerNet). Defaults: 784-100-100-10, ReLU."""

    input_size: int = 784
    hidden_sizes: tuple[int, ...] = (100, 100)
    output_size: int = 10
    activation: str = "relu"  # "relu" | "sigmoid"
    use_batchnorm: bool = False
    dropout_ratio: float = 0.0  # 0 disables the Dropout layers
    weight_decay: float = 0.0  # L2: loss += 0.5 * weight_decay * sum(W**2) over every W
    bn_momentum: float = 0.9  # running = momentum * running + (1 - momentum) * batch
    bn_eps: float = 1e-5
    name: str = field(default="mlp", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if self.activation not in ("relu", "sigmoid"):
            raise ValueError(f"activation must be 'relu' or 'sigmoid', got {self.activation!r}")
        if not 0.0 <= self.dropout_ratio < 1.0:
            raise ValueError(f"dropout_ratio must be in [0, 1), got {self.dropout_ratio}")


@dataclass(frozen=True)
class CNNConfig:
    """Hyper-parameters of the CNN (course: SimpleConvNet with its conv_param)."""

    input_dim: tuple[int, int, int] = (1, 28, 28)
    filter_num: int = 30
    filter_size: int = 5
    pad: int = 0
    stride: int = 1
    hidden_size: int = 100
    output_size: int = 10
    use_batchnorm: bool = False  # BatchNorm (per channel) between conv1 and relu1
    weight_decay: float = 0.0
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5
    name: str = field(default="cnn", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dim", tuple(int(d) for d in self.input_dim))
        if len(self.input_dim) != 3 or min(self.input_dim) < 1:
            raise ValueError(f"input_dim must be (C, H, W) of positive sizes, got {self.input_dim}")
        for name in ("filter_num", "filter_size", "stride", "hidden_size", "output_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if min(self.conv_output_hw) < 2:
            raise ValueError(f"conv_param leaves no output after conv and 2x2 pooling "
                             f"(conv output {self.conv_output_hw})")

    @property
    def conv_output_hw(self) -> tuple[int, int]:
        """Spatial size after conv1: (H + 2*pad - filter_size) // stride + 1."""
        _, h, w = self.input_dim
        oh = (h + 2 * self.pad - self.filter_size) // self.stride + 1
        ow = (w + 2 * self.pad - self.filter_size) // self.stride + 1
        return oh, ow

    @property
    def pool_output_size(self) -> int:
        """Number of features after the 2x2 max-pool, flattened in (C, H, W) order."""
        oh, ow = self.conv_output_hw
        return self.filter_num * (oh // 2) * (ow // 2)


ModelConfig = MLPConfig | CNNConfig
MODEL_NAMES = ("mlp", "cnn")


def make_config(model: str, **hparams: object) -> ModelConfig:
    """Build the config of ``model`` ("mlp" or "cnn") from keyword hyper-parameters."""
    if model == "mlp":
        return MLPConfig(**hparams)  # type: ignore[arg-type]
    if model == "cnn":
        return CNNConfig(**hparams)  # type: ignore[arg-type]
    raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODEL_NAMES)}")


def config_to_metadata(config: ModelConfig) -> dict[str, object]:
    """The config as plain JSON-able values (stored in the weight file's metadata)."""
    return {f.name: (list(v) if isinstance(v := getattr(config, f.name), tuple) else v)
            for f in fields(config) if f.init}


def config_from_metadata(model: str, hparams: Mapping[str, object]) -> ModelConfig:
    """Inverse of :func:`config_to_metadata`."""
    return make_config(model, **dict(hparams))


def param_spec(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every canonical tensor name and shape, in forward order (parameters and BatchNorm state)."""
    spec: dict[str, tuple[int, ...]] = {}
    if isinstance(config, MLPConfig):
        sizes = [config.input_size, *config.hidden_sizes, config.output_size]
        for i in range(1, len(sizes)):
            spec[f"fc{i}.W"] = (sizes[i - 1], sizes[i])  # (in, out)
            spec[f"fc{i}.b"] = (sizes[i],)
            if config.use_batchnorm and i < len(sizes) - 1:
                _bn_spec(spec, f"bn{i}", sizes[i])
        return spec
    c_in = config.input_dim[0]
    k = config.filter_size
    spec["conv1.W"] = (config.filter_num, c_in, k, k)  # (out, in, kh, kw)
    spec["conv1.b"] = (config.filter_num,)
    if config.use_batchnorm:
        _bn_spec(spec, "bn1", config.filter_num)
    spec["fc1.W"] = (config.pool_output_size, config.hidden_size)
    spec["fc1.b"] = (config.hidden_size,)
    spec["fc2.W"] = (config.hidden_size, config.output_size)
    spec["fc2.b"] = (config.output_size,)
    return spec


def _bn_spec(spec: dict[str, tuple[int, ...]], layer: str, n: int) -> None:
    for tensor in ("gamma", "beta", "running_mean", "running_var"):
        spec[f"{layer}.{tensor}"] = (n,)


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
