"""The parity matrix: case x framework x dtype, every port against reference_numpy.

Sections: 1 logits and loss, 2 activations, 3 gradients (parameters and input), 4 optimizer steps,
5 BatchNorm, 6 Dropout, 7 trajectories on real MNIST (100 steps; float64 25). The cases
(rosetta.parity.CASES) set every hyper-parameter of every model to a value that changes the
result. Tolerances come from rosetta/tolerances.py. A failure names framework, case, dtype,
tensor, error and tolerance, and the first layer whose activations part.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import require_framework

from rosetta import parity
from rosetta.adapters import OPTIMIZERS, PORTS
from rosetta.configs import MODELS
from rosetta.parity import Case, Record
from rosetta.weights import trainable_names


def combos(section: str) -> list:
    return [pytest.param(c, f, d, id=f"{c.label}-{f}-{d}") for c in parity.CASES if section in c.sections
            for f in PORTS for d in parity.DTYPES]


def assert_parity(records: list[Record], case: Case, framework: str, dtype: str) -> None:
    assert records, "no tensor was compared"
    report = parity.failure_report(records, case, framework, dtype)
    assert not report, report


@pytest.mark.parametrize("case,framework,dtype", combos("forward"))
def test_logits_loss_activations(case: Case, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_forward(case, framework, dtype)
    assert {r.quantity for r in records} == {"logits", "loss", "activation"}
    assert [r.tensor for r in records if r.quantity == "activation"] == case.config.layer_names()[:-1]
    assert_parity(records, case, framework, dtype)


@pytest.mark.parametrize("case,framework,dtype", combos("grads"))
def test_gradients(case: Case, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_grads(case, framework, dtype)
    names = {r.tensor for r in records if r.quantity == "grad"}
    assert names == set(trainable_names(case.config))
    assert_parity(records, case, framework, dtype)


def optimizer_combos() -> list:
    return [pytest.param(c, f, d, o, defaults, id=f"{c.label}-{f}-{d}-{o}-{label}")
            for c in parity.CASES if "optimizer" in c.sections for f in PORTS for d in parity.DTYPES
            for o in c.optimizers
            for defaults, label in ((False, "conditioned"), (True, "course-defaults"))
            if c.optimizer_defaults or not defaults]


@pytest.mark.parametrize("case,framework,dtype,optimizer,defaults", optimizer_combos())
def test_optimizer_steps(case: Case, framework: str, dtype: str, optimizer: str, defaults: bool) -> None:
    require_framework(framework)
    records = parity.check_optimizer(case, framework, dtype, optimizer, defaults=defaults)
    steps = {r.tensor.split(":")[0] for r in records}
    assert len(steps) == case.optimizer_steps
    assert_parity(records, case, framework, dtype)


@pytest.mark.parametrize("case,framework,dtype", combos("batchnorm"))
def test_batchnorm(case: Case, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_batchnorm(case, framework, dtype)
    assert any("running_var" in r.tensor for r in records)
    assert any(r.tensor.startswith("eval forward: bn1") for r in records)
    assert_parity(records, case, framework, dtype)


@pytest.mark.parametrize("case,framework,dtype", combos("dropout"))
def test_dropout_shared_mask(case: Case, framework: str, dtype: str) -> None:
    require_framework(framework)
    records = parity.check_dropout(case, framework, dtype)
    for name in case.config.dropout_layers():
        assert any(r.tensor == f"train forward: {name}" for r in records)
        assert any(r.tensor == f"eval forward: {name}" for r in records)
    assert_parity(records, case, framework, dtype)


@pytest.mark.parametrize("case,framework,dtype,optimizer", [
    pytest.param(c, f, d, o, id=f"{c.label}-{f}-{d}-{o}") for c in parity.CASES if "trajectory" in c.sections
    for f in PORTS for d in parity.DTYPES for o in c.trajectory_optimizers])
def test_trajectory_on_mnist(case: Case, framework: str, dtype: str, optimizer: str, mnist_dir) -> None:
    require_framework(framework)
    check = parity.check_trajectory(case, framework, dtype, optimizer, str(mnist_dir))
    assert check.agreement >= parity.MIN_ARGMAX_AGREEMENT, f"argmax agreement {check.agreement:.4%}"
    assert_parity(check.records, case, framework, dtype)


@pytest.mark.parametrize("model", MODELS)
def test_every_config_field_has_a_case_that_changes_it(model: str) -> None:
    """A new hyper-parameter cannot land untested: every field of every config is set to a
    non-default value by some parity case (and the case's model really uses it)."""
    default = MODELS[model]()
    fields = [f.name for f in dataclasses.fields(default) if f.init]
    covered = {name for case in parity.cases([model]) for name, value in case.hparams
               if value != getattr(default, name)}
    missing = [f for f in fields if f not in covered]
    assert not missing, f"config fields of {model!r} no parity case exercises: {missing}"


def test_every_case_runs_forward_and_grads_and_each_section_somewhere() -> None:
    for case in parity.CASES:
        assert {"forward", "grads"} <= set(case.sections), case.label
        if "batchnorm" in case.sections:
            assert case.config.use_batchnorm, case.label  # type: ignore[union-attr]
        if "dropout" in case.sections:
            assert case.config.dropout_layers(), case.label
    for model in MODELS:
        sections = {s for c in parity.cases([model]) for s in c.sections}
        assert {"forward", "grads", "optimizer", "trajectory"} <= sections, model
        assert sections & {"batchnorm", "dropout"}, model
    assert all(set(OPTIMIZERS) <= set(c.optimizers) for c in parity.cases(["mlp", "cnn"])
               if "optimizer" in c.sections)


@pytest.mark.parametrize("framework", PORTS)
def test_suite_can_fail_and_names_the_tensor(framework: str) -> None:
    """Perturb one weight by 1e-3 in one framework: the report must name exactly that tensor and
    the layer where the forward pass first parts."""
    require_framework(framework)

    def perturb(params: dict[str, np.ndarray]) -> None:
        params["fc2.W"][3, 4] += 1e-3

    case = parity.get_case("cnn")
    records = parity.check_forward(case, framework, "float64", perturb=perturb)
    failed = [r for r in records if not r.passed]
    assert failed and all(r.quantity in ("logits", "loss", "activation") for r in failed)
    assert {r.tensor for r in failed if r.quantity == "activation"} <= {"fc2"}
    report = parity.failure_report(records, case, framework, "float64", perturb=perturb)
    assert "first divergence: layer 'fc2'" in report
    assert "loaded parameters that differ from the canonical weights: fc2.W\n" in report + "\n"
    assert f"{framework} cnn float64 logits fc2" in report


def test_matrix_over_processes_gives_the_same_records() -> None:
    """rosetta parity's --jobs: the units spread over processes give the records of one process,
    in the same order (each unit computes its own reference)."""
    require_framework("torch")
    only = [parity.get_case("mlp:odd"), parity.get_case("mlp:dropout")]
    done: list[str] = []
    serial = parity.run_matrix(["torch"], dtypes=["float64"], progress=done.append, only=only)
    spread = parity.run_matrix(["torch"], dtypes=["float64"], only=only, jobs=2)
    assert done == ["mlp:odd float64", "mlp:dropout float64"] and serial
    assert [dataclasses.astuple(r) for r in spread] == [dataclasses.astuple(r) for r in serial]
