"""Weight initialisation, course-named helpers over :mod:`rosetta.weights` (the one place the
formulas live, so all four implementations start from bit-identical weights).

==========  =========================  ==========================================
scheme      std                        course name
==========  =========================  ==========================================
``he``      sqrt(2 / fan_in)           "He" / weight_init_std="relu"
``xavier``  sqrt(2 / (fan_in+fan_out)) Glorot's Xavier (not the course's)
``lecun``   sqrt(1 / fan_in)           what the course calls "Xavier" ("sigmoid")
``std``     fixed (0.01)               weight_init_std=0.01
==========  =========================  ==========================================

fan_in is ``in`` for an affine ``W (in, out)`` and ``C * KH * KW`` for a conv ``W (FN, C, KH, KW)``.
"""

from __future__ import annotations

import numpy as np

from rosetta.weights import INIT_SCHEMES, ModelConfig, init_params, init_std

# The course's weight_init_std strings -> the scheme they compute.
COURSE_SCHEMES = {"relu": "he", "he": "he", "sigmoid": "lecun", "xavier": "lecun"}


def scheme_from_course(weight_init_std: str | float) -> tuple[str, float]:
    """Translate the course's ``weight_init_std`` argument into ``(scheme, std)``."""
    if isinstance(weight_init_std, int | float):
        return "std", float(weight_init_std)
    key = str(weight_init_std).lower()
    if key not in COURSE_SCHEMES:
        raise ValueError(f"unknown weight_init_std {weight_init_std!r}; choose a number or one of: "
                         f"{', '.join(COURSE_SCHEMES)}")
    return COURSE_SCHEMES[key], 0.01


# [rosetta:init]
def he_std(shape: tuple[int, ...]) -> float:
    """sqrt(2 / fan_in): keeps the activation variance through ReLU layers."""
    return init_std(shape, "he")


def xavier_std(shape: tuple[int, ...]) -> float:
    """Glorot: sqrt(2 / (fan_in + fan_out)), for symmetric activations (sigmoid, tanh)."""
    return init_std(shape, "xavier")


def lecun_std(shape: tuple[int, ...]) -> float:
    """sqrt(1 / fan_in): the course's "Xavier"."""
    return init_std(shape, "lecun")
# [/rosetta:init]


def fixed_std(shape: tuple[int, ...], std: float = 0.01) -> float:
    """The course's first nets: a fixed std (0.01), which vanishes in deep ReLU nets."""
    return init_std(shape, "std", std)


def init_weights(
    config: ModelConfig, scheme: str = "he", seed: int = 0, dtype: type | str = np.float32,
    std: float = 0.01,
) -> dict[str, np.ndarray]:
    """Canonical parameters of ``config``: :func:`rosetta.weights.init_params` (seeded, exact)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of: {', '.join(INIT_SCHEMES)}")
    return init_params(config, seed=seed, scheme=scheme, dtype=dtype, std=std)
