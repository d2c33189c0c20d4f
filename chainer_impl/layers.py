"""The one layer Chainer lacks: a Dropout link whose keep-mask can be injected.

Everything else the models use is built in: ``L.Linear``, ``L.Convolution2D``,
``L.BatchNormalization``, ``F.relu``, ``F.sigmoid``, ``F.max_pooling_2d``, ``F.reshape`` and
``F.softmax_cross_entropy``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chainer_impl.compat import import_chainer

chainer = import_chainer()

import chainer.functions as F  # noqa: E402


# [rosetta:dropout]
class Dropout(chainer.Link):
    """Dropout with ``mode`` "inverted" (train ``y = x * mask / (1 - ratio)``, eval ``y = x``, as
    F.dropout) or "course" (train ``y = x * mask``, eval ``y = x * (1 - ratio)``).

    ``set_mask(mask)`` fixes the keep-mask (bool, activation-shaped) so that every framework
    drops the same units; ``set_mask(None)`` returns to random masks.
    """

    def __init__(self, ratio: float, mode: str = "inverted") -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.mode = mode
        self.mask: np.ndarray | None = None  # keep-mask in the activation dtype, or None: random

    def set_mask(self, mask: np.ndarray | None, dtype: np.dtype) -> None:
        # NOTE(framework:dropout-masks): F.dropout takes the mask already scaled (0 or
        # 1 / (1 - ratio)) in the activation dtype: converted once here, not every step.
        self.mask = None if mask is None else np.asarray(mask, dtype=bool).astype(dtype)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        # NOTE(framework:dropout-scaling): the course scales at test time, the frameworks in training.
        if self.mode == "course":
            if not chainer.config.train:
                return x * x.dtype.type(1.0 - self.ratio)
            # y = x * mask: F.dropout's mask is the scaled mask, so the course's is the 0/1 mask.
            keep = self.mask if self.mask is not None else (
                np.random.random_sample(x.shape) >= self.ratio).astype(x.dtype)
            return F.dropout(x, self.ratio, mask=keep)
        # F.dropout is the identity when chainer.config.train is False.
        mask = None if self.mask is None else self.mask * x.dtype.type(1.0 / (1.0 - self.ratio))
        return F.dropout(x, self.ratio, mask=mask)
# [/rosetta:dropout]


def set_dropout_masks(model: chainer.Chain, masks: Mapping[str, np.ndarray] | None) -> None:
    """Fix each Dropout layer's keep-mask by layer name (bool, activation-shaped); None: random."""
    layers = {name.lstrip("/"): link for name, link in model.namedlinks(skipself=True)
              if isinstance(link, Dropout)}
    unknown = sorted(set(masks or {}) - set(layers))
    if unknown:
        raise ValueError(f"no Dropout layer named {unknown[0]!r}; the model has: "
                         f"{', '.join(layers) or 'none'}")
    for name, link in layers.items():
        link.set_mask(None if masks is None else masks.get(name), model.dtype)


class _Contiguous(chainer.FunctionNode):
    """Identity that returns a C-contiguous array (NumPy's ascontiguousarray); gradient identity."""

    def forward(self, inputs: tuple[np.ndarray]) -> tuple[np.ndarray]:
        return np.ascontiguousarray(inputs[0]),

    def backward(self, indexes: tuple[int, ...], grad_outputs: tuple[chainer.Variable]) -> tuple:
        return grad_outputs


def contiguous(x: chainer.Variable) -> chainer.Variable:
    """``x`` as a C-contiguous (N, C, H, W) array: one copy when it is a strided view.

    NOTE(framework:chainer-bn-contiguous): Chainer's CPU convolution returns ``rollaxis`` of an
    NHWC array, a view with NHWC strides. BatchNorm's per-channel mean and variance over (N, H, W)
    on that view sum naively (float32 relative error ~3e-6 in the output, ~1.5e-5 in conv1.W's
    gradient against the reference); on a C-contiguous array NumPy sums pairwise, as the reference does.
    """
    return _Contiguous().apply((x,))[0]
