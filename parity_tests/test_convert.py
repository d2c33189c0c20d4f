"""``rosetta convert``: bit-exact round trips, native loaders, logits, errors, atomic writes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_framework

from rosetta.cli import main
from rosetta.convert import convert_from_native, convert_to_native, native_model
from rosetta.weights import WeightFileError, init_params, load_weights, make_config, save_weights

OUT = {"torch": "n.safetensors", "keras": "n.weights.h5", "chainer": "n.chainer.npz", "npz": "n.npz"}
FRAMEWORK = {"torch": "torch", "keras": "tf", "chainer": "chainer", "npz": "numpy"}
CASES = [("mlp", {}, "float32"), ("cnn", {}, "float64"), ("cnn", {"use_batchnorm": True}, "float32"),
         ("mlp", {"use_batchnorm": True, "activation": "sigmoid", "hidden_sizes": (50, 40)}, "float64"),
         ("deepcnn", {"dropout_mode": "course"}, "float64")]


def _params(config, dtype: str) -> dict[str, np.ndarray]:
    """init_params with non-trivial biases and BatchNorm statistics (so a swap would show)."""
    rng = np.random.default_rng(7)
    params = init_params(config, seed=3, dtype=dtype)
    for name, value in params.items():
        if not name.endswith(".W"):
            params[name] = (value + rng.uniform(0.1, 0.5, value.shape)).astype(dtype)
    return params


def _inputs(config, dtype: str) -> np.ndarray:
    shape = (8, *config.input_shape)
    return np.random.default_rng(0).uniform(0, 1, shape).astype(dtype)


def _native_logits(fmt: str, config, dtype: str, path: Path, x: np.ndarray) -> np.ndarray:
    """Load ``path`` with the framework's own API into a fresh (default-init) model; eval logits."""
    if fmt == "npz":
        import reference_numpy

        with np.load(path, allow_pickle=False) as f:
            params = {k: f[k] for k in f.files}
        model = getattr(reference_numpy, config.class_name)(config, params=params, dtype=dtype)
        return model.forward(x)
    model = native_model(fmt, config, dtype=dtype)
    if fmt == "torch":
        import safetensors.torch
        import torch

        model.load_state_dict(safetensors.torch.load_file(path))
        with torch.no_grad():
            return model(torch.from_numpy(x), train=False).numpy()
    if fmt == "keras":
        model.load_weights(path)
        native_x = x if x.ndim == 2 else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return np.asarray(model(native_x, training=False))
    import chainer_impl  # the documented way (convert --help): no pickle, the NumPy 2 shim first

    chainer_impl.load_native(model, path)
    return model.forward(x, train=False).array


def _reference_logits(config, params, dtype: str, x: np.ndarray) -> np.ndarray:
    import reference_numpy

    return getattr(reference_numpy, config.class_name)(config, params=params, dtype=dtype).forward(x)


@pytest.mark.parametrize("fmt,model,hparams,dtype", [
    (fmt, *case) for fmt in OUT for i, case in enumerate(CASES) if fmt != "keras" or i in (1, 2, 4)])
def test_round_trip_bit_exact_and_native_load(tmp_path: Path, fmt: str, model: str, hparams: dict,
                                              dtype: str) -> None:
    require_framework(FRAMEWORK[fmt])
    config = make_config(model, **hparams)
    params = _params(config, dtype)
    src = tmp_path / "w.safetensors"
    save_weights(src, params, config)
    native = tmp_path / OUT[fmt]
    assert main(["convert", str(src), "--to", fmt, "--out", str(native)]) == 0
    back = tmp_path / "back.safetensors"
    assert main(["convert", str(native), "--from", fmt, "--out", str(back)]) == 0
    got, got_config = load_weights(back)
    assert got_config == config
    for name, value in params.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name
    x = _inputs(config, dtype)
    logits = _native_logits(fmt, config, dtype, native, x)
    assert logits.dtype == np.dtype(dtype)
    np.testing.assert_allclose(logits, _reference_logits(config, params, dtype, x),
                               rtol=1e-4 if dtype == "float32" else 1e-10, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["w.safetensors", native.name,
                                                                 "back.safetensors"])


def test_torch_file_is_state_dict_with_buffers(tmp_path: Path) -> None:
    require_framework("torch")
    from safetensors import safe_open

    config = make_config("cnn", use_batchnorm=True)
    src = tmp_path / "w.safetensors"
    save_weights(src, _params(config, "float32"), config)
    convert_to_native(src, "torch", tmp_path / "t.safetensors")
    with safe_open(tmp_path / "t.safetensors", framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
    assert {"conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "fc1.weight"} <= keys
    assert meta["native"] == "torch" and json.loads(meta["hparams"])["use_batchnorm"] is True


def test_hparams_from_and_model_for_bare_npz(tmp_path: Path) -> None:
    config = make_config("mlp", hidden_sizes=(20,), activation="sigmoid")
    params = _params(config, "float32")
    src = tmp_path / "w.safetensors"
    save_weights(src, params, config)
    bare = tmp_path / "bare.npz"
    np.savez(bare, **params)  # no metadata: a file from elsewhere
    with pytest.raises(ValueError, match="--model"):
        convert_from_native(bare, "npz", tmp_path / "o.safetensors")
    # --model alone assumes defaults (784-100-100-10): the shape error names the tensor
    with pytest.raises(WeightFileError, match="tensor .fc3.W"):
        convert_from_native(bare, "npz", tmp_path / "o.safetensors", model="mlp")
    convert_from_native(bare, "npz", tmp_path / "o.safetensors", model="mlp", hparams_from=src)
    assert load_weights(tmp_path / "o.safetensors")[1] == config
    with pytest.raises(WeightFileError, match="holds a 'mlp' model, not 'cnn'"):
        convert_from_native(bare, "npz", tmp_path / "p.safetensors", model="cnn", hparams_from=src)
    with zipfile.ZipFile(bare) as z:
        assert not z.comment


@pytest.mark.parametrize("fmt", list(OUT))
def test_wrong_model_names_tensor(tmp_path: Path, fmt: str) -> None:
    require_framework(FRAMEWORK[fmt])
    small = make_config("mlp", hidden_sizes=(30, 100))
    src = tmp_path / "w.safetensors"
    save_weights(src, init_params(small), small)
    native = tmp_path / OUT[fmt]
    convert_to_native(src, fmt, native)
    default = tmp_path / "default.safetensors"
    save_weights(default, init_params(make_config("mlp")), make_config("mlp"))
    with pytest.raises(WeightFileError) as info:  # hyper-parameters of a different-shaped MLP
        convert_from_native(native, fmt, tmp_path / "o.safetensors", hparams_from=default)
    message = str(info.value)
    assert "has shape" in message and ("tensor 'fc" in message), message
    with pytest.raises(WeightFileError, match="holds a 'mlp' model, not 'cnn'"):
        convert_from_native(native, fmt, tmp_path / "o.safetensors", model="cnn")
    assert not (tmp_path / "o.safetensors").exists()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "w.safetensors"
    save_weights(src, init_params(make_config("mlp")), make_config("mlp"))
    with pytest.raises(SystemExit) as info:
        main(["convert", str(src), "--to", "onnx", "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    # The frameworks' names, each with the format name it also takes (keras, npz): rosetta/registry.py.
    err = capsys.readouterr().err
    assert "numpy (*.npz; also npz" in err and "tf (*.weights.h5; also keras" in err
    with pytest.raises(SystemExit) as info:
        main(["convert", str(src), "--from", "pickle", "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    assert main(["convert", str(tmp_path / "missing.safetensors"), "--to", "npz",
                 "--out", str(tmp_path / "x.npz")]) == 1
    assert "no such weight file" in capsys.readouterr().err
    assert main(["convert", str(src), "--to", "keras", "--out", str(tmp_path / "x.h5")]) == 1
    assert ".weights.h5" in capsys.readouterr().err
    assert main(["convert", str(src), "--from", "torch", "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "is a canonical mnist-rosetta weight file, not a torch checkpoint" in capsys.readouterr().err
    from safetensors.numpy import save_file

    save_file({"fc1.weight": np.zeros((100, 784), np.float32)}, tmp_path / "bare.safetensors")
    assert main(["convert", str(tmp_path / "bare.safetensors"), "--from", "torch",
                 "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "carries no hyper-parameters; pass --model" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.safetensors", "w.safetensors"]


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--to keras" in out and "allow_pickle=False" in out


def test_missing_framework_names_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    src = tmp_path / "w.safetensors"
    save_weights(src, init_params(make_config("mlp")), make_config("mlp"))
    for name in [m for m in sys.modules if m == "chainer_impl" or m.startswith("chainer_impl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "chainer", None)  # import chainer -> ImportError
    assert main(["convert", str(src), "--to", "chainer", "--out", str(tmp_path / "c.npz")]) == 1
    assert "pip install 'mnist-rosetta[chainer]'" in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists()


def test_no_pickle_in_convert_sources() -> None:
    root = Path(__file__).resolve().parents[1]
    for rel in ("rosetta/convert.py", "rosetta/commands/convert.py"):
        text = (root / rel).read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text
        assert "torch.load(" not in text


@pytest.mark.parametrize("fmt", list(OUT))
def test_native_files_get_the_usual_mode(tmp_path: Path, fmt: str) -> None:
    """torch's writer (safetensors) creates 0600 files: every output is 0644 (umask 022) anyway."""
    import os

    require_framework(FRAMEWORK[fmt])
    src = tmp_path / "w.safetensors"
    save_weights(src, init_params(make_config("mlp")), make_config("mlp"))
    umask = os.umask(0o022)
    try:
        convert_to_native(src, fmt, tmp_path / OUT[fmt])
    finally:
        os.umask(umask)
    assert (tmp_path / OUT[fmt]).stat().st_mode & 0o777 == 0o644


def test_help_names_the_pickle_free_chainer_loader(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = capsys.readouterr().out
    assert "chainer_impl.load_native(model, path)" in out and "serializers.load_npz(" not in out


def test_documented_chainer_loader_works_as_written(tmp_path: Path) -> None:
    """The help's line, run as written in this environment (NumPy 2): the shim is imported by
    chainer_impl itself, and no pickle is enabled."""
    require_framework("chainer")
    config = make_config("mlp")
    params = _params(config, "float32")
    src = tmp_path / "w.safetensors"
    save_weights(src, params, config)
    convert_to_native(src, "chainer", tmp_path / "m.npz")
    import chainer_impl

    model = chainer_impl.MLP(config)
    path = str(tmp_path / "m.npz")
    chainer_impl.load_native(model, path)
    for name, value in chainer_impl.dump_canonical(model).items():
        assert np.array_equal(value, params[name]), name
