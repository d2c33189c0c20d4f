"""Perceptrons as logic gates and the course's 3-layer forward example (chapters 2-3)."""

from __future__ import annotations

import numpy as np

from reference_numpy.functions import identity_function, sigmoid


def _gate(x1: float, x2: float, w: tuple[float, float], b: float) -> int:
    """Fire (1) when w . x + b > 0, else 0: the perceptron with bias b = -threshold."""
    x = np.array([x1, x2])
    tmp = np.sum(np.array(w) * x) + b
    return int(tmp > 0)


def AND(x1: float, x2: float) -> int:  # noqa: N802 - the course's gate names
    return _gate(x1, x2, (0.5, 0.5), -0.7)


def NAND(x1: float, x2: float) -> int:  # noqa: N802
    # AND with every sign flipped.
    return _gate(x1, x2, (-0.5, -0.5), 0.7)


def OR(x1: float, x2: float) -> int:  # noqa: N802
    return _gate(x1, x2, (0.5, 0.5), -0.2)


def XOR(x1: float, x2: float) -> int:  # noqa: N802
    """Not linearly separable: a single perceptron can't, two stacked layers can."""
    s1 = NAND(x1, x2)
    s2 = OR(x1, x2)
    return AND(s1, s2)


def init_network() -> dict[str, np.ndarray]:
    """The course's hand-set 2-3-2-2 network."""
    return {
        "W1": np.array([[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]]),
        "b1": np.array([0.1, 0.2, 0.3]),
        "W2": np.array([[0.1, 0.4], [0.2, 0.5], [0.3, 0.6]]),
        "b2": np.array([0.1, 0.2]),
        "W3": np.array([[0.1, 0.3], [0.2, 0.4]]),
        "b3": np.array([0.1, 0.2]),
    }


def forward(network: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Sigmoid hidden layers, identity output. [1.0, 0.5] -> [0.31682708, 0.69627909]."""
    a1 = np.dot(x, network["W1"]) + network["b1"]
    z1 = sigmoid(a1)
    a2 = np.dot(z1, network["W2"]) + network["b2"]
    z2 = sigmoid(a2)
    a3 = np.dot(z2, network["W3"]) + network["b3"]
    return identity_function(a3)
