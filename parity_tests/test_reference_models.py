"""reference_numpy MLP and CNN: gradient checks (float64), activations, input gradient,
weight contract round trip, conv_param, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import reference_numpy
from reference_numpy import (
    CNN,
    MLP,
    config_from_conv_param,
    dump_canonical,
    load_canonical,
    set_dropout_masks,
)
from reference_numpy.gradient_check import assert_gradients_close, check_model
from reference_numpy.initializers import init_weights, lecun_std, scheme_from_course
from reference_numpy.layers import MaxPooling, Relu
from reference_numpy.weights import load_native, save_native
from rosetta.weights import CNNConfig, MLPConfig, WeightFileError, init_params, load_weights, param_spec

SMALL_MLP = {"input_size": 20, "hidden_sizes": (10, 10), "output_size": 5}
SMALL_CNN = {"input_dim": (1, 8, 8), "filter_num": 3, "filter_size": 3, "hidden_size": 6, "output_size": 4}


def data(shape: tuple[int, ...], k: int, n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, k, n)


def nonzero_bn(model: MLP | CNN) -> None:
    """Move gamma/beta and the running statistics off 1/0 so their gradients are non-trivial."""
    rng = np.random.default_rng(42)
    params = dump_canonical(model)
    for name in params:
        if name.startswith("bn"):
            params[name] = params[name] + (0.5 + rng.random(params[name].shape)) * 0.3
    load_canonical(model, params)


def kink_distance(model: MLP | CNN, x: np.ndarray, train: bool) -> float:
    """How far the forward pass is from a ReLU kink or a max-pool tie (where the loss has no
    derivative and the central difference measures nonsense)."""
    _, acts = model.forward(x, train=train, return_activations=True)
    names = list(acts)
    dists = [np.inf]
    for i, name in enumerate(names):
        if isinstance(model.layers[name], Relu):
            dists.append(float(np.min(np.abs(acts[names[i - 1]]))))
        if isinstance(model.layers[name], MaxPooling):
            h = acts[names[i - 1]]
            n, c, hh, ww = h.shape
            windows = h[:, :, :hh // 2 * 2, :ww // 2 * 2].reshape(n, c, hh // 2, 2, ww // 2, 2)
            top2 = np.sort(windows.transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4), axis=1)[:, 2:]
            live = top2[:, 1] > 0  # windows of ReLU zeros: covered by the ReLU distance
            dists.append(float(np.min(top2[live, 1] - top2[live, 0])))
    return min(dists)


def safe_data(model: MLP | CNN, shape: tuple[int, ...], k: int, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """The first seeded batch whose forward pass stays 1e-4 (10 h) from every kink and tie."""
    for seed in range(20):
        x, t = data(shape, k, seed=seed)
        if kink_distance(model, x, train) > 1e-4:
            return x, t
    raise AssertionError("no seed in range(20) gives a kink-free batch")


def masks_for(model: MLP, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.random((n, layer_size)) > model.config.dropout_ratio
            for name, layer_size in zip(("drop1", "drop2"), model.config.hidden_sizes, strict=True)}


# --- gradient checks -------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [
    {}, {"activation": "sigmoid"}, {"weight_decay": 0.1}, {"use_batchnorm": True},
    {"use_batchnorm": True, "dropout_ratio": 0.3, "weight_decay": 0.05},
])
@pytest.mark.parametrize("train", [True, False])
def test_mlp_gradcheck(extra: dict, train: bool) -> None:
    model = MLP(MLPConfig(**SMALL_MLP, **extra), dtype="float64")
    if model.config.use_batchnorm:
        nonzero_bn(model)
    if model.config.dropout_ratio:
        set_dropout_masks(model, masks_for(model, 4))
    x, t = safe_data(model, (20,), 5, train)
    assert_gradients_close(check_model(model, x, t, train=train, input_grad=True))


def test_mlp_gradcheck_l1_decay() -> None:
    model = MLP(MLPConfig(**SMALL_MLP, weight_decay_l1=0.01), dtype="float64")
    x, t = data((20,), 5)
    assert_gradients_close(check_model(model, x, t))


@pytest.mark.parametrize("extra", [{}, {"use_batchnorm": True}, {"weight_decay": 0.1, "stride": 2, "pad": 1}])
@pytest.mark.parametrize("train", [True, False])
def test_cnn_gradcheck(extra: dict, train: bool) -> None:
    model = CNN(CNNConfig(**{**SMALL_CNN, "input_dim": (2, 10, 10)}, **extra), dtype="float64")
    if model.config.use_batchnorm:
        nonzero_bn(model)
    # Seeded random normals can still put two pooled values 1e-5 apart (seed 0 does, here):
    # inside the central difference's reach. safe_data skips such batches.
    x, t = safe_data(model, (2, 10, 10), 4, train)
    assert_gradients_close(check_model(model, x, t, train=train, input_grad=True))


def test_default_shapes_gradcheck_sampled() -> None:
    for model, shape in ((MLP(dtype="float64"), (784,)), (CNN(dtype="float64"), (1, 28, 28))):
        x, t = data(shape, 10, n=2, seed=1)
        assert_gradients_close(check_model(model, x, t, max_entries=3))


# --- activations, input gradient, dtype ------------------------------------------------------
def test_activation_names_in_forward_order() -> None:
    mlp = MLP(MLPConfig(use_batchnorm=True, dropout_ratio=0.2))
    _, acts = mlp.forward(np.zeros((2, 784), np.float32), return_activations=True)
    assert list(acts) == ["fc1", "bn1", "act1", "drop1", "fc2", "bn2", "act2", "drop2", "fc3"]
    cnn = CNN(CNNConfig(use_batchnorm=True))
    logits, acts = cnn.forward(np.zeros((2, 1, 28, 28), np.float32), return_activations=True)
    assert list(acts) == ["conv1", "bn1", "relu1", "pool1", "flatten", "fc1", "relu2", "fc2"]
    assert acts["conv1"].shape == (2, 30, 24, 24) and acts["pool1"].shape == (2, 30, 12, 12)
    assert acts["flatten"].shape == (2, 4320) and acts["fc2"] is logits
    assert list(cnn.layers) == list(acts) and cnn.last_layer is not None and cnn.conv1 is cnn.layers["conv1"]


@pytest.mark.parametrize("cls,shape", [(MLP, (784,)), (CNN, (1, 28, 28))])
def test_float32_end_to_end(cls: type, shape: tuple[int, ...]) -> None:
    model = cls(dtype="float32")
    x, t = data(shape, 10, n=3)
    _, acts = model.forward(x.astype(np.float32), train=True, return_activations=True)
    assert all(a.dtype == np.float32 for a in acts.values())
    _, grads, dx = model.loss_and_gradient(x.astype(np.float32), t, input_grad=True)
    assert all(g.dtype == np.float32 for g in grads.values()) and dx.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.params.values())


def test_input_gradient_only_on_request() -> None:
    model = CNN(CNNConfig(**SMALL_CNN))
    x, t = data((1, 8, 8), 4)
    grads, dx = model.gradient(x, t, input_grad=True)
    assert dx.shape == x.shape and set(grads) == set(model.params)
    _, _, none = model.loss_and_gradient(x, t)
    assert none is None


def test_predict_loss_accuracy() -> None:
    model = MLP(MLPConfig(**SMALL_MLP), dtype="float64")
    x, t = data((20,), 5, n=10)
    logits = model.predict(x)
    assert model.accuracy(x, t, batch_size=3) == np.mean(logits.argmax(1) == t)
    assert model.accuracy(x, np.eye(5)[t]) == model.accuracy(x, t)
    z = logits - logits.max(1, keepdims=True)
    ce = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(10), t])
    assert model.loss(x, t) == pytest.approx(ce, rel=1e-12)


# --- construction, errors --------------------------------------------------------------------
def test_default_construction_is_the_canonical_init() -> None:
    for cls, config in ((MLP, MLPConfig()), (CNN, CNNConfig())):
        params = dump_canonical(cls())
        expected = init_params(config, seed=0, scheme="he", dtype="float32")
        assert list(params) == list(param_spec(config))
        assert all(np.array_equal(params[n], expected[n]) for n in expected)


def test_conv_param_builds_the_config() -> None:
    conv_param = {"filter_num": 8, "filter_size": 3, "pad": 1, "stride": 1}
    model = CNN(conv_param=conv_param)
    assert model.config == CNNConfig(filter_num=8, filter_size=3, pad=1, stride=1)
    assert config_from_conv_param(conv_param, input_dim=(1, 10, 10)).input_dim == (1, 10, 10)
    with pytest.raises(ValueError, match="unknown conv_param key 'filter'"):
        CNN(conv_param={"filter": 3})


def test_user_errors_raise_clear_messages() -> None:
    with pytest.raises(ValueError, match=r"MLP expects input of shape \(N, 784\), got \(2, 28, 28\)"):
        MLP().forward(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"CNN expects input of shape \(N, 1, 28, 28\)"):
        CNN().forward(np.zeros((2, 784)))
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'sigmoid', got 'tanh'"):
        MLP(MLPConfig(activation="tanh"))
    with pytest.raises(ValueError, match="no Dropout layer named 'drop1'"):
        set_dropout_masks(MLP(), {"drop1": np.ones((1, 100), bool)})
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        MLP(dtype="float16")
    with pytest.raises(WeightFileError, match="missing tensor 'fc1.b'"):
        load_canonical(MLP(), {"fc1.W": np.zeros((784, 100), np.float32)})


def test_initializers_wrap_the_contract() -> None:
    assert lecun_std((784, 100)) == pytest.approx(np.sqrt(1 / 784))
    assert scheme_from_course("sigmoid") == ("lecun", 0.01) and scheme_from_course(0.01) == ("std", 0.01)
    config = MLPConfig(**SMALL_MLP)
    a = init_weights(config, "xavier", seed=3)
    b = init_params(config, seed=3, scheme="xavier")
    assert all(np.array_equal(a[n], b[n]) for n in a)
    with pytest.raises(ValueError, match="unknown init scheme"):
        init_weights(config, "glorot")


# --- weight contract round trip --------------------------------------------------------------
@pytest.mark.parametrize("config", [MLPConfig(**SMALL_MLP, use_batchnorm=True), CNNConfig(**SMALL_CNN,
                                                                                           use_batchnorm=True)])
def test_weight_round_trip(tmp_path: Path, config: MLPConfig | CNNConfig) -> None:
    cls = getattr(reference_numpy, config.class_name)
    model = cls(config, params=init_params(config, seed=5, dtype="float64"), dtype="float64")
    shape = (20,) if cls is MLP else (1, 8, 8)
    x, _ = data(shape, 4, n=6)
    model.forward(x, train=True)  # moves the BN running statistics off 0/1
    path = tmp_path / "w.safetensors"
    save_native(model, path)
    params, loaded_config = load_weights(path)
    assert loaded_config == config
    before = dump_canonical(model)
    assert all(np.array_equal(params[n], before[n]) for n in before)
    again = cls(config, dtype="float64")
    load_native(again, path)
    assert np.array_equal(again.forward(x), model.forward(x))
    assert np.array_equal(again.bn1.running_var, model.bn1.running_var)


def test_load_canonical_is_in_place() -> None:
    model = MLP(MLPConfig(**SMALL_MLP))
    w = model.params["fc1.W"]
    load_canonical(model, init_params(model.config, seed=9, dtype="float32"))
    assert model.params["fc1.W"] is w and model.fc1.W is w and w.dtype == np.float32
    # Like the ports, the reference never casts silently: a float64 tensor is refused, by name.
    with pytest.raises(AssertionError, match="fc1.W: dtype float64 != model float32"):
        load_canonical(model, init_params(model.config, seed=9, dtype="float64"))
