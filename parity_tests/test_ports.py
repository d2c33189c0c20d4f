"""What every port shares, one test file run against every port (the Keras 3 backend-test
pattern): the weight tables round-trip bit-exactly and refuse a transposed or silently cast
tensor, the native checkpoint loads back with the framework's own loader, the dtype holds end to
end, and the dropout masks can be injected in both conventions. Each port is driven through its
package surface (docs/conventions.md); the per-port files keep only that framework's traps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import random_params, require_framework, shipped_optimizer_steps

from rosetta import registry
from rosetta.adapters import make_adapter
from rosetta.configs import make_config
from rosetta.parity import synthetic_batch
from rosetta.tolerances import errors, tolerance
from rosetta.weights import param_spec

PORTS = registry.PORTS
CONFIGS = {
    "mlp-bn-dropout": make_config("mlp", use_batchnorm=True, dropout_ratio=0.2, weight_decay=0.1),
    "cnn-bn": make_config("cnn", use_batchnorm=True),
    "deepcnn": make_config("deepcnn", input_dim=(1, 12, 12), hidden_size=7),
}


def package(framework: str):  # noqa: ANN201 - the implementation package
    require_framework(framework)
    return registry.package(framework)


def build(framework: str, config, params, dtype: str):  # noqa: ANN001, ANN201
    return getattr(package(framework), config.class_name)(config, params=params, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("key", CONFIGS)
@pytest.mark.parametrize("framework", PORTS)
def test_weights_round_trip_bit_exact(framework: str, key: str, dtype: str) -> None:
    config = CONFIGS[key]
    params = random_params(config, dtype)
    dumped = package(framework).dump_canonical(build(framework, config, params, dtype))
    assert list(dumped) == list(param_spec(config))
    for name, value in params.items():
        assert dumped[name].dtype == value.dtype and dumped[name].flags.c_contiguous, name
        assert np.array_equal(dumped[name], value), f"{name} changed in the round trip"


@pytest.mark.parametrize("framework", PORTS)
def test_load_canonical_refuses_a_transposed_or_cast_tensor(framework: str) -> None:
    config = make_config("mlp")
    params = random_params(config, "float32")
    model = build(framework, config, params, "float32")
    with pytest.raises(AssertionError, match=r"fc1\.W.*shape"):
        package(framework).load_canonical(model, {**params, "fc1.W": params["fc1.W"].T.copy()})
    with pytest.raises(AssertionError, match=r"fc2\.b.*float64"):
        package(framework).load_canonical(model, {**params, "fc2.b": params["fc2.b"].astype(np.float64)})


@pytest.mark.parametrize("key", CONFIGS)
@pytest.mark.parametrize("framework", PORTS)
def test_native_checkpoint_round_trip(framework: str, key: str, tmp_path: Path) -> None:
    """save_native writes the framework's own format; load_native (the framework's own loader, or
    Chainer's deserializer without pickle) reads it into a fresh model: same tensors, same logits."""
    config = CONFIGS[key]
    pkg = package(framework)
    params = random_params(config, "float32")
    model = build(framework, config, params, "float32")
    path = tmp_path / f"model{registry.FRAMEWORKS[framework].native_suffix}"
    pkg.save_native(model, path)
    fresh = build(framework, config, None, "float32")
    pkg.load_native(fresh, path)
    for name, value in pkg.dump_canonical(fresh).items():
        assert np.array_equal(value, params[name]), name
    x, _ = synthetic_batch(config, "float32", n=3)
    a = make_adapter(framework, config, params, "float32")
    b = make_adapter(framework, config, pkg.dump_canonical(fresh), "float32")
    assert np.array_equal(a.logits(x), b.logits(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("framework", PORTS)
def test_dtype_end_to_end(framework: str, dtype: str) -> None:
    config = CONFIGS["mlp-bn-dropout"]
    require_framework(framework)
    adapter = make_adapter(framework, config, random_params(config, dtype), dtype)
    x, t = synthetic_batch(config, dtype)
    for train in (False, True):
        assert {a.dtype for a in adapter.forward(x, train=train).values()} == {np.dtype(dtype)}
    _, grads, dx = adapter.loss_and_grads(x, t, input_grad=True)
    assert {g.dtype for g in grads.values()} == {np.dtype(dtype)} and dx.dtype == np.dtype(dtype)
    adapter.set_optimizer("adam")
    adapter.train_step(x, t)
    assert {v.dtype for v in adapter.params().values()} == {np.dtype(dtype)}


@pytest.mark.parametrize("mode", ["inverted", "course"])
@pytest.mark.parametrize("framework", PORTS)
def test_dropout_masks_injected_in_both_conventions(framework: str, mode: str) -> None:
    require_framework(framework)
    config = make_config("mlp", dropout_ratio=0.3, dropout_mode=mode)
    adapter = make_adapter(framework, config, random_params(config, "float64"), "float64")
    x, _ = synthetic_batch(config, "float64", n=16)
    rng = np.random.default_rng(3)
    masks = {f"drop{i}": rng.random((16, 100)) > 0.3 for i in (1, 2)}
    adapter.set_dropout_masks(masks)
    acts = adapter.forward(x, train=True)
    train_scale, eval_scale = (1 / (1 - 0.3), 1.0) if mode == "inverted" else (1.0, 1 - 0.3)
    tol = tolerance("float64", "dropout")
    assert errors(acts["drop1"], acts["act1"] * masks["drop1"] * train_scale)[1] <= tol
    evals = adapter.forward(x, train=False)
    assert errors(evals["drop1"], evals["act1"] * eval_scale)[1] <= tol
    adapter.set_dropout_masks(None)  # random again: about 30% of the units dropped
    acts = adapter.forward(x, train=True)
    dropped = np.mean(acts["drop1"][acts["act1"] > 0] == 0)
    assert 0.2 < dropped < 0.45
    with pytest.raises(ValueError, match="no Dropout layer named 'drop9'"):
        adapter.set_dropout_masks({"drop9": masks["drop1"]})


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("framework", PORTS)
def test_shipped_optimizers_match_the_reference(framework: str, name: str) -> None:
    """Each port's optimizer class with the reference hyper-parameters (the course's defaults) makes
    the reference's steps: 1 and 10 steps, with an lr change before the fourth (set_lr keeps the
    state), one gradient element near 0 where eps matters."""
    from reference_numpy import make_optimizer

    require_framework(framework)
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(12)
    grads = [rng.standard_normal(12) for _ in range(10)]
    for g in grads:
        g[0] = 1e-6
    lrs = [0.01] * 3 + [0.02] * 7 if name != "adam" else [1e-3] * 3 + [2e-3] * 7
    for steps in (1, 10):
        params = {"w": w0.copy()}
        opt = make_optimizer(name, **{})
        for i, g in enumerate(grads[:steps]):
            opt.lr = lrs[i]
            opt.update(params, {"w": g})
        got = shipped_optimizer_steps(framework, name, w0, grads[:steps], lrs[:steps])
        err = errors(got - w0, params["w"] - w0)[1]
        assert err <= tolerance("float64", "optimizer"), f"{framework} {name} after {steps}: {err:.3g}"
