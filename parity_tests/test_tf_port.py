"""Tests specific to the TensorFlow/Keras port: the weight mapping, dtypes, Keras-native checkpoints,
and every place where a Keras built-in default differs from the contract (measured, then fixed).

The cross-framework parity matrix lives in test_parity.py; here each contract formula is written
out in NumPy next to the Keras computation it pins down.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from conftest import PORT_CONFIGS, batch, import_framework, random_params

tf = import_framework("tensorflow")
keras = import_framework("keras")

import tf_impl  # noqa: E402
from rosetta.adapters.base import OPTIMIZER_DEFAULTS  # noqa: E402
from rosetta.adapters.tf_adapter import TFAdapter  # noqa: E402
from rosetta.tolerances import errors, tolerance  # noqa: E402
from rosetta.weights import CNNConfig, MLPConfig, init_params, is_state, param_spec  # noqa: E402
from tf_impl.layers import BatchNorm, softmax_cross_entropy  # noqa: E402
from tf_impl.mlp import MLP  # noqa: E402
from tf_impl.optimizers import make_optimizer  # noqa: E402
from tf_impl.weights import dump_canonical  # noqa: E402

DTYPES = ("float32", "float64")
CONFIGS = PORT_CONFIGS


def make_model(config: MLPConfig | CNNConfig, params: dict[str, np.ndarray], dtype: str):
    return getattr(tf_impl, config.class_name)(config, params=params, dtype=dtype)


# --- weights -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", CONFIGS)
def test_weights_round_trip_bit_exact(key: str, dtype: str) -> None:
    config = CONFIGS[key]
    params = random_params(config, dtype)
    model = make_model(config, params, dtype)
    if "conv1.W" in params:  # the native conv kernel really is HWIO
        assert tuple(model.conv1.kernel.shape) == (5, 5, 1, 30)
        np.testing.assert_array_equal(model.conv1.kernel.numpy()[1, 2, 0, 3], params["conv1.W"][3, 0, 1, 2])
    dumped = dump_canonical(model)
    assert list(dumped) == list(param_spec(config))
    for name, value in params.items():
        assert dumped[name].dtype == value.dtype, name
        np.testing.assert_array_equal(dumped[name], value, err_msg=name)


# --- dtypes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", CONFIGS)
def test_dtype_end_to_end(key: str, dtype: str) -> None:
    """No silent upcast or downcast: variables, activations, loss, grads, dx and optimizer state."""
    config = CONFIGS[key]
    adapter = TFAdapter(config, random_params(config, dtype), dtype)
    assert {v.dtype for v in adapter.model.weights} == {dtype}
    x, t = batch(config, dtype)
    for train in (False, True):
        for name, a in adapter.forward(x, train=train).items():
            assert a.dtype == np.dtype(dtype), (name, a.dtype)
    loss, grads, dx = adapter.loss_and_grads(x, t, input_grad=True)
    assert dx.dtype == np.dtype(dtype) and dx.shape == x.shape
    assert all(g.dtype == np.dtype(dtype) for g in grads.values())
    logits = adapter.model(tf.constant(adapter._input(x)), training=False)
    assert logits.dtype == dtype
    assert softmax_cross_entropy(logits, tf.constant(t)).dtype == dtype
    for name in OPTIMIZER_DEFAULTS:  # every optimizer's state in the model dtype
        optimizer = make_optimizer(name, adapter.model)
        state = [s for attr in ("v", "h", "m") for s in getattr(optimizer, attr, [])]
        assert state or name == "sgd"
        assert all(s.dtype == dtype for s in state), name
    adapter.set_optimizer("adam")  # one compiled step (tracing each optimizer costs ~1 s)
    adapter.train_step(x, t)
    assert all(v.dtype == np.dtype(dtype) for v in adapter.params().values())


def test_keras_layer_without_dtype_computes_in_float32() -> None:
    """NOTE(framework:keras-dtype): a Keras layer built without dtype= runs in float32 even on
    float64 input."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 20))
    w = rng.standard_normal((20, 5))
    default = keras.layers.Dense(5)
    default.build((None, 20))
    default.kernel.assign(w.astype(np.float32))
    y = default(x).numpy()
    assert y.dtype == np.float32
    mismatch = errors(y, x @ w)[1]
    assert mismatch > tolerance("float64", "logits"), f"default-dtype Dense: {mismatch:.3g}"
    configured = keras.layers.Dense(5, dtype="float64")
    configured.build((None, 20))
    configured.kernel.assign(w)
    y64 = configured(x).numpy()
    assert y64.dtype == np.float64 and errors(y64, x @ w)[1] <= tolerance("float64", "logits")


def test_loss_builtin_default_vs_contract() -> None:
    """Keras' SparseCategoricalCrossentropy returns float32 for float64 logits; ours stays float64."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, 10)) * 5
    t = rng.integers(0, 10, 64)
    m = z.max(axis=1)
    reference = np.mean(m + np.log(np.exp(z - m[:, None]).sum(axis=1)) - z[np.arange(64), t])
    builtin = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(t, z).numpy()
    assert builtin.dtype == np.float32
    mismatch = errors(builtin, reference)[1]
    assert mismatch > tolerance("float64", "loss"), f"Keras loss default: {mismatch:.3g}"
    ours = softmax_cross_entropy(tf.constant(z), tf.constant(t)).numpy()
    assert ours.dtype == np.float64
    assert errors(ours, reference)[1] <= tolerance("float64", "loss")


def test_cnn_flattens_in_canonical_chw_order() -> None:
    """The NHWC -> NCHW transpose before flatten keeps fc1.W's canonical (C, H, W) rows."""
    config = CNNConfig()
    adapter = TFAdapter(config, init_params(config, dtype="float64"), "float64")
    x, _ = batch(config, "float64", n=4)
    acts = adapter.forward(x)
    pool = acts["pool1"]  # canonical NCHW
    np.testing.assert_array_equal(acts["flatten"], pool.reshape(4, -1))
    nhwc_order = np.transpose(pool, (0, 2, 3, 1)).reshape(4, -1)
    assert not np.array_equal(acts["flatten"], nhwc_order)


def test_train_step_traced_once_for_any_batch_size() -> None:
    config = MLPConfig()
    adapter = TFAdapter(config, init_params(config), "float32")
    adapter.set_optimizer("adam")
    for n in (16, 7, 32, 16):
        adapter.train_step(*batch(config, "float32", n=n))
    assert adapter.optimizer.compiled_step.experimental_get_tracing_count() == 1


# --- dropout and BatchNorm ---------------------------------------------------------------------

def test_dropout_injected_mask() -> None:
    config = MLPConfig(dropout_ratio=0.4)
    adapter = TFAdapter(config, init_params(config, dtype="float64"), "float64")
    x, _ = batch(config, "float64", n=8)
    rng = np.random.default_rng(3)
    masks = {f"drop{i}": rng.random((8, 100)) >= 0.4 for i in (1, 2)}
    eval_acts = adapter.forward(x, train=False)
    np.testing.assert_array_equal(eval_acts["drop1"], eval_acts["act1"])
    adapter.set_dropout_masks(masks)
    acts = adapter.forward(x, train=True)
    for i in (1, 2):
        expected = acts[f"act{i}"] * masks[f"drop{i}"] / (1 - 0.4)
        assert errors(acts[f"drop{i}"], expected)[1] <= tolerance("float64", "dropout")
    # A new mask replaces the old one in the compiled graph (it is retraced).
    flipped = {n: ~m for n, m in masks.items()}
    adapter.set_dropout_masks(flipped)
    acts2 = adapter.forward(x, train=True)
    np.testing.assert_array_equal(acts2["drop1"] != 0, flipped["drop1"] & (acts2["act1"] != 0))
    adapter.set_dropout_masks(None)  # random masks again: some units dropped
    assert np.any(adapter.forward(x, train=True)["drop1"] == 0)


def contract_batchnorm(x, running_mean, running_var, momentum=0.9, eps=1e-5):
    axes = tuple(range(x.ndim - 1))
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    m = x.size // x.shape[-1]
    y = (x - mu) / np.sqrt(var + eps)
    return (y, momentum * running_mean + (1 - momentum) * mu,
            momentum * running_var + (1 - momentum) * var * m / (m - 1))


def bn_steps(layer, xs):
    for x in xs:
        y = layer(tf.constant(x), training=True)
    stats = [v.numpy() for v in layer.non_trainable_weights]
    return y.numpy(), stats[0], stats[1]


def test_batchnorm_builtin_default_vs_contract() -> None:
    """keras BatchNormalization: momentum=0.99, epsilon=1e-3 by default, and even configured to
    the contract's numbers its moving_variance takes the *biased* batch variance."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((32, 5)) * 3 + 2 for _ in range(5)]
    ref_rm, ref_rv = np.zeros(5), np.ones(5)
    for x in xs:
        ref_y, ref_rm, ref_rv = contract_batchnorm(x, ref_rm, ref_rv)
    tol = tolerance("float64", "batchnorm")
    default = keras.layers.BatchNormalization(dtype="float64")
    y, rm, rv = bn_steps(default, xs)
    mismatch = max(errors(y, ref_y)[1], errors(rm, ref_rm)[1], errors(rv, ref_rv)[1])
    assert mismatch > tol, f"Keras BN defaults vs contract: {mismatch:.3g}"
    configured = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="float64")
    y, rm, rv = bn_steps(configured, xs)
    assert max(errors(y, ref_y)[1], errors(rm, ref_rm)[1]) <= tol
    gap = errors(rv, ref_rv)[1]
    assert gap > tol, f"Keras biased moving_variance vs contract's unbiased: {gap:.3g}"
    ours = BatchNorm(0.9, 1e-5, dtype="float64")
    y, rm, rv = bn_steps(ours, xs)
    assert max(errors(y, ref_y)[1], errors(rm, ref_rm)[1], errors(rv, ref_rv)[1]) <= tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_cnn_batchnorm_per_channel_matches_contract(dtype: str) -> None:
    config = CNNConfig(use_batchnorm=True, bn_momentum=0.8, bn_eps=1e-3)
    params = random_params(config, dtype)
    adapter = TFAdapter(config, params, dtype)
    x, _ = batch(config, dtype)
    acts = adapter.forward(x, train=True)
    c = np.transpose(acts["conv1"].astype(np.float64), (0, 2, 3, 1))  # channels last
    y, rm, rv = contract_batchnorm(c, params["bn1.running_mean"].astype(np.float64),
                                   params["bn1.running_var"].astype(np.float64), 0.8, 1e-3)
    y = params["bn1.gamma"] * y + params["bn1.beta"]
    tol = tolerance(dtype, "batchnorm")
    state = adapter.params()
    assert errors(acts["bn1"], np.transpose(y, (0, 3, 1, 2)))[1] <= tol
    assert errors(state["bn1.running_mean"], rm)[1] <= tol
    assert errors(state["bn1.running_var"], rv)[1] <= tol
    eval_acts = adapter.forward(x, train=False)  # eval uses the running statistics just updated
    c = np.transpose(eval_acts["conv1"].astype(np.float64), (0, 2, 3, 1))
    y = params["bn1.gamma"] * (c - rm) / np.sqrt(rv + 1e-3) + params["bn1.beta"]
    assert errors(eval_acts["bn1"], np.transpose(y, (0, 3, 1, 2)))[1] <= tol


# --- optimizers: built-in defaults vs the contract's equations ---------------------------------

@functools.cache
def fixed_gradients() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Real float64 CNN gradients (from random batches) with their wide spread of magnitudes."""
    config = CNNConfig(filter_num=6, hidden_size=20)
    params = init_params(config, dtype="float64")
    adapter = TFAdapter(config, params, "float64")
    grads = [adapter.loss_and_grads(*batch(config, "float64", n=8, seed=step))[1] for step in range(10)]
    return {n: v for n, v in params.items() if not is_state(n)}, grads


def contract_steps(name: str, hp: dict[str, float], params, grads) -> dict[str, np.ndarray]:
    """The reference update equations of docs/conventions.md, verbatim, in float64."""
    w = {n: v.astype(np.float64) for n, v in params.items()}
    s1 = {n: np.zeros_like(v) for n, v in w.items()}
    s2 = {n: np.zeros_like(v) for n, v in w.items()}
    for step, g in enumerate(grads, start=1):
        for n in w:
            gn = g[n].astype(np.float64)
            if name == "sgd":
                w[n] -= hp["lr"] * gn
            elif name == "momentum":
                s1[n] = hp["momentum"] * s1[n] - hp["lr"] * gn
                w[n] += s1[n]
            elif name == "adagrad":
                s1[n] += gn * gn
                w[n] -= hp["lr"] * gn / (np.sqrt(s1[n]) + hp["eps"])
            elif name == "rmsprop":
                s1[n] = hp["rho"] * s1[n] + (1 - hp["rho"]) * gn * gn
                w[n] -= hp["lr"] * gn / (np.sqrt(s1[n]) + hp["eps"])
            elif name == "adam":
                lr_t = hp["lr"] * math.sqrt(1 - hp["beta2"] ** step) / (1 - hp["beta1"] ** step)
                s1[n] += (1 - hp["beta1"]) * (gn - s1[n])
                s2[n] += (1 - hp["beta2"]) * (gn * gn - s2[n])
                w[n] -= lr_t * s1[n] / (np.sqrt(s2[n]) + hp["eps"])
    return w


def keras_steps(make, params, grads, dtype: str) -> dict[str, np.ndarray]:
    w = {n: keras.Variable(v.astype(dtype), dtype=dtype) for n, v in params.items()}
    optimizer = make()
    for g in grads:
        optimizer.apply_gradients([(tf.constant(g[n].astype(dtype)), v) for n, v in w.items()])
    return {n: v.numpy() for n, v in w.items()}


def max_error(actual, reference) -> float:
    return max(errors(actual[n], reference[n])[1] for n in reference)


# Keras built-ins with Keras' own defaults for everything the contract does not pin.
BUILTIN_DEFAULTS = {
    # initial_accumulator_value=0.1 and eps inside the sqrt
    "adagrad": ("float32", lambda: keras.optimizers.Adagrad(learning_rate=0.01)),
    # only the eps placement left: sqrt(h + eps) instead of sqrt(h) + eps
    "adagrad-eps-placement": ("float32", lambda: keras.optimizers.Adagrad(
        learning_rate=0.01, initial_accumulator_value=0.0, epsilon=1e-7)),
    # rho=0.9 (the contract's is 0.99) and eps inside the sqrt
    "rmsprop": ("float32", lambda: keras.optimizers.RMSprop(learning_rate=0.01)),
    "rmsprop-eps-placement": ("float32", lambda: keras.optimizers.RMSprop(
        learning_rate=0.01, rho=0.99, epsilon=1e-7)),
    # the course's form exactly, but lr is a float32 variable: a float64 model steps with
    # float32(0.001) and float32 beta powers
    "adam-float64": ("float64", lambda: keras.optimizers.Adam(learning_rate=0.001, epsilon=1e-7)),
    # the same form as the contract's momentum; lr held in float32
    "momentum-float64": ("float64", lambda: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)),
    "sgd-float64": ("float64", lambda: keras.optimizers.SGD(learning_rate=0.01)),
}


@pytest.mark.parametrize("case", BUILTIN_DEFAULTS)
def test_builtin_optimizer_default_mismatch(case: str) -> None:
    """Measure how far the Keras built-in differs from the contract over 10 real gradient steps."""
    name = case.split("-")[0]
    name = "sgd" if case == "sgd-float64" else name
    dtype, make = BUILTIN_DEFAULTS[case]
    params, grads = fixed_gradients()
    reference = contract_steps(name, OPTIMIZER_DEFAULTS[name], params, grads)
    mismatch = max_error(keras_steps(make, params, grads, dtype), reference)
    tol = tolerance(dtype, "optimizer")
    assert mismatch > tol, f"{case}: built-in mismatch {mismatch:.3g} not above tolerance {tol:g}"
    print(f"{case}: Keras built-in mismatch after 10 steps = {mismatch:.3g} (relative, {dtype})")


@pytest.mark.parametrize("name", ["adam", "momentum", "sgd"])
def test_keras_builtin_matches_contract_in_float32(name: str) -> None:
    """Where Keras computes the contract's form (Adam, SGD with momentum), float32 agrees: the
    only gap is the float32 hyper-parameters, visible in float64 only (see above)."""
    make = {"adam": lambda: keras.optimizers.Adam(learning_rate=0.001, epsilon=1e-7),
            "momentum": lambda: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
            "sgd": lambda: keras.optimizers.SGD(learning_rate=0.01)}[name]
    params, grads = fixed_gradients()
    reference = contract_steps(name, OPTIMIZER_DEFAULTS[name], params, grads)
    mismatch = max_error(keras_steps(make, params, grads, "float32"), reference)
    assert mismatch <= tolerance("float32", "optimizer"), f"{name}: {mismatch:.3g}"


def test_make_optimizer_takes_reference_names() -> None:
    model = MLP(MLPConfig())
    for name, defaults in OPTIMIZER_DEFAULTS.items():
        optimizer = make_optimizer(name, model)
        assert {k: getattr(optimizer, k) for k in defaults} == defaults
        assert len(optimizer.variables) == len(model.trainable_variables)
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer("adam", model, learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adamw", model)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_set_lr_keeps_state_and_compiled_step(name: str) -> None:
    """An lr schedule reaches the compiled step (lr is a variable, no retrace) and the optimizer
    state carries over, as in the reference."""
    from rosetta.adapters.numpy_adapter import NumpyAdapter

    config = MLPConfig(hidden_sizes=(20,))
    params = init_params(config, dtype="float64")
    ours, ref = TFAdapter(config, params, "float64"), NumpyAdapter(config, params, "float64")
    for adapter in (ours, ref):
        adapter.set_optimizer(name)
        for step, lr in enumerate((0.01, 0.01, 0.003, 0.05)):
            adapter.set_lr(lr)
            adapter.train_step(*batch(config, "float64", n=8, seed=step))
    assert ours.optimizer.compiled_step.experimental_get_tracing_count() == 1
    ref_params = ref.params()
    mismatch = max(errors(v, ref_params[n])[1] for n, v in ours.params().items())
    assert mismatch <= tolerance("float64", "optimizer"), f"{name}: {mismatch:.3g}"
