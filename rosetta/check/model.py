"""What the checker knows about one network, whatever its framework: the layers it ran (events),
the layers that hold parameters (with the layout of each tensor), and one pass (forward, loss,
gradients).

A driver per framework fills these in: ``numpy`` (course-style networks), ``torch``, ``keras``,
``chainer``. Everything is handed over as NumPy arrays in the course's layout (affine W (in, out),
conv W (out, in, kh, kw), activations NCHW) except ``Event.out`` of a Keras port, which stays NHWC
until it is compared (``to_ref_layout``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

PARAM_KINDS = ("affine", "conv", "batchnorm")
ACTIVATION_KINDS = ("relu", "sigmoid", "tanh", "identity", "softmax", "log_softmax", "leaky_relu")
LAYOUT_KINDS = ("flatten", "layout")
KIND_GROUPS = {
    **{k: "activation" for k in ACTIVATION_KINDS},
    "pool": "pool",
    "avgpool": "pool",
    "dropout": "dropout",
    "other": "other",
}


class CheckError(ValueError):
    """The checker cannot drive an object (a usage error: exit 2 on the command line)."""


@dataclass
class Event:
    """One layer or function the network ran, in call order."""

    label: str
    kind: str
    out: np.ndarray
    inp: np.ndarray | None = None
    attrs: dict[str, object] = field(default_factory=dict)
    plid: int | None = None  # index of its parameter layer
    dtype: str = ""


@dataclass
class Slot:
    """One tensor of a parameter layer: ``get``/``set`` in the framework's layout, ``how`` the
    conversion from the course's layout ('' as is, 'transposed', 'HWIO', 'rows (H, W, C)')."""

    role: str
    name: str
    get: Callable[[], np.ndarray]
    set: Callable[[np.ndarray], None]
    grad: Callable[[], np.ndarray | None] = lambda: None
    how: str = ""
    perm_shape: tuple[int, int, int] | None = None  # (C, H, W) for 'rows (H, W, C)'
    note: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.get().shape)

    def to_native(self, a: np.ndarray) -> np.ndarray:
        if self.how == "transposed":
            return a.T
        if self.how == "HWIO":
            return a.transpose(2, 3, 1, 0)
        if self.how.startswith("rows"):
            c, h, w = self.perm_shape
            return a.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
        return a

    def from_native(self, a: np.ndarray) -> np.ndarray:
        if self.how == "transposed":
            return a.T
        if self.how == "HWIO":
            return a.transpose(3, 2, 0, 1)
        if self.how.startswith("rows"):
            c, h, w = self.perm_shape
            return a.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
        return a

    def canonical(self) -> np.ndarray:
        return np.array(self.from_native(self.get()))


@dataclass
class ParamLayer:
    label: str
    kind: str
    slots: dict[str, Slot]
    attrs: dict[str, object] = field(default_factory=dict)
    obj: object = None


@dataclass
class Pass:
    """One forward (and backward) pass."""

    events: list[Event]
    logits: np.ndarray | None = None
    loss: float | None = None
    grads: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)  # canonical layout
    dx: np.ndarray | None = None
    error: str | None = None
    masks: list[np.ndarray] = field(default_factory=list)  # dropout keep-masks in call order


def to_ref_layout(a: np.ndarray, ref_shape: tuple[int, ...], framework: str) -> np.ndarray:
    """A port tensor in the reference's layout: Keras NHWC -> NCHW when that gives the shape."""
    if framework == "keras" and a.ndim == 4:
        if a.shape == tuple(ref_shape) and a.transpose(0, 3, 1, 2).shape != tuple(ref_shape):
            return a  # already NCHW (a model that transposes itself)
        return a.transpose(0, 3, 1, 2)
    return a


def kind_from_name(name: str) -> str:
    """A layer kind from a class or function name (custom layers named as what they do)."""
    n = name.lower()
    for key, kind in (
        ("dropout", "dropout"),
        ("batchnorm", "batchnorm"),
        ("batch_norm", "batchnorm"),
        ("batchnormalization", "batchnorm"),
        ("leaky", "leaky_relu"),
        ("log_softmax", "log_softmax"),
        ("logsoftmax", "log_softmax"),
        ("softmax", "softmax"),
        ("relu", "relu"),
        ("sigmoid", "sigmoid"),
        ("tanh", "tanh"),
        ("identity", "identity"),
        ("avg", "avgpool"),
        ("average", "avgpool"),
        ("maxpool", "pool"),
        ("max_pool", "pool"),
        ("maxpooling", "pool"),
        ("pool", "pool"),
        ("flatten", "flatten"),
        ("reshape", "layout"),
        ("transpose", "layout"),
        ("permute", "layout"),
        ("view", "layout"),
        ("conv", "conv"),
        ("linear", "affine"),
        ("dense", "affine"),
        ("affine", "affine"),
    ):
        if key in n:
            return kind
    return "other"
