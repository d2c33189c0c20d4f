"""Canonical weight files <-> each framework's native checkpoint, bit-exact both ways, no pickle.

* torch: a ``.safetensors`` file with state_dict names and layouts (``fc1.weight`` (out, in), BN
  buffers incl. ``num_batches_tracked``), written by ``safetensors.torch.save_file``; loads with
  ``model.load_state_dict(safetensors.torch.load_file(path))``.
* keras: a ``.weights.h5`` file from ``model.save_weights``; loads with ``model.load_weights(path)``.
* chainer: an ``.npz`` from ``chainer.serializers.save_npz`` (``fc1/W`` (out, in), ``bn1/avg_var``);
  loads with ``chainer.serializers.load_npz(path, model)``.
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
hyper-parameters; every tensor's name and shape is then checked against that model. Writes go to a
temporary file in the target folder and are renamed into place: nothing half-written is left.
"""

from __future__ import annotations

import json
import os
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
    MODEL_NAMES,
    ModelConfig,
    WeightFileError,
    atomic_path,
    config_from_metadata,
    config_to_metadata,
    load_weights,
    param_spec,
    read_metadata,
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
    if meta.get("model") not in MODEL_NAMES:
        raise WeightFileError(f"{source}: unknown model {meta.get('model')!r} in metadata")
    try:
        return config_from_metadata(str(meta["model"]), json.loads(meta.get("hparams", "{}")))
    except (TypeError, ValueError) as exc:
        raise WeightFileError(f"{source}: bad hyper-parameters in metadata ({exc})") from None


def read_native_metadata(path: str | os.PathLike[str], fmt: str) -> dict[str, str] | None:
    """The embedded metadata of a native file, or None when it carries none."""
    path = Path(path)
    try:
        if fmt == "torch":
            from safetensors import safe_open

            with safe_open(os.fspath(path), framework="numpy") as f:
                meta = f.metadata() or {}
        elif fmt == "keras":
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get(H5_ATTR)
            meta = json.loads(raw) if raw is not None else {}
        else:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.comment.decode()) if z.comment else {}
    except Exception as exc:  # noqa: BLE001 - any reader error means "not a readable file"
        raise WeightFileError(f"{path}: cannot read as a {fmt} checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != NATIVE_FORMAT_TAG:
        return None
    if meta.get("native") not in (None, fmt):
        raise WeightFileError(f"{path}: is a {meta.get('native')!r} checkpoint, not {fmt!r} "
                              f"(use --from {meta.get('native')})")
    return {str(k): str(v) for k, v in meta.items()}


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


def _dtype_of(meta_dtype: str | None, arrays: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    if meta_dtype in ("float32", "float64"):
        return str(meta_dtype)
    for value in arrays.values():
        name = np.dtype(str(value.dtype).replace("torch.", "")).name
        if name in ("float32", "float64"):
            return name
    raise WeightFileError(f"{path}: no float32 or float64 tensor found")


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
    hparams_from: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """Read ``fmt``'s native checkpoint with the framework's own loader; canonical params + config."""
    check_format(fmt)
    if not Path(path).is_file():
        raise WeightFileError(f"{path}: no such file")
    config = resolve_config(path, fmt, model, hparams_from)
    meta = read_native_metadata(path, fmt) or {}
    spec = param_spec(config)
    if fmt == "npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise WeightFileError(f"{path}: cannot read as an .npz without pickle ({exc})") from None
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

    try:
        state = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightFileError(f"{path}: cannot read tensors ({exc})") from None
    dtype = _dtype_of(meta.get("dtype"), state, path)
    model = native_model("torch", config, dtype=dtype)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    canonical = {native: n for n, native, _ in conversions(model)}
    _check_shapes(path, expected, {k: tuple(v.shape) for k, v in state.items()}, config,
                  lambda n: f"canonical {canonical.get(n, n)!r}")
    for name, value in state.items():
        if name in canonical and str(value.dtype) != f"torch.{dtype}":
            raise WeightFileError(f"{path}: tensor {name!r} has dtype {value.dtype}, expected {dtype}")
    model.load_state_dict(state, strict=True)
    return _finish(path, model, "torch", config)


def _from_keras(path: str | os.PathLike[str], config: ModelConfig, meta: Mapping[str, str],
                ) -> tuple[dict[str, np.ndarray], ModelConfig]:
    _import("keras")
    dtype = meta.get("dtype") or "float32"
    model = native_model("keras", config, dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:  # the layout a model of this config writes
        reference = Path(tmp) / "reference.weights.h5"
        model.save_weights(os.fspath(reference))
        expected = _h5_shapes(reference)
    found = _h5_shapes(path)
    _check_shapes(path, expected, found, config, lambda n: "Keras variable")
    try:
        model.load_weights(os.fspath(path))
    except (ValueError, OSError) as exc:
        raise WeightFileError(f"{path}: Keras cannot load it into a {config.name!r} model ({exc})") from None
    return _finish(path, model, "keras", config)


def _h5_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    import h5py

    shapes: dict[str, tuple[int, ...]] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                shapes[name] = tuple(obj.shape)
        f.visititems(visit)
    return shapes


def _from_chainer(path: str | os.PathLike[str], config: ModelConfig, meta: Mapping[str, str],
                  ) -> tuple[dict[str, np.ndarray], ModelConfig]:
    _import("chainer")
    from chainer_impl.compat import import_chainer
    from chainer_impl.weights import conversions

    chainer = import_chainer()
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise WeightFileError(f"{path}: cannot read as an .npz without pickle ({exc})") from None
    found = {k: tuple(v.shape) for k, v in arrays.items()}
    dtype = _dtype_of(meta.get("dtype"), arrays, path)
    model = native_model("chainer", config, dtype=dtype)
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(model)
    expected = {k: tuple(np.shape(v)) for k, v in serializer.target.items()}
    canonical = {f"{layer}/{attr}": n for n, layer, attr, _ in conversions(model)}
    _check_shapes(path, expected, found, config, lambda n: f"canonical {canonical.get(n, n)!r}")
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
    hparams_from: str | os.PathLike[str] | None = None,
) -> ModelConfig:
    """``rosetta convert NATIVE --from FMT --out W.safetensors``; returns the model's config."""
    params, config = from_native(path, fmt, model, hparams_from)
    save_weights(out, params, config, extra_metadata={"converted_from": fmt})
    return config
