"""Numerical gradient (central difference) and gradient checks against the analytic backward.

Run in float64: the central difference's truncation (O(h^2)) and cancellation (O(eps / h))
errors are ~1e-8 relative at h = 1e-5, far under the tolerance table's gradcheck bound, while
float32 cancellation alone would be ~1e-2. Feed seeded random normals, not MNIST: its zero
background creates pooling ties and ReLU kinks where the derivative does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from rosetta.tolerances import errors, tolerance

H = 1e-5


# [rosetta:gradcheck]
def numerical_gradient(
    f: Callable[[], float], x: np.ndarray, h: float = H, indices: Iterable[int] | None = None,
) -> np.ndarray:
    """(f(x + h e_i) - f(x - h e_i)) / 2h for each entry i of ``x`` (perturbed in place, restored).

    ``f`` takes no argument: it reads ``x`` through whatever holds it (a layer, a model). With
    ``indices`` (flat), only those entries are computed; the others stay 0.
    """
    grad = np.zeros_like(x)
    flat_x = x.reshape(-1)  # (size,) a view: writes reach x
    flat_g = grad.reshape(-1)  # (size,)
    for i in range(x.size) if indices is None else indices:
        original = flat_x[i]
        flat_x[i] = original + h
        f_plus = f()
        flat_x[i] = original - h
        f_minus = f()
        flat_x[i] = original
        flat_g[i] = (f_plus - f_minus) / (2 * h)
    return grad
# [/rosetta:gradcheck]


def relative_error(numerical: np.ndarray, analytic: np.ndarray, floor: float = 0.0) -> float:
    """max|num - ana| / max(max|ana|, floor): the tolerance table's measure.

    ``floor`` keeps a gradient that is exactly zero in theory (a bias right before a train-mode
    BatchNorm, which subtracts it again) from dividing round-off by round-off.
    """
    abs_err, _ = errors(numerical, analytic)
    scale = float(np.max(np.abs(analytic))) if analytic.size else 0.0
    return abs_err / max(scale, floor, np.finfo(np.float64).tiny)


def _sample(size: int, max_entries: int | None, rng: np.random.Generator) -> np.ndarray | None:
    if max_entries is None or size <= max_entries:
        return None
    return rng.choice(size, max_entries, replace=False)


def check_layer(
    layer: Any, x: np.ndarray, param_names: tuple[str, ...] = (), seed: int = 0,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Relative errors of d(sum(R * layer(x)))/d(x and each parameter) for a random R.

    ``param_names`` are (array attribute, gradient attribute) pairs joined by ':', e.g. "W:dW".
    """
    kwargs = dict(forward_kwargs or {})
    x = x.copy()
    r = np.random.default_rng(seed).standard_normal(layer.forward(x, **kwargs).shape)

    def f() -> float:
        return float(np.sum(layer.forward(x, **kwargs) * r))

    layer.forward(x, **kwargs)
    dx = layer.backward(r.astype(x.dtype))
    result = {"x": relative_error(numerical_gradient(f, x), dx)}
    analytic = {p: getattr(layer, p.split(":")[1]).copy() for p in param_names}
    for p in param_names:
        result[p] = relative_error(numerical_gradient(f, getattr(layer, p.split(":")[0])), analytic[p])
    return result


def check_model(
    model: Any, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = True,
    max_entries: int | None = None, seed: int = 0,
) -> dict[str, float]:
    """Relative error between numerical and analytic gradients of ``model.loss`` for every
    trainable tensor (and the input when ``input_grad``). ``max_entries`` samples that many
    entries per tensor (for default-size models). Each tensor's error is relative to its own
    largest gradient, but never to less than 1e-3 of the model's largest (see relative_error)."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    _, grads, dx = model.loss_and_gradient(x, t, train=train, input_grad=input_grad)
    floor = 1e-3 * max(float(np.max(np.abs(g))) for g in grads.values())

    def f() -> float:
        return model.loss(x, t, train=train)

    result: dict[str, float] = {}
    for name, analytic in grads.items():
        idx = _sample(analytic.size, max_entries, rng)
        numerical = numerical_gradient(f, model.params[name], indices=idx)
        if idx is not None:
            numerical, analytic = numerical.reshape(-1)[idx], analytic.reshape(-1)[idx]  # (k,)
        result[name] = relative_error(numerical, analytic, floor)
    if input_grad:
        idx = _sample(x.size, max_entries, rng)
        numerical = numerical_gradient(f, x, indices=idx)
        if idx is not None:
            numerical, dx = numerical.reshape(-1)[idx], dx.reshape(-1)[idx]  # (k,)
        result["input"] = relative_error(numerical, dx, floor)
    return result


def assert_gradients_close(result: Mapping[str, float], dtype: str = "float64") -> None:
    """Raise AssertionError naming each tensor whose error exceeds the gradcheck tolerance."""
    bound = tolerance(dtype, "gradcheck")
    bad = {k: v for k, v in result.items() if not v <= bound}
    if bad:
        raise AssertionError(f"gradient check failed (bound {bound:g}): {bad}")
