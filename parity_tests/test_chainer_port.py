"""Tests specific to the Chainer port: weight round trip, dtypes, Chainer's own serializers, and
every place where a Chainer built-in default differs from the contract (docs/conventions.md).

Each "default" test measures the mismatch of Chainer's default against the contract formula
(it must be there and above the float32 tolerance; the size is in the assertion message) and
shows that the configuration chainer_impl uses matches the formula.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import batch

from rosetta.tolerances import errors, tolerance
from rosetta.weights import CNNConfig, MLPConfig, init_params, param_spec, trainable_names

try:
    from chainer_impl.compat import import_chainer

    chainer = import_chainer()
except ImportError as exc:  # chainer not installed: skip, or fail in CI
    if os.environ.get("ROSETTA_REQUIRE_ALL") == "1":  # CI: a missing framework fails
        raise
    pytest.skip(f"chainer is not installed ({exc})", allow_module_level=True)

import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402

import chainer_impl  # noqa: E402
from chainer_impl import optimizers as chainer_opt  # noqa: E402
from chainer_impl.layers import contiguous  # noqa: E402
from chainer_impl.weights import dump_canonical  # noqa: E402
from rosetta.adapters.chainer_adapter import ChainerAdapter  # noqa: E402

F32 = tolerance("float32", "optimizer")  # 1e-5: a real default mismatch must exceed this
CONFIGS = {
    "mlp": MLPConfig(use_batchnorm=True, dropout_ratio=0.3, weight_decay=0.01),
    "cnn": CNNConfig(filter_num=4, hidden_size=16, use_batchnorm=True, weight_decay=0.01),
}


def random_params(config, dtype: str, seed: int = 1) -> dict[str, np.ndarray]:
    """Canonical params with every tensor non-trivial (biases, beta and BN state too)."""
    rng = np.random.default_rng(seed)
    params = init_params(config, seed=seed, dtype=dtype)
    for name, value in params.items():
        if not name.endswith(".W"):
            noise = rng.standard_normal(value.shape)
            value[...] = np.abs(noise) + 0.5 if name.endswith(("running_var", "gamma")) else noise
    return params


# --- weights ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_weights_round_trip_bit_exact(model: str, dtype: str) -> None:
    config = CONFIGS[model]
    params = random_params(config, dtype)
    net = getattr(chainer_impl, config.class_name)(config, params=params, dtype=dtype)
    out = dump_canonical(net)
    assert list(out) == list(param_spec(config))
    for name, value in params.items():
        assert out[name].dtype == value.dtype, name
        assert np.array_equal(out[name], value), f"{name} changed in the round trip"
    # The native layouts: Linear W is (out, in), Convolution2D W is OIHW, BN state is avg_*.
    assert np.array_equal(net.fc1.W.array, params["fc1.W"].T)
    assert np.array_equal(net.bn1.avg_var, params["bn1.running_var"])
    if "conv1.W" in params:
        assert np.array_equal(net.conv1.W.array, params["conv1.W"])


# --- dtypes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_dtype_end_to_end(model: str, dtype: str) -> None:
    config = CONFIGS[model]
    adapter = ChainerAdapter(config, random_params(config, dtype), dtype)
    for name, param in adapter.model.namedparams():
        assert param.dtype == dtype, f"native param {name} is {param.dtype}"
    for name, link in adapter.model.namedlinks():
        if isinstance(link, L.BatchNormalization):
            assert link.avg_mean.dtype == dtype and link.avg_var.dtype == dtype, name
    x, t = batch(config, dtype)
    rng = np.random.default_rng(1)
    adapter.set_dropout_masks({n: rng.random((len(x), 100)) >= 0.3 for n in config.dropout_layers()})
    for train in (False, True):
        for name, value in adapter.forward(x, train=train).items():
            assert value.dtype == dtype, f"activation {name} (train={train}) is {value.dtype}"
    loss, grads, dx = adapter.loss_and_grads(x, t, input_grad=True)
    assert isinstance(loss, float)
    assert list(grads) == trainable_names(config)
    for name, g in grads.items():
        assert g.dtype == dtype, f"grad {name} is {g.dtype}"
    assert dx is not None and dx.dtype == dtype and dx.shape == x.shape
    for name in ("sgd", "momentum", "adagrad", "rmsprop", "adam"):
        adapter.set_optimizer(name)
        adapter.train_step(x, t)
        for pname, param in adapter.model.namedparams():
            assert param.dtype == dtype, f"{name}: param {pname} became {param.dtype}"
            for key, state in param.update_rule.state.items():
                assert state.dtype == dtype, f"{name}: state {key} of {pname} is {state.dtype}"
    assert all(v.dtype == dtype for v in adapter.params().values())


# --- optimizer defaults vs the contract ---------------------------------------------------------
def contract_steps(name: str, w: np.ndarray, grads: list[np.ndarray], **hp: float) -> np.ndarray:
    """The contract's update equations (docs/conventions.md), in float64."""
    w = w.copy()
    s1, s2 = np.zeros_like(w), np.zeros_like(w)
    for step, g in enumerate(grads, start=1):
        if name == "sgd":
            w -= hp["lr"] * g
        elif name == "momentum":
            s1 = hp["momentum"] * s1 - hp["lr"] * g
            w += s1
        elif name == "adagrad":
            s1 += g * g
            w -= hp["lr"] * g / (np.sqrt(s1) + hp["eps"])
        elif name == "rmsprop":
            s1 = hp["rho"] * s1 + (1 - hp["rho"]) * g * g
            w -= hp["lr"] * g / (np.sqrt(s1) + hp["eps"])
        else:  # adam
            lr_t = hp["lr"] * np.sqrt(1 - hp["beta2"] ** step) / (1 - hp["beta1"] ** step)
            s1 += (1 - hp["beta1"]) * (g - s1)
            s2 += (1 - hp["beta2"]) * (g * g - s2)
            w -= lr_t * s1 / (np.sqrt(s2) + hp["eps"])
    return w


class OneParam(chainer.Link):
    def __init__(self, w: np.ndarray) -> None:
        super().__init__()
        with self.init_scope():
            self.W = chainer.Parameter(w.copy())


def chainer_steps(optimizer: chainer.Optimizer, w: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
    link = OneParam(w)
    optimizer.setup(link)
    for g in grads:
        link.W.grad = g.copy()
        optimizer.update()
    return link.W.array


# Gradients from 1e-9 to 1: small ones make eps visible, as late in training.
RNG = np.random.default_rng(7)
W0 = RNG.standard_normal(64)
GRADS = [np.sign(RNG.standard_normal(64)) * np.logspace(-9, 0, 64) * (1 + 0.1 * k) for k in range(5)]
CONTRACT = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "adagrad": {"lr": 0.01, "eps": 1e-7},
    "rmsprop": {"lr": 0.01, "rho": 0.99, "eps": 1e-7},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7},
}


def update_error(actual: np.ndarray, name: str) -> float:
    """Relative error of the total update (W - W0), not of W, so small mismatches are not hidden."""
    expected = contract_steps(name, W0, GRADS, **CONTRACT[name])
    return errors(actual - W0, expected - W0)[1]


@pytest.mark.parametrize(("name", "builtin", "what"), [
    ("adagrad", lambda: chainer.optimizers.AdaGrad(), "defaults lr=0.001, eps=1e-8"),
    ("adagrad", lambda: chainer.optimizers.AdaGrad(lr=0.01), "default eps=1e-8"),
    ("rmsprop", lambda: chainer.optimizers.RMSprop(), "default eps=1e-8"),
    ("rmsprop", lambda: chainer.optimizers.RMSprop(eps=1e-7, eps_inside_sqrt=True), "eps_inside_sqrt"),
    ("adam", lambda: chainer.optimizers.Adam(), "default eps=1e-8"),
])
def test_builtin_optimizer_default_differs(name: str, builtin, what: str) -> None:
    err = update_error(chainer_steps(builtin(), W0, GRADS), name)
    assert err > F32, f"{name} {what}: no mismatch ({err:.2e})"
    print(f"{name} {what}: relative update error {err:.2e}")


def test_builtin_sgd_momentum_defaults_equal_contract() -> None:
    """SGD(lr=0.01) and MomentumSGD(lr=0.01, momentum=0.9): Chainer's defaults are the course's."""
    for name, builtin in (("sgd", chainer.optimizers.SGD()),
                          ("momentum", chainer.optimizers.MomentumSGD())):
        err = update_error(chainer_steps(builtin, W0, GRADS), name)
        assert err <= tolerance("float64", "optimizer"), f"{name}: {err:.2e}"


def test_adam_float64_hyperparameter_math() -> None:
    """Chainer's alpha_t is a Python float (float64), so float64 Adam is exact to round-off."""
    ours = chainer_steps(chainer_opt.Adam(), W0, GRADS)
    assert ours.dtype == np.float64
    err = update_error(ours, "adam")
    assert err <= 1e-14, f"float64 Adam update error {err:.2e}"


# --- BatchNorm --------------------------------------------------------------------------------
def contract_bn(x: np.ndarray, gamma, beta, rm, rv, momentum: float, eps: float):
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    m = x.size // x.shape[1]
    y = gamma.reshape(shape) * (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) \
        + beta.reshape(shape)
    return y, momentum * rm + (1 - momentum) * mu, momentum * rv + (1 - momentum) * var * m / (m - 1)


def run_bn(link: L.BatchNormalization, x, gamma, beta, rm, rv):
    link.gamma.array[...] = gamma
    link.beta.array[...] = beta
    link.avg_mean[...] = rm
    link.avg_var[...] = rv
    with chainer.using_config("train", True):
        y = link(x).array
    return y, link.avg_mean.copy(), link.avg_var.copy()


@pytest.mark.parametrize("shape", [(16, 6), (4, 3, 5, 5)])
def test_batchnorm_configured_matches_contract_and_default_eps_differs(shape) -> None:
    rng = np.random.default_rng(3)
    c = shape[1]
    # Small variance per feature so that eps matters, as for near-constant features in training.
    x = rng.standard_normal(shape) * 3e-3 + rng.standard_normal((1, c) + (1,) * (len(shape) - 2))
    gamma, beta = rng.random(c) + 0.5, rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    expected = contract_bn(x, gamma, beta, rm, rv, 0.9, 1e-5)

    ours = run_bn(L.BatchNormalization(c, decay=0.9, eps=1e-5, dtype=np.float64), x, gamma, beta, rm, rv)
    for what, a, r in zip(("y", "running_mean", "running_var"), ours, expected, strict=True):
        err = errors(a, r)[1]
        assert err <= tolerance("float64", "batchnorm"), f"configured BN {what}: {err:.2e}"

    default = run_bn(L.BatchNormalization(c, dtype=np.float64), x, gamma, beta, rm, rv)
    err_y = errors(default[0], expected[0])[1]
    assert err_y > F32, f"default eps=2e-5: y mismatch {err_y:.2e}"
    # Chainer's decay default (0.9) and its unbiased running var are the contract's already.
    assert errors(default[2], expected[2])[1] <= tolerance("float64", "batchnorm")
    print(f"BN default eps=2e-5: relative y error {err_y:.2e}")


def test_batchnorm_float32_on_conv_output_needs_contiguous() -> None:
    """Chainer's CPU conv output is an NHWC-strided view; BatchNorm's float32 statistics over it
    sum naively. The port copies it C-contiguous first (cnn.py), which is as exact as NumPy."""
    rng = np.random.default_rng(0)
    x64 = np.rollaxis(rng.standard_normal((32, 24, 24, 30)) * 0.3 + 0.5, 3, 1)  # like conv1's
    x32 = x64.astype(np.float32)  # astype keeps the NHWC strides
    conv = L.Convolution2D(1, 30, 5)
    assert not conv(np.zeros((1, 1, 28, 28), np.float32)).array.flags.c_contiguous

    def bn(x, dtype, make_contiguous: bool) -> np.ndarray:
        link = L.BatchNormalization(30, eps=1e-5, dtype=dtype)
        with chainer.using_config("train", True):
            return link(contiguous(x) if make_contiguous else x).array

    truth = bn(x64, np.float64, True)
    strided = errors(bn(x32, np.float32, False), truth)[1]
    ours = errors(bn(x32, np.float32, True), truth)[1]
    assert ours <= 1e-6, f"contiguous float32 BN error {ours:.2e}"
    assert strided > 5 * ours, f"strided {strided:.2e} vs contiguous {ours:.2e}"
    print(f"BN float32 on the strided conv output: {strided:.2e}, contiguous: {ours:.2e}")


# --- pooling, dropout, loss -------------------------------------------------------------------
def test_max_pooling_cover_all_default_differs() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 25, 25))
    expected = x[:, :, :24, :24].reshape(2, 3, 12, 2, 12, 2).max(axis=(3, 5))  # floor, no pad
    ours = F.max_pooling_2d(x, 2, stride=2, cover_all=False).array
    assert np.array_equal(ours, expected)
    default = F.max_pooling_2d(x, 2, stride=2).array
    assert default.shape == (2, 3, 13, 13), f"cover_all=True shape {default.shape}, contract (12, 12)"


def test_loss_int64_and_int32_labels_agree() -> None:
    """F.softmax_cross_entropy documents int32 labels; the port casts, the canonical are int64."""
    z = np.random.default_rng(0).standard_normal((5, 10))
    t = np.array([0, 3, 9, 2, 2])
    expected = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(5), t])
    for labels in (t.astype(np.int32), t.astype(np.int64)):
        assert abs(float(F.softmax_cross_entropy(z, labels).array) - expected) <= 1e-14
