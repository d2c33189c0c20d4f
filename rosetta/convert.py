"""Canonical weight files <-> each framework's native checkpoint, bit-exact both ways, no pickle.

* torch: a ``.safetensors`` file with state_dict names and layouts (``fc1.weight`` (out, in), BN
  buffers incl. ``num_batches_tracked``), written by ``safetensors.torch.save_file``; loads with
  ``model.load_state_dict(safetensors.torch.load_file(path))``.
* keras: a ``.weights.h5`` file from ``model.save_weights``; loads with ``model.load_weights(path)``.
* chainer: an ``.npz`` from ``chainer.serializers.save_npz`` (``fc1/W`` (out, in), ``bn1/avg_var``);
  loads with ``chainer_impl.load_native(model, path)`` (Chainer's own ``load_npz`` enables pickle).
* npz: ``np.savez`` of the canonical arrays by canonical name; ``np.load(path, allow_pickle=False)``.

Going back needs the model's hyper-parameters (activation, dropout, BatchNorm momentum ... are not
visible in the tensors). Every native file carries them, where its own loader never looks:

* torch: the safetensors metadata (``format = mnist-rosetta-native``, ``native``, ``model``,
  ``hparams`` JSON, ``dtype``), like the canonical file's;
* keras: the same JSON as the HDF5 root attribute ``mnist_rosetta``;
* chainer and npz: the same JSON as the zip archive comment of the ``.npz`` (``np.load`` and
  ``load_npz`` ignore it; the arrays stay exactly the native or canonical ones).

When converting back, the hyper-parameters come from ``--hparams-from W.safetensors`` (a canonical
file) if given, else from the embedded metadata, else from ``--model`` with default
hyper-parameters; every tensor's name, shape and dtype is then checked against that model before
the framework's loader sees the file (no loader casts silently, none allocates what a crafted file
declares). Writes go to a temporary file in the target folder and are renamed into place: nothing
half-written is left.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rosetta import registry
from rosetta.weights import (
    FORMAT_VERSION,
    LAYOUT,
    MAX_PARAMETERS,
    MAX_TENSORS,
    MODEL_NAMES,
    SAFETENSORS_DTYPES,
    ModelConfig,
    WeightFileError,
    atomic_path,
    config_from_file,
    config_from_metadata,
    config_to_metadata,
    json_loads,
    load_weights,
    param_spec,
    read_metadata,
    read_safetensors_header,
    save_weights,
    validate_params,
)

# Native format -> the framework row that writes it (rosetta.registry); npz is the reference's.
NATIVE_FORMATS = tuple(registry.NATIVE_FORMATS)
SUFFIX = {fmt: entry.native_suffix for fmt, entry in registry.NATIVE_FORMATS.items()}
NATIVE_FORMAT_TAG = "mnist-rosetta-native"
H5_ATTR = "mnist_rosetta"


class ConvertError(ValueError):
    """A user error in a conversion (bad format name, file suffix, model mismatch)."""


def check_format(fmt: str) -> None:
    """Raise ConvertError listing the choices when ``fmt`` is not a native format."""
    if fmt not in NATIVE_FORMATS:
        raise ConvertError(f"unknown format {fmt!r}; choose one of: {', '.join(NATIVE_FORMATS)} "
                           "(framework names work too: tf is keras)")


# --- metadata ---------------------------------------------------------------------------------
def native_metadata(fmt: str, config: ModelConfig, dtype: np.dtype) -> dict[str, str]:
    """What a native file carries so that it can be converted back."""
    return {
        "format": NATIVE_FORMAT_TAG,
        "format_version": str(FORMAT_VERSION),
        "native": fmt,
        "model": config.name,
        "hparams": json.dumps(config_to_metadata(config), sort_keys=True),
        "dtype": np.dtype(dtype).name,
        "layout": LAYOUT,
    }


def _config_from(meta: Mapping[str, str], source: str) -> ModelConfig:
    return config_from_file(str(meta.get("model")), meta.get("hparams"), source)


MAX_ATTR_BYTES = 1 << 20  # the metadata JSON is under 1 kB


def read_native_metadata(path: str | os.PathLike[str], fmt: str) -> dict[str, str] | None:
    """The embedded metadata of a native file, or None when it carries none."""
    path = Path(path)
    _check_input(path)
    source = os.fspath(path)
    try:
        if fmt == "torch":
            _, meta = read_safetensors_header(path)
        elif fmt == "keras":
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get(H5_ATTR)
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8")
            if raw is not None and not isinstance(raw, str):
                raise WeightFileError(f"{path}: HDF5 attribute {H5_ATTR!r} is {type(raw).__name__}, "
                                      "expected a JSON string")
            if raw is not None and len(raw) > MAX_ATTR_BYTES:
                raise WeightFileError(f"{path}: HDF5 attribute {H5_ATTR!r} is longer than "
                                      f"{MAX_ATTR_BYTES} characters")
            meta = json_loads(raw, source, f"HDF5 attribute {H5_ATTR!r}") if raw is not None else {}
        else:
            with zipfile.ZipFile(path) as z:
                comment = z.comment
            meta = json_loads(comment, source, "the .npz comment") if comment else {}
    except WeightFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader error means "not a readable file"
        raise WeightFileError(f"{path}: cannot read as a {fmt} checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != NATIVE_FORMAT_TAG:
        if isinstance(meta, dict) and meta.get("format") == "mnist-rosetta":
            raise WeightFileError(f"{path}: is a canonical mnist-rosetta weight file, not a {fmt} "
                                  f"checkpoint (convert it with --to {fmt})")
        return None
    if meta.get("native") not in (None, fmt):
        raise WeightFileError(f"{path}: is a {meta.get('native')!r} checkpoint, not {fmt!r} "
                              f"(use --from {meta.get('native')})")
    bad = [k for k, v in meta.items() if not isinstance(v, str)]
    if bad:
        raise WeightFileError(f"{path}: metadata {bad[0]!r} is {type(meta[bad[0]]).__name__}, "
                              "expected a string")
    return dict(meta)


def _check_input(path: Path) -> None:
    if path.is_dir():
        raise WeightFileError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise WeightFileError(f"{path}: no such file")


def resolve_config(
    path: str | os.PathLike[str], fmt: str, model: str | None = None,
    hparams_from: str | os.PathLike[str] | None = None,
) -> ModelConfig:
    """The config of a native file: --hparams-from, else embedded metadata, else --model defaults."""
    if hparams_from is not None:
        meta: Mapping[str, str] | None = read_metadata(hparams_from)
        source = os.fspath(hparams_from)
    else:
        meta = read_native_metadata(path, fmt)
        source = os.fspath(path)
    if meta is None:
        if model is None:
            raise ConvertError(f"{path}: carries no hyper-parameters; pass --model {{mlp,cnn}} "
                               "(default hyper-parameters) or --hparams-from W.safetensors")
        return config_from_metadata(model, {})
    config = _config_from(meta, source)
    if model is not None and config.name != model:
        raise WeightFileError(f"{source}: holds a {config.name!r} model, not {model!r}")
    return config


def _set_zip_comment(path: Path, meta: Mapping[str, str]) -> None:
    with zipfile.ZipFile(path, "a") as z:
        z.comment = json.dumps(dict(meta), sort_keys=True).encode()


# --- frameworks -------------------------------------------------------------------------------
def _import(fmt: str) -> Any:
    """The implementation package that reads and writes ``fmt``; FrameworkNotInstalled names the extra."""
    return registry.package(registry.NATIVE_FORMATS[fmt].name)


def native_model(fmt: str, config: ModelConfig, params: Mapping[str, np.ndarray] | None = None,
                 dtype: str = "float32") -> Any:
    """``fmt``'s framework model of ``config`` (from canonical ``params``, or the default init)."""
    cls = getattr(_import(fmt), config.class_name)
    return cls(config, params=None if params is None else dict(params), dtype=dtype)


def _dump(fmt: str, model: Any) -> dict[str, np.ndarray]:
    return _import(fmt).dump_canonical(model)


def _check_shapes(path: str | os.PathLike[str], expected: Mapping[str, tuple[int, ...]],
                  found: Mapping[str, tuple[int, ...]], config: ModelConfig,
                  canonical_of: Callable[[str], str] | None = None) -> None:
    """Compare a native file's tensor names and shapes with the model's; name the bad tensor."""
    def named(n: str) -> str:
        return repr(n) if canonical_of is None else f"{n!r} ({canonical_of(n)})"

    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    what = f"model {config.name!r}"
    if missing:
        raise WeightFileError(f"{path}: missing tensor {named(missing[0])} for "
                              f"{what} (missing: {', '.join(missing)})")
    if unexpected:
        raise WeightFileError(f"{path}: unexpected tensor {unexpected[0]!r} for {what} (expected: "
                              f"{', '.join(expected)})")
    for name, shape in expected.items():
        if tuple(found[name]) != tuple(shape):
            raise WeightFileError(f"{path}: tensor {named(name)} has shape "
                                  f"{tuple(found[name])}, expected {tuple(shape)} for {what}")


def _dtype_of(meta_dtype: str | None, dtypes: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """The model dtype: the metadata's, else the first float32/float64 tensor's (``dtypes``: names
    or arrays); a file with neither is refused."""
    if meta_dtype is not None and meta_dtype not in ("float32", "float64"):
        raise WeightFileError(f"{path}: metadata 'dtype' is {meta_dtype!r}, expected float32 or float64")
    if meta_dtype is not None:
        return str(meta_dtype)
    for value in dtypes.values():
        name = str(getattr(value, "dtype", value)).removeprefix("torch.")
        if name in ("float32", "float64"):
            return name
    raise WeightFileError(f"{path}: no float32 or float64 tensor found")


def _check_dtypes(path: str | os.PathLike[str], expected: Mapping[str, str], found: Mapping[str, str],
                  ) -> None:
    """Every tensor's dtype as the model's own checkpoint has it: no loader may cast silently."""
    for name, want in expected.items():
        if found[name] != want:
            raise WeightFileError(f"{path}: tensor {name!r} has dtype {found[name]}, expected {want} "
                                  "(converting never casts)")


# Bounds on what an .npz may declare (see rosetta.weights.MAX_PARAMETERS).
MAX_NPZ_BYTES = MAX_PARAMETERS * 8 + (1 << 20)


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, read without pickle and within bounds: every member is a ``.npy``
    whose header (dtype, shape) is read and checked before its data, no object arrays, and no more
    data than :data:`MAX_NPZ_BYTES` declared."""
    from numpy.lib import format as npy

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > MAX_TENSORS:
                raise WeightFileError(f"{path}: holds {len(infos)} arrays (more than {MAX_TENSORS})")
            declared = sum(i.file_size for i in infos)
            if declared > MAX_NPZ_BYTES:
                raise WeightFileError(f"{path}: declares {declared} bytes of arrays (more than "
                                      f"{MAX_NPZ_BYTES}: not a checkpoint of this project)")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise WeightFileError(f"{path}: member {info.filename!r} is not a .npy array")
                with z.open(info) as fp:
                    version = npy.read_magic(fp)
                    if version == (1, 0):
                        shape, _, dtype = npy.read_array_header_1_0(fp)
                    elif version == (2, 0):
                        shape, _, dtype = npy.read_array_header_2_0(fp)
                    else:
                        raise WeightFileError(f"{path}: array {info.filename!r} has .npy version "
                                              f"{version}, expected 1.0 or 2.0")
                name = info.filename.removesuffix(".npy")
                if dtype.hasobject:
                    raise WeightFileError(f"{path}: array {name!r} holds Python objects (pickle): "
                                          "refused, checkpoints hold numbers only")
                if math.prod(shape) * dtype.itemsize > info.file_size:
                    raise WeightFileError(f"{path}: array {name!r} declares shape {shape} of {dtype}, "
                                          f"more than its {info.file_size} bytes (truncated or corrupt)")
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
    except WeightFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip, zlib, npy header errors: all "cannot read"
        raise WeightFileError(f"{path}: cannot read as an .npz without pickle ({type(exc).__name__}: "
                              f"{exc})") from None


# --- canonical -> native ----------------------------------------------------------------------
def to_native(
    params: Mapping[str, np.ndarray], config: ModelConfig, fmt: str, out: str | os.PathLike[str],
) -> None:
    """Write canonical ``params`` of ``config`` as ``fmt``'s native checkpoint at ``out``."""
    check_format(fmt)
    validate_params(params, config, source=f"{os.fspath(out)} (not written)")
    dtype = np.asarray(next(iter(params.values()))).dtype
    meta = native_metadata(fmt, config, dtype)
    if fmt == "npz":
        with atomic_path(out, ".npz") as tmp:
            arrays = {n: np.ascontiguousarray(params[n]) for n in param_spec(config)}
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
            _set_zip_comment(tmp, meta)
        return
    if fmt == "keras" and not os.fspath(out).endswith(".weights.h5"):
        raise ConvertError(f"{out}: Keras weight files must end in '.weights.h5' (model.save_weights "
                           "refuses other names)")
    model = native_model(fmt, config, params, dtype.name)
    package = _import(fmt)
    if fmt == "chainer":
        with atomic_path(out, ".npz") as tmp:
            package.save_native(model, tmp)
            _set_zip_comment(tmp, meta)
    else:
        package.save_native(model, out, metadata=meta)


def convert_to_native(weights: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str]) -> ModelConfig:
    """``rosetta convert W.safetensors --to FMT --out PATH``; returns the model's config."""
    check_format(fmt)
    params, config = load_weights(weights)
    to_native(params, config, fmt, out)
    return config


# --- native -> canonical ----------------------------------------------------------------------
def from_native(
    path: str | os.PathLike[str], fmt: str, model: str | None = None,
    hparams_from: str | os.PathLike[str] | None = None, config: ModelConfig | None = None,
) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """Read ``fmt``'s native checkpoint with the framework's own loader; canonical params + config
    (``config`` given: that one, else :func:`resolve_config`)."""
    check_format(fmt)
    _check_input(Path(path))
    if fmt == "keras" and not os.fspath(path).endswith(".weights.h5"):
        raise ConvertError(f"{path}: a Keras weight file ends in '.weights.h5' (Keras picks the format "
                           "by the name); rename it")
    if config is None:
        config = resolve_config(path, fmt, model, hparams_from)
    meta = read_native_metadata(path, fmt) or {}
    spec = param_spec(config)
    if fmt == "npz":
        arrays = read_npz(path)
        _check_shapes(path, spec, {k: v.shape for k, v in arrays.items()}, config)
        validate_params(arrays, config, source=os.fspath(path))
        return {n: arrays[n] for n in spec}, config
    if fmt == "torch":
        return _from_torch(path, config, meta)
    if fmt == "keras":
        return _from_keras(path, config, meta)
    return _from_chainer(path, config, meta)


def _from_torch(path: str | os.PathLike[str], config: ModelConfig, meta: Mapping[str, str],
                ) -> tuple[dict[str, np.ndarray], ModelConfig]:
    _import("torch")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from torch_impl.weights import conversions

    header, _ = read_safetensors_header(path)
    dtype = _dtype_of(meta.get("dtype"), {k: SAFETENSORS_DTYPES[v["dtype"]] for k, v in header.items()},
                      path)
    model = native_model("torch", config, dtype=dtype)
    state_dict = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in state_dict.items()}
    canonical = {native: n for n, native, _ in conversions(model)}
    _check_shapes(path, expected, {k: tuple(v["shape"]) for k, v in header.items()}, config,
                  lambda n: f"canonical {canonical.get(n, n)!r}")
    _check_dtypes(path, {k: str(v.dtype).removeprefix("torch.") for k, v in state_dict.items()},
                  {k: SAFETENSORS_DTYPES[v["dtype"]] for k, v in header.items()})
    try:
        state = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise WeightFileError(f"{path}: cannot read tensors ({exc})") from None
    model.load_state_dict(state, strict=True)
    return _finish(path, model, "torch", config)


def _from_keras(path: str | os.PathLike[str], config: ModelConfig, meta: Mapping[str, str],
                ) -> tuple[dict[str, np.ndarray], ModelConfig]:
    _import("keras")
    found = _h5_datasets(path)
    dtype = _dtype_of(meta.get("dtype"), {k: d for k, (_, d) in found.items()}, path)
    model = native_model("keras", config, dtype=dtype)
    expected = _keras_layout(config, dtype)
    _check_shapes(path, {k: s for k, (s, _) in expected.items()}, {k: s for k, (s, _) in found.items()},
                  config, lambda n: "Keras variable")
    _check_dtypes(path, {k: d for k, (_, d) in expected.items()}, {k: d for k, (_, d) in found.items()})
    try:
        model.load_weights(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a file it cannot load
        raise WeightFileError(f"{path}: Keras cannot load it into a {config.name!r} model "
                              f"({type(exc).__name__}: {exc})") from None
    return _finish(path, model, "keras", config)


_KERAS_LAYOUTS: dict[tuple[ModelConfig, str], dict[str, tuple[tuple[int, ...], str]]] = {}


def _keras_layout(config: ModelConfig, dtype: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """The datasets (shape, dtype) a Keras model of ``config`` writes: saved once per config."""
    key = (config, dtype)
    if key not in _KERAS_LAYOUTS:
        model = native_model("keras", config, dtype=dtype)
        with tempfile.TemporaryDirectory() as tmp:
            reference = Path(tmp) / "reference.weights.h5"
            model.save_weights(os.fspath(reference))
            _KERAS_LAYOUTS[key] = _h5_datasets(reference)
    return _KERAS_LAYOUTS[key]


def _h5_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    return {name: shape for name, (shape, _) in _h5_datasets(path).items()}


def _h5_datasets(path: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every dataset's shape and dtype. Links to other files, external storage and virtual
    datasets are refused: reading them would pull data from files the user did not name."""
    import h5py

    datasets: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with h5py.File(path, "r") as f:
            links: list[tuple[str, Any]] = []
            # Collect first: an exception raised inside h5py's visit callback comes out garbled.
            f.visititems_links(lambda name, link: links.append((name, link)))
            for name, link in links:
                if isinstance(link, h5py.ExternalLink | h5py.SoftLink):
                    raise WeightFileError(f"{path}: {name!r} is a link ({type(link).__name__}): refused")
                obj = f.get(name)
                if isinstance(obj, h5py.Dataset):
                    if obj.external or obj.is_virtual:
                        raise WeightFileError(f"{path}: dataset {name!r} reads its data from another "
                                              "file: refused")
                    datasets[name] = (tuple(obj.shape), obj.dtype.name)
    except WeightFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError, ...
        raise WeightFileError(f"{path}: cannot read as a keras checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    return datasets


def _from_chainer(path: str | os.PathLike[str], config: ModelConfig, meta: Mapping[str, str],
                  ) -> tuple[dict[str, np.ndarray], ModelConfig]:
    _import("chainer")
    from chainer_impl.compat import import_chainer
    from chainer_impl.weights import conversions

    chainer = import_chainer()
    arrays = read_npz(path)
    found = {k: tuple(v.shape) for k, v in arrays.items()}
    dtype = _dtype_of(meta.get("dtype"), arrays, path)
    model = native_model("chainer", config, dtype=dtype)
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(model)
    expected = {k: tuple(np.shape(v)) for k, v in serializer.target.items()}
    canonical = {f"{layer}/{attr}": n for n, layer, attr, _ in conversions(model)}
    _check_shapes(path, expected, found, config, lambda n: f"canonical {canonical.get(n, n)!r}")
    _check_dtypes(path, {k: np.asarray(v).dtype.name for k, v in serializer.target.items()},
                  {k: v.dtype.name for k, v in arrays.items()})
    # NOTE(framework:chainer-load-npz): chainer.serializers.load_npz opens the file with pickle
    # allowed; its deserializer over the arrays np.load read with allow_pickle=False does the same
    # loading without pickle.
    chainer.serializers.NpzDeserializer(arrays).load(model)
    return _finish(path, model, "chainer", config)


def _finish(path: str | os.PathLike[str], model: Any, fmt: str, config: ModelConfig,
            ) -> tuple[dict[str, np.ndarray], ModelConfig]:
    params = _dump(fmt, model)
    validate_params(params, config, source=os.fspath(path))
    return params, config


def convert_from_native(
    path: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str], model: str | None = None,
    hparams_from: str | os.PathLike[str] | None = None, config: ModelConfig | None = None,
) -> ModelConfig:
    """``rosetta convert NATIVE --from FMT --out W.safetensors``; returns the model's config."""
    params, config = from_native(path, fmt, model, hparams_from, config)
    save_weights(out, params, config, extra_metadata={"converted_from": fmt})
    return config


# --- what the tensors tell (every --from route) ---------------------------------------------------
# A native file without the embedded metadata tells its architecture only through its shapes.
# The course's inference (rosetta.course) reads them under the course's names; these are the
# canonical ones the native names stand for (torch and Chainer affine weights are (out, in)).
_TORCH_TENSORS = {"weight": "W", "bias": "b", "running_mean": "running_mean", "running_var": "running_var"}
_CHAINER_TENSORS = {"W": "W", "b": "b", "gamma": "gamma", "beta": "beta", "avg_mean": "running_mean",
                    "avg_var": "running_var"}


def native_canonical_shapes(path: str | os.PathLike[str], fmt: str) -> dict[str, tuple[int, ...]] | None:
    """Canonical name -> shape of the tensors in a native file, None where the names do not tell
    (Keras variable paths)."""
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        if fmt == "keras":
            return None
        if fmt == "torch":
            from safetensors import safe_open

            with safe_open(os.fspath(path), framework="numpy") as f:
                native = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            for name, shape in native.items():
                layer, _, tensor = name.rpartition(".")
                if tensor not in _TORCH_TENSORS:
                    continue
                canonical = _TORCH_TENSORS[tensor]
                if layer.startswith("bn") and canonical in ("W", "b"):
                    canonical = "gamma" if canonical == "W" else "beta"
                shapes[f"{layer}.{canonical}"] = shape[::-1] if len(shape) == 2 else shape
            return shapes
        with np.load(path, allow_pickle=False) as f:
            native = {k: tuple(f[k].shape) for k in f.files}
    except Exception as exc:  # noqa: BLE001 - any reader error: the loader reports it properly next
        raise WeightFileError(f"{path}: cannot read as a {fmt} checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    if fmt == "npz":
        return native
    for name, shape in native.items():
        layer, _, tensor = name.rpartition("/")
        if tensor in _CHAINER_TENSORS:
            shapes[f"{layer}.{_CHAINER_TENSORS[tensor]}"] = shape[::-1] if len(shape) == 2 else shape
    return shapes


def _course_names(shapes: Mapping[str, tuple[int, ...]], model: str) -> dict[str, str]:
    from rosetta.course import course_name_map

    n_affine = sum(1 for n in shapes if n.startswith("fc") and n.endswith(".W"))
    n_bn = sum(1 for n in shapes if n.startswith("bn") and n.endswith(".gamma")) if model == "mlp" else 0
    return course_name_map(model, n_affine, n_bn)


def _as_course_arrays(shapes: Mapping[str, tuple[int, ...]], model: str) -> dict[str, np.ndarray]:
    """Zero-memory arrays of the canonical shapes under the course's names (for the inference)."""
    names = _course_names(shapes, model)
    inverse = {canonical: course for course, canonical in names.items()}
    zero = np.zeros((), np.float32)
    return {inverse[n]: np.broadcast_to(zero, s) for n, s in shapes.items() if n in inverse}


def honest_native_config(
    path: str | os.PathLike[str], fmt: str, model: str | None, options: Mapping[str, object],
    option_names: Mapping[str, str], hparams_from: str | os.PathLike[str] | None = None,
    contradict: Callable[[ModelConfig, str], ModelConfig] | None = None,
) -> tuple[ModelConfig, list[str]]:
    """The config of a native file and the lines saying where every hyper-parameter came from.

    The file's metadata (or ``--hparams-from``) fixes the model: ``contradict(config, source)``
    applies the options to it and raises where one differs. Without metadata the shapes fix what
    they show, the options the rest; a hyper-parameter that changes the result and that neither
    settles (an MLP's activation, a conv's pad and stride when several fit) is refused.
    """
    from rosetta.course import (
        CourseFileError,
        build_course_config,
        describe_sources,
        infer_architecture,
    )

    source = os.fspath(hparams_from if hparams_from is not None else path)
    meta = read_metadata(hparams_from) if hparams_from is not None else read_native_metadata(path, fmt)
    if meta is not None:
        config = _config_from(meta, source)
        if model is not None and config.name != model:
            raise WeightFileError(f"{source}: holds a {config.name!r} model, not {model!r}")
        if contradict is not None:
            config = contradict(config, source)
        return config, [f"hyper-parameters from {source}'s metadata: {config.describe()}"]
    if model is None:
        raise ConvertError(f"{path}: carries no hyper-parameters; pass --model {{{','.join(MODEL_NAMES)}}} "
                           "or --preset NAME (with the options the tensors cannot show), or "
                           "--hparams-from W.safetensors")
    shapes = native_canonical_shapes(path, fmt)
    fixed: dict[str, object] = {}
    why: dict[str, str] = {}
    if shapes is not None:
        arrays = _as_course_arrays(shapes, model)
        found, _, fixed, why = infer_architecture(arrays, os.fspath(path), options)
        if found != model:
            raise WeightFileError(f"{path}: its tensors are a {found!r} model's, not {model!r}")
        fixed.pop("conv_kernels", None)
        if model == "cnn":
            fixed["use_batchnorm"] = "bn1.gamma" in shapes
            why["use_batchnorm"] = "bn1 tensors present" if fixed["use_batchnorm"] else "no bn1 tensors"
        names = _course_names(shapes, model)
        why = {k: re.sub(r"\b(W|gamma|beta)(\d+)\b", lambda m: names.get(m.group(0), m.group(0)), v)
               for k, v in why.items()}
    elif model in ("cnn", "deepcnn") and not ({"pad", "stride", "conv_params"} & set(options)):
        raise ConvertError(f"{path}: carries no hyper-parameters and a {fmt} file's variable names do not "
                           "show the architecture; pad and stride change the result: pass --pad and "
                           "--stride (or --preset), or --hparams-from W.safetensors")
    try:
        config, from_options, assumed = build_course_config(model, fixed, options, option_names,
                                                            os.fspath(path), defaults={})
    except CourseFileError as exc:
        raise ConvertError(str(exc).replace("course parameter file", "file")) from None
    lines = [f"{path}: no hyper-parameters in the file; {config.name} from its tensors and the options"]
    lines += describe_sources(config, {"from the tensors": why, "from options": from_options,
                                       "assumed": assumed})
    return config, lines


def load_canonical_or_hint(path: str | os.PathLike[str], model: str | None = None,
                           ) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """:func:`rosetta.weights.load_weights`; a file that is not a canonical one gets the
    ``rosetta convert --from`` command that reads it added to the error."""
    try:
        return load_weights(path, model=model)
    except WeightFileError as exc:
        message = str(exc)
        if "not a safetensors weight file" in message or "not an mnist-rosetta weight file" in message:
            hint = native_hint(path)
            if hint:
                raise WeightFileError(f"{message}; {hint}") from None
        raise


def native_hint(path: str | os.PathLike[str]) -> str | None:
    """For a file given where a canonical weight file is expected: the ``convert`` command that
    reads it, or None when it looks like nothing known."""
    p = Path(path)
    name = p.name.lower()
    command = f"rosetta convert {path} --from {{}} --out W.safetensors"
    try:
        head = p.read_bytes()[:8] if p.is_file() and p.stat().st_size >= 8 else b""
    except OSError:
        return None
    if name.endswith((".pkl", ".pickle")) or head[:1] == b"\x80":
        return ("a pickle (a course parameter file from save_params?): read it safely with "
                + command.format("dlfs"))
    if name.endswith((".pt", ".pth", ".ckpt", ".bin")):
        return ("a torch.save checkpoint is a pickle and is never loaded here: save the state_dict with "
                "safetensors.torch.save_file(model.state_dict(), F) and run "
                + command.format("torch").replace(str(path), "F"))
    if name.endswith((".h5", ".keras")) or head.startswith(b"\x89HDF"):
        return "a Keras/HDF5 file: " + command.format("keras")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(p) as z:
                meta = json.loads(z.comment.decode()) if z.comment else {}
                names = z.namelist()
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
        if isinstance(meta, dict) and meta.get("native") in NATIVE_FORMATS:
            return f"a {meta['native']} checkpoint: " + command.format(meta["native"])
        if any("/" in n for n in names):
            return "a Chainer .npz: " + command.format("chainer")
        if any(n.startswith("W1") for n in names):
            return "a course params dict as .npz: " + command.format("dlfs")
        return "an .npz of arrays: " + command.format("npz")
    if name.endswith(".safetensors"):
        try:
            from safetensors import safe_open

            with safe_open(os.fspath(p), framework="numpy") as f:
                meta = f.metadata() or {}
        except Exception:  # noqa: BLE001 - not readable: the caller's own message stands
            return None
        if meta.get("format") == NATIVE_FORMAT_TAG and meta.get("native") in NATIVE_FORMATS:
            return f"a {meta['native']} checkpoint: " + command.format(meta["native"])
        return "a safetensors file of another program (a torch state_dict?): " + command.format("torch")
    return None


# --- the course's own parameter files (--from dlfs) -----------------------------------------------
def import_dlfs(
    path: str | os.PathLike[str], options: Mapping[str, object], option_names: Mapping[str, str],
    model: str | None = None, bn_stats_from: str | os.PathLike[str] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """A course parameter file (pickle or .npz) as canonical tensors; a :class:`rosetta.course.CourseImport`.

    BatchNorm running statistics are not in the course's files: with ``bn_stats_from`` (an
    MNIST folder) they are computed over its training set (:func:`rosetta.course.bn_stats_from_data`),
    without it the import is refused.
    """
    from rosetta.course import CourseFileError, bn_stats_from_data, import_course_params, read_course_file
    from rosetta.data import load_mnist

    source = os.fspath(path)
    if arrays is None:
        arrays, _ = read_course_file(path)
    imp = import_course_params(arrays, source, options, option_names, model)
    config = imp.config
    if getattr(config, "use_batchnorm", False):
        if bn_stats_from is None:
            raise CourseFileError(
                f"{source}: has BatchNorm (gamma/beta) but no running_mean/running_var: the course's "
                "BatchNormalization keeps them outside params and save_params does not write them; eval "
                "needs them: pass --bn-stats-from-data MNIST_DIR to compute them over the training set")
        dtype = next(iter(imp.params.values())).dtype
        x_train, _ = load_mnist("train", bn_stats_from, layout="flat", dtype=dtype)
        imp.params.update(bn_stats_from_data(imp.params, config, x_train))
        imp.notes.append(f"BatchNorm running_mean/running_var computed over the {len(x_train)} training "
                         f"images of {bn_stats_from} (train-mode batch statistics, batches of 100, "
                         "Dropout in eval mode; the formula: rosetta convert --help)")
    elif bn_stats_from is not None:
        imp.notes.append("--bn-stats-from-data ignored: the network has no BatchNorm")
    validate_params(imp.params, config, source=source)
    return imp


def convert_from_dlfs(
    path: str | os.PathLike[str], out: str | os.PathLike[str], options: Mapping[str, object],
    option_names: Mapping[str, str], model: str | None = None,
    bn_stats_from: str | os.PathLike[str] | None = None, arrays: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """``rosetta convert F.pkl --from dlfs --out W.safetensors``; returns the CourseImport."""
    imp = import_dlfs(path, options, option_names, model, bn_stats_from, arrays)
    save_weights(out, imp.params, imp.config, extra_metadata={"converted_from": "dlfs"})
    return imp
