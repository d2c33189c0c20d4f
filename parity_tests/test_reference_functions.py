"""reference_numpy.functions and perceptron: the course's chapters 2-4, measured."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reference_numpy import functions as F
from reference_numpy import perceptron as P
from rosetta.tolerances import tolerance


def test_step_sigmoid_relu_identity() -> None:
    x = np.array([-2.0, 0.0, 3.0])
    assert F.step_function(x).tolist() == [0, 0, 1]
    assert np.allclose(F.sigmoid(x), 1 / (1 + np.exp(-x)))
    assert F.relu(x).tolist() == [0.0, 0.0, 3.0]
    assert F.identity_function(x) is x


def test_sigmoid_extremes_and_dtype() -> None:
    x = np.array([-1000.0, 1000.0], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning leaks out
        y = F.sigmoid(x)
    assert y.tolist() == [0.0, 1.0] and y.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_stable_on_huge_logits(dtype: type) -> None:
    z = np.array([[1010.0, 1000.0, 990.0], [-1e4, 0.0, 1e4]], dtype=dtype)
    y = F.softmax(z)
    assert y.dtype == dtype and np.all(np.isfinite(y))
    assert np.allclose(y.sum(axis=1), 1.0)
    assert np.allclose(y[0], F.softmax(z[0] - 1000))  # shift invariance
    assert np.allclose(y[1], [0.0, 0.0, 1.0])


def test_cross_entropy_from_logits_matches_definition() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    t = np.array([0, 3, 1, 2, 3])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(5), t]))
    assert abs(F.cross_entropy_from_logits(z, t) - expected) <= tolerance("float64", "loss") * expected
    one_hot = np.eye(4)[t]
    assert F.cross_entropy_from_logits(z, one_hot) == F.cross_entropy_from_logits(z, t)


def test_course_cross_entropy_misreports_confident_logits() -> None:
    # The wrong class leads by 23 logits: the true loss is ~23, the course's log(y + 1e-7) caps it.
    z = np.array([[0.0, 23.0]])
    t = np.array([0])
    exact = F.cross_entropy_from_logits(z, t)
    course = F.cross_entropy_error(F.softmax(z), t)
    assert exact == pytest.approx(23.0, rel=1e-9)
    assert course == pytest.approx(-np.log(np.exp(-23.0) + 1e-7), rel=1e-9)
    misreport = (exact - course) / exact
    assert 0.29 < misreport < 0.31  # 30% low
    # Any loss is capped at -log(1e-7) = 16.12, however wrong the prediction.
    assert F.cross_entropy_error(F.softmax(np.array([[0.0, 80.0]])), t) < -np.log(1e-7) + 1e-9
    # Agreement where the probabilities are moderate.
    z_mild = np.array([[0.3, -0.2, 1.0]])
    assert F.cross_entropy_error(F.softmax(z_mild), np.array([2])) == pytest.approx(
        F.cross_entropy_from_logits(z_mild, np.array([2])), abs=1e-6)


def test_mean_squared_error() -> None:
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    t = np.eye(10)[2]
    assert F.mean_squared_error(y, t) == pytest.approx(0.0975)  # the course's worked example
    assert F.mean_squared_error(np.stack([y, y]), np.stack([t, t])) == pytest.approx(0.0975)


@pytest.mark.parametrize("gate,table", [
    (P.AND, [0, 0, 0, 1]), (P.NAND, [1, 1, 1, 0]), (P.OR, [0, 1, 1, 1]), (P.XOR, [0, 1, 1, 0]),
])
def test_gates(gate, table: list[int]) -> None:  # noqa: ANN001
    inputs = [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert [gate(a, b) for a, b in inputs] == [table[0], table[1], table[2], table[3]]


def test_three_layer_example() -> None:
    y = P.forward(P.init_network(), np.array([1.0, 0.5]))
    assert np.allclose(y, [0.31682708, 0.69627909], rtol=0, atol=5e-9)
