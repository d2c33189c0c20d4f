"""NumpyAdapter: the reference behind the canonical Adapter interface."""

from __future__ import annotations

import numpy as np
import pytest

from rosetta.adapters.base import OPTIMIZER_DEFAULTS, Adapter
from rosetta.adapters.numpy_adapter import NumpyAdapter
from rosetta.tolerances import errors, tolerance
from rosetta.weights import CNNConfig, MLPConfig, init_params, param_spec, trainable_names

MLP_CFG = MLPConfig(input_size=12, hidden_sizes=(8, 6), output_size=4, use_batchnorm=True, dropout_ratio=0.25)
CNN_CFG = CNNConfig(input_dim=(1, 8, 8), filter_num=3, filter_size=3, hidden_size=5, output_size=4,
                    use_batchnorm=True)


def make(config: MLPConfig | CNNConfig, dtype: str = "float64") -> NumpyAdapter:
    return NumpyAdapter(config, init_params(config, seed=1, dtype=dtype), dtype)


def batch(config: MLPConfig | CNNConfig, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = config.input_shape
    return rng.standard_normal((n, *shape)), rng.integers(0, config.output_size, n)


def test_is_the_reference_row() -> None:
    assert issubclass(NumpyAdapter, Adapter) and NumpyAdapter.framework == "numpy"


@pytest.mark.parametrize("config", [MLP_CFG, CNN_CFG])
def test_params_round_trip_in_spec_order(config: MLPConfig | CNNConfig) -> None:
    adapter = make(config)
    params = adapter.params()
    assert list(params) == list(param_spec(config))
    new = init_params(config, seed=7, dtype="float64")
    new = {n: (v + 0.5 if n.endswith("running_var") else v) for n, v in new.items()}
    adapter.load_params(new)
    assert all(np.array_equal(adapter.params()[n], new[n]) for n in new)


@pytest.mark.parametrize("config", [MLP_CFG, CNN_CFG])
def test_forward_activations(config: MLPConfig | CNNConfig) -> None:
    adapter = make(config)
    x, _ = batch(config)
    acts = adapter.forward(x)
    last = config.layer_names()[-1]
    assert list(acts)[-1] == last and acts[last].shape == (5, 4)
    assert errors(adapter.logits(x, batch_size=2), acts[last])[1] <= tolerance("float64", "logits")
    assert adapter.accuracy(x, np.argmax(acts[last], axis=1)) == 1.0


def test_loss_and_grads_with_input_grad_and_masks() -> None:
    adapter = make(MLP_CFG)
    x, t = batch(MLP_CFG)
    rng = np.random.default_rng(1)
    masks = {"drop1": rng.random((5, 8)) > 0.25, "drop2": rng.random((5, 6)) > 0.25}
    adapter.set_dropout_masks(masks)
    loss, grads, dx = adapter.loss_and_grads(x, t, train=True, input_grad=True)
    assert list(grads) == trainable_names(MLP_CFG) and dx.shape == x.shape
    loss2, grads2, none = adapter.loss_and_grads(x, t, train=True)
    assert none is None and loss2 == loss  # fixed masks: deterministic
    assert all(errors(grads2[n], grads[n])[1] <= tolerance("float64", "grad") for n in grads)
    acts = adapter.forward(x, train=True)
    np.testing.assert_allclose(acts["drop1"], acts["act1"] * masks["drop1"] / 0.75, rtol=1e-12)
    adapter.set_dropout_masks(None)
    assert adapter.model.drop1.fixed_mask is None


def test_train_step_updates_with_reference_optimizer() -> None:
    adapter = make(CNN_CFG)
    x, t = batch(CNN_CFG)
    with pytest.raises(RuntimeError, match="set_optimizer"):
        adapter.train_step(x, t)
    adapter.set_optimizer("sgd", lr=0.1)
    before = adapter.params()
    _, grads, _ = adapter.loss_and_grads(x, t)
    bn_before = adapter.params()  # loss_and_grads in train mode moved the running statistics
    loss = adapter.train_step(x, t)
    after = adapter.params()
    assert isinstance(loss, float)
    for name in grads:
        np.testing.assert_allclose(after[name], before[name] - 0.1 * grads[name], rtol=1e-12, atol=1e-15)
    assert not np.array_equal(after["bn1.running_mean"], bn_before["bn1.running_mean"])
    adapter.set_optimizer("adam")
    assert adapter.optimizer.hparams() == OPTIMIZER_DEFAULTS["adam"] and adapter.optimizer_name == "adam"
    with pytest.raises(ValueError, match="unknown optimizer"):
        adapter.set_optimizer("lbfgs")


def test_float32_adapter_keeps_float32() -> None:
    adapter = make(CNN_CFG, "float32")
    x, t = batch(CNN_CFG)
    assert all(a.dtype == np.float32 for a in adapter.forward(x).values())
    _, grads, dx = adapter.loss_and_grads(x, t, input_grad=True)
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
