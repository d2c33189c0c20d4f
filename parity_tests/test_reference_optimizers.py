"""One step of every optimizer against its update equation, written here independently."""

from __future__ import annotations

import numpy as np
import pytest

from reference_numpy.optimizers import OPTIMIZERS, make_optimizer
from rosetta.adapters.base import OPTIMIZER_DEFAULTS
from rosetta.tolerances import tolerance


def _state(dtype: str = "float64") -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(3)
    params = {"fc1.W": rng.standard_normal((4, 3)).astype(dtype),
              "fc1.b": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in range(3)]
    return params, grads


def _expected(name: str, w: np.ndarray, gs: list[np.ndarray], hp: dict[str, float]) -> np.ndarray:
    w = w.astype(np.float64)
    s1 = np.zeros_like(w)
    s2 = np.zeros_like(w)
    for step, g in enumerate(gs, start=1):
        g = g.astype(np.float64)
        if name == "sgd":
            w = w - hp["lr"] * g
        elif name == "momentum":
            s1 = hp["momentum"] * s1 - hp["lr"] * g
            w = w + s1
        elif name == "nesterov":
            s1 = hp["momentum"] * s1 - hp["lr"] * g
            w = w + hp["momentum"] ** 2 * s1 - (1 + hp["momentum"]) * hp["lr"] * g
        elif name == "adagrad":
            s1 = s1 + g ** 2
            w = w - hp["lr"] * g / (np.sqrt(s1) + hp["eps"])
        elif name == "rmsprop":
            s1 = hp["rho"] * s1 + (1 - hp["rho"]) * g ** 2
            w = w - hp["lr"] * g / (np.sqrt(s1) + hp["eps"])
        elif name == "adam":
            s1 = s1 + (1 - hp["beta1"]) * (g - s1)
            s2 = s2 + (1 - hp["beta2"]) * (g ** 2 - s2)
            lr_t = hp["lr"] * np.sqrt(1 - hp["beta2"] ** step) / (1 - hp["beta1"] ** step)
            w = w - lr_t * s1 / (np.sqrt(s2) + hp["eps"])
    return w


HPARAMS = {**OPTIMIZER_DEFAULTS, "nesterov": {"lr": 0.01, "momentum": 0.9}}
# Non-default values too, so a swapped hyper-parameter can't pass by coincidence.
ALT = {"sgd": {"lr": 0.3}, "momentum": {"lr": 0.2, "momentum": 0.5}, "nesterov": {"lr": 0.2, "momentum": 0.7},
       "adagrad": {"lr": 0.5, "eps": 1e-3}, "rmsprop": {"lr": 0.1, "rho": 0.8, "eps": 1e-3},
       "adam": {"lr": 0.05, "beta1": 0.8, "beta2": 0.95, "eps": 1e-4}}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("which", ["default", "alt"])
def test_steps_match_equation(name: str, which: str) -> None:
    hp = HPARAMS[name] if which == "default" else ALT[name]
    params, grads = _state()
    before = {k: v.copy() for k, v in params.items()}
    opt = make_optimizer(name, params, **hp)
    for g in grads:
        opt.step(g)
    for key in params:
        expected = _expected(name, before[key], [g[key] for g in grads], hp)
        err = np.max(np.abs(params[key] - expected)) / np.max(np.abs(expected))
        assert err <= tolerance("float64", "optimizer"), (name, key, err)


def test_defaults_match_contract() -> None:
    for name, defaults in OPTIMIZER_DEFAULTS.items():
        assert make_optimizer(name).hparams() == defaults


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_float32_stays_float32_in_place(name: str) -> None:
    params, grads = _state("float32")
    ids = {k: id(v) for k, v in params.items()}
    opt = make_optimizer(name, **ALT[name])
    opt.update(params, grads[0])
    assert all(v.dtype == np.float32 and id(v) == ids[k] for k, v in params.items())


def test_only_keys_in_grads_are_updated() -> None:
    params, grads = _state()
    params["bn1.running_mean"] = np.ones(3)
    make_optimizer("adam", params).step(grads[0])
    assert np.array_equal(params["bn1.running_mean"], np.ones(3))


def test_bad_names_raise_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; choose one of: sgd"):
        make_optimizer("adamw")
    with pytest.raises(ValueError, match=r"optimizer 'sgd' takes \['lr'\], not \['momentum'\]"):
        make_optimizer("sgd", lr=0.1, momentum=0.9)
    with pytest.raises(RuntimeError, match="bound to no parameters"):
        make_optimizer("sgd").step({})
