"""The canonical weight contract: names, shapes, deterministic init, validated atomic files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.weights import (
    CNNConfig,
    MLPConfig,
    WeightFileError,
    init_params,
    init_std,
    load_weights,
    param_spec,
    read_metadata,
    save_weights,
    trainable_names,
)

CONFIGS = {
    "mlp": MLPConfig(),
    "mlp-bn": MLPConfig(use_batchnorm=True),
    "cnn": CNNConfig(),
    "cnn-bn": CNNConfig(use_batchnorm=True),
}


def test_canonical_names_and_shapes() -> None:
    assert param_spec(MLPConfig()) == {
        "fc1.W": (784, 100), "fc1.b": (100,), "fc2.W": (100, 100), "fc2.b": (100,),
        "fc3.W": (100, 10), "fc3.b": (10,)}
    assert param_spec(CNNConfig()) == {
        "conv1.W": (30, 1, 5, 5), "conv1.b": (30,), "fc1.W": (4320, 100), "fc1.b": (100,),
        "fc2.W": (100, 10), "fc2.b": (10,)}
    bn = param_spec(CNNConfig(use_batchnorm=True))
    assert list(bn)[2:6] == ["bn1.gamma", "bn1.beta", "bn1.running_mean", "bn1.running_var"]
    assert "bn1.running_var" not in trainable_names(CNNConfig(use_batchnorm=True))


def test_conv_param_arithmetic() -> None:
    cfg = CNNConfig(input_dim=(1, 28, 28), filter_num=16, filter_size=3, pad=1, stride=1)
    assert cfg.conv_output_hw == (28, 28)
    assert cfg.pool_output_size == 16 * 14 * 14


@pytest.mark.parametrize("scheme", ["he", "xavier", "lecun", "std"])
def test_init_is_deterministic_and_scaled(scheme: str) -> None:
    a = init_params(MLPConfig(), seed=3, scheme=scheme)
    b = init_params(MLPConfig(), seed=3, scheme=scheme)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["fc1.W"], init_params(MLPConfig(), seed=4, scheme=scheme)["fc1.W"])
    expected = init_std((784, 100), scheme)
    assert abs(a["fc1.W"].std() / expected - 1) < 0.02
    assert a["fc1.W"].dtype == np.float32 and not a["fc1.b"].any()


def test_init_is_bit_identical_to_recorded_values() -> None:
    """The same bits on every machine: PCG64 + standard_normal are platform independent."""
    w = init_params(CNNConfig(), seed=0, scheme="he", dtype="float64")["conv1.W"]
    rng = np.random.default_rng([0, 0])
    assert np.array_equal(w, rng.standard_normal((30, 1, 5, 5)) * np.sqrt(2.0 / 25))
    assert float(w.ravel()[0]) == 0.03556187677408892


def test_init_std_formulas() -> None:
    assert init_std((784, 100), "he") == pytest.approx(np.sqrt(2 / 784))
    assert init_std((784, 100), "xavier") == pytest.approx(np.sqrt(2 / 884))
    assert init_std((30, 1, 5, 5), "lecun") == pytest.approx(np.sqrt(1 / 25))
    assert init_std((30, 1, 5, 5), "xavier") == pytest.approx(np.sqrt(2 / (25 + 750)))
    with pytest.raises(ValueError, match="unknown init scheme 'kaiming'"):
        init_std((2, 2), "kaiming")


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_round_trip(tmp_path: Path, name: str, dtype: str) -> None:
    config = CONFIGS[name]
    params = init_params(config, seed=1, dtype=dtype)
    path = tmp_path / "w.safetensors"
    save_weights(path, params, config)
    loaded, loaded_config = load_weights(path)
    assert loaded_config == config
    assert list(loaded) == list(params)
    for n in params:
        assert loaded[n].dtype == params[n].dtype and np.array_equal(loaded[n], params[n]), n
    meta = read_metadata(path)
    assert meta["model"] == config.name and meta["dtype"] == dtype
    assert json.loads(meta["hparams"])["use_batchnorm"] == config.use_batchnorm


def test_hparams_survive_round_trip(tmp_path: Path) -> None:
    config = MLPConfig(hidden_sizes=(50, 40, 30), activation="sigmoid", dropout_ratio=0.2)
    save_weights(tmp_path / "w.safetensors", init_params(config), config)
    assert load_weights(tmp_path / "w.safetensors")[1] == config


def _saved(tmp_path: Path, config=None) -> Path:
    config = config or MLPConfig()
    path = tmp_path / "w.safetensors"
    save_weights(path, init_params(config), config)
    return path


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    params = init_params(MLPConfig())
    del params["fc2.b"]
    with pytest.raises(WeightFileError, match="missing tensor 'fc2.b'"):
        save_weights(tmp_path / "w.safetensors", params, MLPConfig())
    assert not (tmp_path / "w.safetensors").exists()


def test_unexpected_tensor_is_named(tmp_path: Path) -> None:
    params = init_params(MLPConfig())
    params["fc4.W"] = np.zeros((10, 10), np.float32)
    with pytest.raises(WeightFileError, match="unexpected tensor 'fc4.W'"):
        save_weights(tmp_path / "w.safetensors", params, MLPConfig())


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    params = init_params(CNNConfig())
    params["conv1.W"] = params["conv1.W"].transpose(2, 3, 1, 0).copy()  # HWIO by mistake
    expected = r"'conv1.W' has shape \(5, 5, 1, 30\), expected \(30, 1, 5, 5\)"
    with pytest.raises(WeightFileError, match=expected):
        save_weights(tmp_path / "w.safetensors", params, CNNConfig())


def test_wrong_dtype_is_named(tmp_path: Path) -> None:
    params = init_params(MLPConfig())
    params["fc1.b"] = params["fc1.b"].astype(np.float64)
    with pytest.raises(WeightFileError, match="'fc1.b' has dtype float64, expected float32 like 'fc1.W'"):
        save_weights(tmp_path / "w.safetensors", params, MLPConfig())
    params["fc1.b"] = params["fc1.b"].astype(np.int32)
    with pytest.raises(WeightFileError, match="'fc1.b' has dtype int32"):
        save_weights(tmp_path / "w.safetensors", params, MLPConfig())


def test_non_finite_is_named(tmp_path: Path) -> None:
    params = init_params(MLPConfig())
    params["fc3.W"][0, 0] = np.nan
    params["fc3.W"][1, 1] = np.inf
    with pytest.raises(WeightFileError, match="'fc3.W' has 2 non-finite"):
        save_weights(tmp_path / "w.safetensors", params, MLPConfig())


def test_wrong_model_is_named(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with pytest.raises(WeightFileError, match="holds weights for model 'mlp', not 'cnn'"):
        load_weights(path, model="cnn")


def test_tampered_file_is_caught(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    path = _saved(tmp_path)
    tensors = load_file(path)
    meta = read_metadata(path)
    tensors["fc1.W"] = tensors["fc1.W"][:, :50].copy()
    save_file(tensors, path, metadata=meta)
    with pytest.raises(WeightFileError, match=r"'fc1.W' has shape \(784, 50\)"):
        load_weights(path)


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"])
def test_not_a_weight_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightFileError, match="bad.safetensors"):
        load_weights(path)


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"weight": np.zeros(3, np.float32)}, tmp_path / "foreign.safetensors")
    with pytest.raises(WeightFileError, match="not an mnist-rosetta weight file"):
        load_weights(tmp_path / "foreign.safetensors")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightFileError, match="no such weight file"):
        load_weights(tmp_path / "nope.safetensors")


def test_failed_save_keeps_old_file(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    before = path.read_bytes()
    params = init_params(MLPConfig())
    params["fc1.W"][0, 0] = np.nan
    with pytest.raises(WeightFileError):
        save_weights(path, params, MLPConfig())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_dtype_cast_on_load(tmp_path: Path) -> None:
    params, _ = load_weights(_saved(tmp_path), dtype="float64")
    assert all(v.dtype == np.float64 for v in params.values())


small_configs = st.sampled_from([MLPConfig(input_size=6, hidden_sizes=(4,), output_size=3),
                                 MLPConfig(input_size=5, hidden_sizes=(3, 2), output_size=2,
                                           use_batchnorm=True),
                                 CNNConfig(input_dim=(1, 6, 6), filter_num=2, filter_size=3,
                                           hidden_size=4, output_size=3)])


@settings(max_examples=40, deadline=None)
@given(config=small_configs, data=st.data(), dtype=st.sampled_from(["float32", "float64"]))
def test_property_round_trip_or_documented_error(config, data, dtype: str) -> None:
    """Random tensors (random shapes, values incl. nan/inf) round-trip bit-exactly or raise
    WeightFileError naming the offending tensor; nothing else ever happens."""
    spec = param_spec(config)
    params = {}
    reshaped = []
    for name, shape in spec.items():
        if data.draw(st.booleans(), label=f"reshape {name}") and data.draw(st.integers(0, 4)) == 0:
            shape = (*shape, 1)
            reshaped.append(name)
        values = data.draw(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True),
                                    min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        params[name] = np.array(values, dtype=dtype).reshape(shape)
    if data.draw(st.integers(0, 5)) == 0:
        params.pop(next(iter(spec)))
    with tempfile.TemporaryDirectory() as folder:  # one fresh folder per example
        path = Path(folder) / "p.safetensors"
        try:
            save_weights(path, params, config)
        except WeightFileError as exc:
            assert any(f"'{n}'" in str(exc) for n in spec), str(exc)
            assert list(Path(folder).iterdir()) == []  # nothing written, no temp file left
            return
        # A changed shape (of any tensor, a bias as much as a W) must never be written.
        assert not reshaped, f"saved although {reshaped} had the wrong shape"
        loaded, loaded_config = load_weights(path)
    assert loaded_config == config
    for name in spec:
        assert loaded[name].tobytes() == params[name].tobytes(), name


def test_header_not_an_object_and_folder(tmp_path: Path) -> None:
    path = tmp_path / "list.safetensors"
    header = b"[1, 2]"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(WeightFileError, match="not a safetensors weight file"):
        load_weights(path)
    with pytest.raises(WeightFileError, match="is a folder, not a weight file"):
        load_weights(tmp_path)


@pytest.mark.parametrize("hparams,message", [
    ({"stride": 0}, "stride must be >= 1"),
    ({"pad": -1}, "pad must be >= 0"),
    ({"filter_size": 40}, "leaves no output"),
    ({"input_dim": (1, 28)}, "input_dim must be"),
])
def test_bad_cnn_hparams_in_file(tmp_path: Path, hparams: dict, message: str) -> None:
    path = _saved(tmp_path, CNNConfig())
    meta = read_metadata(path)
    stored = json.loads(meta["hparams"])
    stored.update(hparams)
    from safetensors.numpy import load_file, save_file

    save_file(load_file(path), path, metadata={**meta, "hparams": json.dumps(stored)})
    with pytest.raises(WeightFileError, match=message):
        load_weights(path)
