"""NumPy versions of the layers the checker knows, with every knob a porting difference turns.

The diagnosis re-runs the reference's layer on the reference's input under each hypothesis with
these functions (float64 unless a hypothesis is about float32) and compares with the port.
"""

from __future__ import annotations

import numpy as np

from reference_numpy.util import im2col


def affine(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:  # noqa: N803
    y = x.reshape(x.shape[0], -1) @ W  # (N, out)
    return y if b is None else y + b


def conv(x: np.ndarray, W: np.ndarray, b: np.ndarray | None, stride: int, pad: int) -> np.ndarray:  # noqa: N803
    """Cross-correlation, W (FN, C, KH, KW), symmetric zero padding."""
    fn, _, fh, fw = W.shape
    n, _, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError("empty output")
    col = im2col(x, fh, fw, stride, pad)  # (N*OH*OW, C*KH*KW)
    y = col @ W.reshape(fn, -1).T  # (N*OH*OW, FN)
    if b is not None:
        y = y + b
    return y.reshape(n, oh, ow, fn).transpose(0, 3, 1, 2)  # (N, FN, OH, OW)


def pool(
    x: np.ndarray, size: int, stride: int, pad: int = 0, ceil: bool = False, mode: str = "max"
) -> np.ndarray:
    """Max or average pooling of (N, C, H, W); ``ceil`` keeps a last partial window (torch
    ceil_mode, Chainer cover_all, Keras padding='same' for stride = size)."""
    n, c, h, w = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    if ceil:
        oh, ow = -(-(hp - size) // stride) + 1, -(-(wp - size) // stride) + 1
    else:
        oh, ow = (hp - size) // stride + 1, (wp - size) // stride + 1
    fill = -np.inf if mode == "max" else np.nan
    big = np.full((n, c, (oh - 1) * stride + size, (ow - 1) * stride + size), fill)
    big[:, :, pad : pad + h, pad : pad + w] = x
    if pad:
        big[:, :, :pad, :] = big[:, :, -pad:, :] = big[:, :, :, :pad] = big[:, :, :, -pad:] = fill
        big[:, :, pad : pad + h, pad : pad + w] = x
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = big[:, :, i * stride : i * stride + size, j * stride : j * stride + size]
            out[:, :, i, j] = np.max(win, axis=(2, 3)) if mode == "max" else np.nanmean(win, axis=(2, 3))
    return out


def activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "identity":
        return x
    if name == "softmax":
        return softmax(x)
    if name == "leaky_relu":
        return np.where(x > 0, x, 0.01 * x)
    raise KeyError(name)


ACTIVATIONS = ("relu", "sigmoid", "tanh", "identity", "softmax", "leaky_relu")


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = np.max(z, axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def batchnorm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    *,
    mean: np.ndarray | None = None,
    var: np.ndarray | None = None,
    per_activation: bool = False,
) -> np.ndarray:
    """Batch statistics when ``mean``/``var`` are None, else the given (running) ones."""
    if x.ndim == 4 and not per_activation:
        axes, shape = (0, 2, 3), (1, -1, 1, 1)
    else:
        axes, shape = (0,), (1,) + x.shape[1:]
    if per_activation and x.ndim == 4:
        gamma = np.broadcast_to(gamma.reshape(1, -1, 1, 1), (1,) + x.shape[1:])
        beta = np.broadcast_to(beta.reshape(1, -1, 1, 1), (1,) + x.shape[1:])
    mu = np.mean(x, axis=axes, keepdims=True) if mean is None else np.reshape(mean, shape)
    v = np.var(x, axis=axes, keepdims=True) if var is None else np.reshape(var, shape)
    return np.reshape(gamma, shape) * (x - mu) / np.sqrt(v + eps) + np.reshape(beta, shape)


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(mean, biased var, unbiased var, m) per feature or per channel."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    m = x.size // x.shape[1]
    mu, var = np.mean(x, axis=axes), np.var(x, axis=axes)
    return mu, var, var * m / max(m - 1, 1), m


def cross_entropy(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy from logits."""
    return -log_softmax(z)[np.arange(len(t)), t]
