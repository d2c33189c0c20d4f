"""The one layer Chainer lacks: a Dropout link whose keep-mask can be injected.

Everything else the models use is built in: ``L.Linear``, ``L.Convolution2D``,
``L.BatchNormalization``, ``F.relu``, ``F.sigmoid``, ``F.max_pooling_2d``, ``F.reshape`` and
``F.softmax_cross_entropy``.
"""

from __future__ import annotations

import numpy as np

from chainer_impl.compat import import_chainer

chainer = import_chainer()

import chainer.functions as F  # noqa: E402


class Dropout(chainer.Link):
    """Dropout whose keep-mask can be injected, in either convention (``mode``):

    * "inverted" (default, F.dropout's): train ``y = x * mask / (1 - ratio)``, eval ``y = x``;
    * "course": train ``y = x * mask``, eval ``y = x * (1 - ratio)``.

    ``set_mask(mask)`` fixes the keep-mask (bool, activation-shaped) so that every framework
    drops the same units; ``set_mask(None)`` returns to random masks.
    """

    def __init__(self, ratio: float, mode: str = "inverted") -> None:
        super().__init__()
        if mode not in ("inverted", "course"):
            raise ValueError(f"unknown dropout mode {mode!r}; choose one of: 'inverted', 'course'")
        self.ratio = float(ratio)
        self.mode = mode
        self.mask: np.ndarray | None = None  # scaled keep-mask, or None for random masks

    def _scale(self) -> float:
        return 1.0 / (1.0 - self.ratio) if self.mode == "inverted" else 1.0

    def set_mask(self, mask: np.ndarray | None, dtype: np.dtype) -> None:
        if mask is None:
            self.mask = None
            return
        # NOTE(framework): F.dropout takes the mask already scaled (values 0 or 1 / (1 - ratio))
        # and in the activation dtype, so the bool mask is converted once here, not every step.
        scale = dtype.type(self._scale())
        self.mask = np.asarray(mask, dtype=bool).astype(dtype) * scale

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        if self.mode == "course" and not chainer.config.train:
            # NOTE(framework:dropout-scaling): F.dropout is inverted only (the identity in eval);
            # the course's form scales at test time instead.
            return chainer.as_variable(x) * (1.0 - self.ratio)
        mask = self.mask
        if mask is None and self.mode == "course":
            # A fresh unscaled keep-mask (F.dropout would draw a scaled one).
            mask = (np.random.rand(*x.shape) >= self.ratio).astype(x.dtype)
        # F.dropout is the identity when chainer.config.train is False.
        return F.dropout(x, self.ratio, mask=mask)


class _Contiguous(chainer.FunctionNode):
    """Identity that returns a C-contiguous array (NumPy's ascontiguousarray); gradient identity."""

    def forward(self, inputs: tuple[np.ndarray]) -> tuple[np.ndarray]:
        return np.ascontiguousarray(inputs[0]),

    def backward(self, indexes: tuple[int, ...], grad_outputs: tuple[chainer.Variable]) -> tuple:
        return grad_outputs


def contiguous(x: chainer.Variable) -> chainer.Variable:
    """``x`` as a C-contiguous (N, C, H, W) array: one copy when it is a strided view.

    NOTE(framework): Chainer's CPU convolution returns ``rollaxis`` of an NHWC array, a view with
    NHWC strides. BatchNorm's per-channel mean and variance over (N, H, W) on that view sum
    naively (float32 relative error ~3e-6 in the output, ~1.5e-5 in conv1.W's gradient against
    the reference); on a C-contiguous array NumPy sums pairwise, as the reference does.
    """
    return _Contiguous().apply((x,))[0]
