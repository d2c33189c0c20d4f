"""The course's layers (DLFS common/layers.py style): ``forward`` caches what ``backward`` needs,
``backward(dout)`` returns ``dx`` and sets the parameter gradients (``dW``, ``db``, ...).

Every layer keeps the dtype of its input: float32 in, float32 out (and float32 gradients).
Parameter arrays are shared with the model's ``params`` dict, so an optimizer's in-place update
is seen by the layer without copying.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reference_numpy.functions import logsumexp, sigmoid, softmax
from reference_numpy.util import col2im, col2im_fast, conv_output_size, im2col, im2col_fast

DROPOUT_MODES = ("inverted", "course")
# How Convolution and MaxPooling compute: "fast" (default) or "course" (the course's code as
# written); the two agree to the last bit (parity_tests/test_reference_routes.py).
ROUTES = ("fast", "course")


# [rosetta:activations]
class Relu:
    def __init__(self) -> None:
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        # The mask is taken in backward from the output (out > 0 exactly where x > 0), so inference
        # pays one pass, not two.
        self.out = np.maximum(x, 0)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # NOTE(course:course-relu-grad): x > 0 (not >= 0), so the gradient at exactly 0 is 0,
        # as in torch, TF and Chainer (a course relu_grad written with x >= 0 gives 1 there).
        # NOTE(course:course-relu-inplace): a new array; the course's dout[mask] = 0 overwrote
        # the caller's dout in place (frameworks never mutate an incoming gradient).
        return dout * (self.out > 0)


class Sigmoid:
    def __init__(self) -> None:
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # d sigmoid / dx = y (1 - y): the forward output is all the backward needs.
        return dout * (1.0 - self.out) * self.out
# [/rosetta:activations]


# [rosetta:dense]
class Affine:
    """y = x @ W + b with W (in, out). Input of any rank is flattened to (N, in) first."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:  # noqa: N803 - the course's names
        self.W = W
        self.b = b
        self.x: np.ndarray | None = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)  # (N, in)
        out = self.x @ self.W  # (N, out)
        out += self.b  # in place: the product is ours
        return out

    def backward(self, dout: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        self.dW = self.x.T @ dout  # (in, out)
        self.db = np.sum(dout, axis=0)  # (out,)
        if not need_dx:  # first layer: nobody consumes dx unless the input gradient is asked for
            return None
        dx = dout @ self.W.T  # (N, in)
        return dx.reshape(self.original_x_shape)  # (N, ...) as the input came
# [/rosetta:dense]


# [rosetta:loss]
class SoftmaxWithLoss:
    """Softmax + mean cross-entropy, from logits with log-sum-exp (exact for any logit size).

    ``t`` holds integer labels (N,) or one-hot rows (N, K). The gradient is (softmax - onehot) / N.
    """

    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        self.t = t.argmax(axis=1) if t.ndim == 2 else t  # one-hot (N, K) -> indices (N,)
        n = x.shape[0]
        self.y = softmax(x)  # (N, K)
        picked = x[np.arange(n), self.t]  # (N,) logit of the right class
        self.loss = float(np.mean(logsumexp(x) - picked))
        return self.loss

    def backward(self, dout: float = 1.0) -> np.ndarray:
        n = self.y.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx * (dout / n)  # (N, K)
# [/rosetta:loss]


class IdentityWithMSE:
    """Identity output + mean squared error 0.5 * sum((y - t)^2) / N (regression, course ch. 5)."""

    def __init__(self) -> None:
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        self.y = x
        self.t = t
        return float(0.5 * np.sum((x - t) ** 2) / x.shape[0])

    def backward(self, dout: float = 1.0) -> np.ndarray:
        return (self.y - self.t) * (dout / self.y.shape[0])


# [rosetta:conv]
class Convolution:
    """Cross-correlation of (N, C, H, W) with W (FN, C, KH, KW), stride and zero padding, the
    course's way: im2col, one GEMM against ``W.reshape(FN, -1).T``, col2im for ``dx``.

    ``route`` picks only how col is built and scattered back: ``"course"`` runs util.im2col /
    col2im as the course writes them, ``"fast"`` (default) their one-gather forms. Both routes
    multiply the same arrays with the same calls, so they agree to the last bit. The output is an
    (N, FN, OH, OW) view of the GEMM's NHWC result, as in the course; the ReLU and pool after it
    keep that layout, so their gradient reaches ``backward`` NHWC and its reshape is free.
    """

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0,  # noqa: N803
                 route: str = "fast") -> None:
        if route not in ROUTES:
            raise ValueError(f"unknown Convolution route {route!r}; choose one of: {', '.join(ROUTES)}")
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.route = route
        self.im2col, self.col2im = (im2col, col2im) if route == "course" else (im2col_fast, col2im_fast)
        self.x_shape: tuple[int, ...] | None = None
        self.col: np.ndarray | None = None
        self.col_W: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        fn, c, fh, fw = self.W.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"Convolution expects (N, {c}, H, W) input, got shape {x.shape}")
        n, _, h, w = x.shape
        out_h = conv_output_size(h, fh, self.stride, self.pad)
        out_w = conv_output_size(w, fw, self.stride, self.pad)
        self.x_shape = x.shape
        self.col = self.im2col(x, fh, fw, self.stride, self.pad)  # (N*OH*OW, C*FH*FW)
        self.col_W = self.W.reshape(fn, -1).T  # (C*FH*FW, FN)
        out = np.dot(self.col, self.col_W)  # (N*OH*OW, FN)
        # + b in place, through (N, OH*OW*FN) rows: the same additions as out += b, but numpy's
        # inner loop runs OH*OW*FN long instead of FN (4x faster for the CNN's 30 filters).
        out.reshape(n, -1)[...] += np.tile(self.b, out_h * out_w)  # (N, OH*OW*FN)
        return out.reshape(n, out_h, out_w, -1).transpose(0, 3, 1, 2)  # (N, FN, OH, OW)

    def backward(self, dout: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        fn, c, fh, fw = self.W.shape
        n = dout.shape[0]
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)  # (N*OH*OW, FN), a copy only if NCHW
        # db = sum over rows, as the batch sum first and then the OH*OW positions: one long inner
        # loop each (np.sum(dout, axis=0) runs N*OH*OW inner loops FN long, 4x slower here).
        self.db = dout.reshape(n, -1).sum(axis=0).reshape(-1, fn).sum(axis=0)  # (FN,)
        self.dW = np.dot(self.col.T, dout)  # (C*FH*FW, FN)
        self.dW = self.dW.transpose(1, 0).reshape(fn, c, fh, fw)  # (FN, C, FH, FW)
        if not need_dx:  # first layer: skip the col2im nobody reads
            return None
        dcol = np.dot(dout, self.col_W.T)  # (N*OH*OW, C*FH*FW)
        return self.col2im(dcol, self.x_shape, fh, fw, self.stride, self.pad)  # (N, C, H, W)
# [/rosetta:conv]


# [rosetta:pool]
class MaxPooling:
    """Max-pool, no padding, floor on odd sizes. Ties send the gradient to the first maximum in
    row-major window order (the course's argmax).

    NOTE(framework:maxpool-ties): torch, TF and Chainer also route a tie's gradient to one
    (the first) maximum; a hand-written ``x == max`` mask would hand it to every tied input.

    ``route="course"``: the course's im2col, argmax and col2im. ``"fast"`` (default): the same
    maxima from the PH*PW strided views ``x[:, :, i::s, j::s]``, pairwise, and the same gradient
    routed by ``view == out`` for the first view that holds the maximum (the last view takes every
    window no earlier one matched, without a comparison: 0.87x the time); overlapping windows
    add in the course's col2im order, so both routes agree to the last bit.
    """

    def __init__(self, pool_h: int = 2, pool_w: int = 2, stride: int = 2, route: str = "fast") -> None:
        if route not in ROUTES:
            raise ValueError(f"unknown MaxPooling route {route!r}; choose one of: {', '.join(ROUTES)}")
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.route = route
        self.x: np.ndarray | None = None
        self.arg_max: np.ndarray | None = None
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"MaxPooling expects (N, C, H, W) input, got shape {x.shape}")
        self.x = x
        return self._forward_course(x) if self.route == "course" else self._forward_fast(x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self._backward_course(dout) if self.route == "course" else self._backward_fast(dout)

    def _forward_course(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        out_h = conv_output_size(h, self.pool_h, self.stride)
        out_w = conv_output_size(w, self.pool_w, self.stride)
        col = im2col(x, self.pool_h, self.pool_w, self.stride)  # (N*OH*OW, C*PH*PW)
        col = col.reshape(-1, self.pool_h * self.pool_w)  # (N*OH*OW*C, PH*PW)
        self.arg_max = np.argmax(col, axis=1)  # (N*OH*OW*C,) first max on ties
        out = np.max(col, axis=1)  # (N*OH*OW*C,)
        return out.reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2)  # (N, C, OH, OW)

    def _backward_course(self, dout: np.ndarray) -> np.ndarray:
        dout = dout.transpose(0, 2, 3, 1)  # (N, OH, OW, C)
        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size), dtype=dout.dtype)  # (N*OH*OW*C, PH*PW)
        dmax[np.arange(self.arg_max.size), self.arg_max] = dout.reshape(-1)  # into each argmax
        dcol = dmax.reshape(-1, dout.shape[3] * pool_size)  # (N*OH*OW, C*PH*PW)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride)  # (N, C, H, W)
# [/rosetta:pool]

    def _views(self, x: np.ndarray) -> list[np.ndarray]:
        """Window position (i, j) of every window, in row-major (i, j) order: (N, C, OH, OW) each."""
        out_h = conv_output_size(x.shape[2], self.pool_h, self.stride)
        out_w = conv_output_size(x.shape[3], self.pool_w, self.stride)
        s = self.stride
        return [x[:, :, i:i + s * out_h:s, j:j + s * out_w:s]  # (N, C, OH, OW) strided view
                for i in range(self.pool_h) for j in range(self.pool_w)]

    def _forward_fast(self, x: np.ndarray) -> np.ndarray:
        views = self._views(x)
        out = views[0].copy() if len(views) == 1 else np.maximum(views[0], views[1])  # (N, C, OH, OW)
        for view in views[2:]:
            np.maximum(out, view, out=out)
        self.out = out
        return out

    def _backward_fast(self, dout: np.ndarray) -> np.ndarray:
        tiled = self.pool_h == self.pool_w == self.stride  # windows tile the input: no overlap, no gap
        dx = np.empty_like(self.x) if tiled else np.zeros_like(self.x)  # (N, C, H, W), x's layout
        if tiled:  # floor: the last rows and columns no window covers get no gradient
            dx[:, :, self.stride * self.out.shape[2]:, :] = 0
            dx[:, :, :, self.stride * self.out.shape[3]:] = 0
        # dout in out's memory layout (it comes NCHW from Flatten, out is NHWC after a conv):
        # one small copy, then every product below runs over a single memory order.
        dout_like_out = np.empty_like(self.out)  # (N, C, OH, OW)
        dout_like_out[...] = dout
        dout = dout_like_out
        views, dx_views = self._views(self.x), self._views(dx)
        last = len(views) - 1
        for k, (view, dx_view) in enumerate(zip(views, dx_views, strict=True)):
            if k == 0:
                hit = view == self.out  # (N, C, OH, OW)
                free = ~hit  # windows whose maximum is not found yet
            elif k < last:
                hit = view == self.out  # (N, C, OH, OW)
                hit &= free  # only the first maximum in window order: the course's argmax
                free ^= hit
            else:
                hit = free  # the last position holds the maximum of every window still free
            if tiled:
                np.multiply(dout, hit, out=dx_view)
            else:  # a pixel in several windows sums their shares, in col2im's order
                dx_view += dout * hit
        return dx


class Flatten:
    """(N, C, H, W) -> (N, C*H*W) in (C, H, W) order: the canonical row order of the next W."""

    def __init__(self) -> None:
        self.x_shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C*H*W)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.x_shape)  # (N, C, H, W)


# [rosetta:batchnorm]
class BatchNormalization:
    """Batch normalisation per feature (2-D input) or per channel over (N, H, W) (4-D input).

    Train: batch mean and biased variance normalise; running statistics follow
    ``running = momentum * running + (1 - momentum) * batch`` (momentum is the kept fraction;
    PyTorch's momentum=0.1 is 1 - 0.9). The batch variance stored is unbiased (times m / (m - 1),
    m values per feature) as in the frameworks, or biased with ``unbiased_running_var=False``
    (the course's form). Eval: the running statistics normalise.
    """

    def __init__(
        self, gamma: np.ndarray, beta: np.ndarray, momentum: float = 0.9, eps: float = 1e-5,
        running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None,
        unbiased_running_var: bool = True,
    ) -> None:
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.eps = eps
        self.unbiased_running_var = unbiased_running_var
        # NOTE(course:bn-initial-var): running_var starts at 1 as in torch, Keras and Chainer;
        # the course's BatchNormalization starts it at 0.
        self.running_mean = np.zeros_like(gamma) if running_mean is None else running_mean
        self.running_var = np.ones_like(gamma) if running_var is None else running_var
        self.train_flg = False
        self.xn: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.dgamma: np.ndarray | None = None
        self.dbeta: np.ndarray | None = None

    def _axes_and_shape(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if x.ndim == 2:
            return (0,), (1, x.shape[1])
        if x.ndim == 4:
            # NOTE(course:bn-4d-axes): per channel over (N, H, W) like BatchNorm2d; the course
            # flattens 4-D input to (N, C*H*W) and normalises every activation separately.
            return (0, 2, 3), (1, x.shape[1], 1, 1)
        raise ValueError(f"BatchNormalization expects (N, D) or (N, C, H, W) input, got {x.shape}")

    def forward(self, x: np.ndarray, train_flg: bool = True) -> np.ndarray:
        axes, shape = self._axes_and_shape(x)
        if x.shape[1] != self.gamma.shape[0]:
            raise ValueError(f"BatchNormalization has {self.gamma.shape[0]} features, input {x.shape}")
        self.train_flg = train_flg
        if train_flg:
            # A conv's output is an NCHW view of NHWC memory, where NumPy's mean over (N, H, W)
            # adds the 57,600 values of a channel one by one (float64: 1.2e-14 relative, measured);
            # on C-contiguous memory it sums each H*W row pairwise (7e-16), as accurate as the
            # frameworks' reductions. Over 20 data-parallel steps the difference grew to 1.9e-12
            # in the running mean, past the float64 bound.
            x = np.ascontiguousarray(x)  # (N, D) or (N, C, H, W), C-contiguous
            mu = np.mean(x, axis=axes, keepdims=True)  # (1, D) or (1, C, 1, 1)
            xc = x - mu
            var = np.mean(xc * xc, axis=axes, keepdims=True)  # biased: what normalises
            self._update_running(mu.reshape(-1), var.reshape(-1), x.size // x.shape[1])  # (D,) or (C,)
        else:
            xc = x - self.running_mean.reshape(shape)  # (1, D) or (1, C, 1, 1) broadcast
            var = self.running_var.reshape(shape)  # (1, D) or (1, C, 1, 1)
        self.std = np.sqrt(var + self.eps)
        self.xn = xc / self.std
        return self.gamma.reshape(shape) * self.xn + self.beta.reshape(shape)  # (N, D) or (N, C, H, W)

    def _update_running(self, mu: np.ndarray, var: np.ndarray, m: int) -> None:
        # In place, so the arrays shared with the model's state stay the same objects.
        if self.unbiased_running_var:
            var = var * (m / (m - 1)) if m > 1 else var
        self.running_mean *= self.momentum
        self.running_mean += (1 - self.momentum) * mu
        self.running_var *= self.momentum
        self.running_var += (1 - self.momentum) * var

    def backward(self, dout: np.ndarray) -> np.ndarray:
        axes, shape = self._axes_and_shape(dout)
        self.dbeta = np.sum(dout, axis=axes)  # (D,) or (C,)
        self.dgamma = np.sum(dout * self.xn, axis=axes)
        dxn = dout * self.gamma.reshape(shape)  # (N, D) or (N, C, H, W)
        if not self.train_flg:  # eval: mean and std are constants
            return dxn / self.std
        # Train: mu and var depend on x; the three terms are d/dx of (x - mu) / sqrt(var + eps).
        mean_dxn = np.mean(dxn, axis=axes, keepdims=True)
        mean_dxn_xn = np.mean(dxn * self.xn, axis=axes, keepdims=True)
        return (dxn - mean_dxn - self.xn * mean_dxn_xn) / self.std
# [/rosetta:batchnorm]


# [rosetta:dropout]
class Dropout:
    """Dropout with keep-mask ``mask = rand >= ratio`` (keep probability 1 - ratio).

    ``mode="inverted"`` (default, as the frameworks): train ``y = x * mask / (1 - ratio)``,
    eval ``y = x``. ``mode="course"``: train ``y = x * mask``, eval ``y = x * (1 - ratio)``;
    both keep the expected activation equal between train and eval, the inverted one at no
    cost at inference. ``set_mask`` fixes the mask (bool, activation-shaped) for parity tests
    and gradient checks; ``set_mask(None)`` returns to random masks.
    """

    def __init__(self, dropout_ratio: float = 0.5, mode: str = "inverted", seed: int | None = None) -> None:
        if mode not in DROPOUT_MODES:
            raise ValueError(f"unknown dropout mode {mode!r}; choose one of: {', '.join(DROPOUT_MODES)}")
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"dropout_ratio must be in [0, 1), got {dropout_ratio}")
        self.dropout_ratio = dropout_ratio
        self.mode = mode
        self.rng = np.random.default_rng(seed)
        self.fixed_mask: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.train_flg = False

    def set_mask(self, mask: np.ndarray | None) -> None:
        self.fixed_mask = None if mask is None else np.asarray(mask, dtype=bool)

    def _scale(self) -> float:
        return 1.0 / (1.0 - self.dropout_ratio) if self.mode == "inverted" else 1.0

    def forward(self, x: np.ndarray, train_flg: bool = True) -> np.ndarray:
        self.train_flg = train_flg
        if not train_flg:
            return x if self.mode == "inverted" else x * (1.0 - self.dropout_ratio)
        if self.fixed_mask is not None:
            if self.fixed_mask.shape != x.shape:
                raise ValueError(f"dropout mask has shape {self.fixed_mask.shape}, activation {x.shape}")
            self.mask = self.fixed_mask
        else:
            self.mask = self.rng.random(x.shape, dtype=np.float32) >= self.dropout_ratio
        if self.mode == "inverted":
            return x * self.mask / (1.0 - self.dropout_ratio)
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if not self.train_flg:
            return dout if self.mode == "inverted" else dout * (1.0 - self.dropout_ratio)
        return dout * self.mask * self._scale()
# [/rosetta:dropout]


def set_dropout_masks(model: Any, masks: Mapping[str, np.ndarray] | None) -> None:
    """Fix each Dropout layer's keep-mask by layer name (bool, activation-shaped); None: random."""
    layers = {n: layer for n, layer in model.layers.items() if isinstance(layer, Dropout)}
    unknown = sorted(set(masks or {}) - set(layers))
    if unknown:
        raise ValueError(f"no Dropout layer named {unknown[0]!r}; the model has: "
                         f"{', '.join(layers) or 'none'}")
    for name, layer in layers.items():
        layer.set_mask(None if masks is None else masks.get(name))
