"""The parity matrix: model x framework x dtype, every port against reference_numpy.

Sections: 1 logits and loss, 2 activations, 3 gradients (parameters and input), 4 optimizer steps,
5 BatchNorm, 6 Dropout, 7 100-step trajectories on real MNIST. Tolerances come from
rosetta/tolerances.py. A failure names framework, model, dtype, tensor, error and tolerance, and the
first layer whose activations part.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_framework

from rosetta import parity
from rosetta.adapters import OPTIMIZERS, PORTS
from rosetta.parity import Record
from rosetta.weights import trainable_names

MODELS = ("mlp", "cnn")
COMBOS = [pytest.param(m, f, d, id=f"{m}-{f}-{d}") for m in MODELS for f in PORTS for d in parity.DTYPES]
MLP_COMBOS = [p for p in COMBOS if p.values[0] == "mlp"]


def assert_parity(records: list[Record], model: str, framework: str, dtype: str) -> None:
    assert records, "no tensor was compared"
    report = parity.failure_report(records, model, framework, dtype)
    assert not report, report


@pytest.mark.parametrize("model,framework,dtype", COMBOS)
def test_logits_loss_activations(model: str, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_forward(model, framework, dtype)
    quantities = {r.quantity for r in records}
    assert quantities == {"logits", "loss", "activation"}
    assert_parity(records, model, framework, dtype)


@pytest.mark.parametrize("model,framework,dtype", COMBOS)
def test_gradients(model: str, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_grads(model, framework, dtype)
    names = {r.tensor for r in records if r.quantity == "grad"}
    assert names == set(trainable_names(parity.base_config(model)))
    assert_parity(records, model, framework, dtype)


@pytest.mark.parametrize("defaults", [False, True], ids=["conditioned", "course-defaults"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("model,framework,dtype", COMBOS)
def test_optimizer_steps(model: str, framework: str, dtype: str, optimizer: str, defaults: bool) -> None:
    require_framework(framework)
    records = parity.check_optimizer(model, framework, dtype, optimizer, defaults=defaults)
    steps = {r.tensor.split(":")[0] for r in records}
    assert len(steps) == parity.OPTIMIZER_STEPS
    assert_parity(records, model, framework, dtype)


@pytest.mark.parametrize("model,framework,dtype", COMBOS)
def test_batchnorm(model: str, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_batchnorm(model, framework, dtype)
    assert any("running_var" in r.tensor for r in records)
    assert any(r.tensor.startswith("eval forward: bn1") for r in records)
    assert_parity(records, model, framework, dtype)


@pytest.mark.parametrize("model,framework,dtype", MLP_COMBOS)
def test_dropout_shared_mask(model: str, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_dropout(model, framework, dtype)
    assert any(r.tensor == "train forward: drop1" for r in records)
    assert_parity(records, model, framework, dtype)


@pytest.mark.parametrize("optimizer", parity.TRAJECTORY_OPTIMIZERS)
@pytest.mark.parametrize("model,framework,dtype", COMBOS)
def test_trajectory_on_mnist(model: str, framework: str, dtype: str, optimizer: str, mnist_dir) -> None:
    require_framework(framework)
    records, agreement = parity.check_trajectory(model, framework, dtype, optimizer, str(mnist_dir))
    assert agreement >= parity.MIN_ARGMAX_AGREEMENT, f"argmax agreement {agreement:.4%}"
    assert_parity(records, model, framework, dtype)


@pytest.mark.parametrize("framework", PORTS)
def test_suite_can_fail_and_names_the_tensor(framework: str) -> None:
    """Perturb one weight by 1e-3 in one framework: the report must name exactly that tensor and
    the layer where the forward pass first parts."""
    require_framework(framework)

    def perturb(params: dict[str, np.ndarray]) -> None:
        params["fc2.W"][3, 4] += 1e-3

    records = parity.check_forward("cnn", framework, "float64", perturb=perturb)
    failed = [r for r in records if not r.passed]
    assert failed and all(r.quantity in ("logits", "loss", "activation") for r in failed)
    assert {r.tensor for r in failed if r.quantity == "activation"} <= {"fc2"}
    report = parity.failure_report(records, "cnn", framework, "float64", perturb=perturb)
    assert "first divergence: layer 'fc2'" in report
    assert "loaded parameters that differ from the canonical weights: fc2.W\n" in report + "\n"
    assert f"{framework} cnn float64 logits fc2" in report
