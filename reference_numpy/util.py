"""im2col / col2im, vectorised and dtype-preserving.

Two layouts. The course's, in :func:`im2col`: ``col`` is ``(N * OH * OW, C * KH * KW)``, rows in
(n, oh, ow) order and columns in (c, kh, kw) order, so ``col @ W.reshape(FN, -1).T`` is the
convolution. The batched one the Convolution layer multiplies, in :func:`im2col_batched`:
``(N, C * KH * KW, OH * OW)``. The course allocates ``col`` with ``np.zeros`` (float64) and
loops over kernel offsets; here a strided view does the gather in one copy, in the input's dtype.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_output_size(size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """(size + 2 * pad - filter_size) // stride + 1, floor as the frameworks do."""
    return (size + 2 * pad - filter_size) // stride + 1


def _pad(x: np.ndarray, pad: int) -> np.ndarray:
    if pad == 0:
        return x
    return np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])  # (N, C, H + 2p, W + 2p)


def im2col_windows(x: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """A zero-copy strided view ``(N, C, OH, OW, KH, KW)`` of every receptive field."""
    if x.ndim != 4:
        raise ValueError(f"im2col expects (N, C, H, W) input, got shape {x.shape}")
    xp = _pad(x, pad)
    windows = sliding_window_view(xp, (filter_h, filter_w), axis=(2, 3))  # (N, C, H', W', KH, KW)
    return windows[:, :, ::stride, ::stride]  # (N, C, OH, OW, KH, KW)


def im2col_batched(x: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """(N, C, H, W) -> (N, C * KH * KW, OH * OW): the layout the Convolution layer multiplies.

    ``W.reshape(FN, -1) @ col`` then gives (N, FN, OH * OW), already NCHW, so no output
    transpose is needed; gathering in this order is also 4x faster than the course layout.
    """
    n, c = x.shape[:2]
    windows = im2col_windows(x, filter_h, filter_w, stride, pad)  # (N, C, OH, OW, KH, KW)
    oh, ow = windows.shape[2:4]
    col = windows.transpose(0, 1, 4, 5, 2, 3)  # (N, C, KH, KW, OH, OW), still a view
    return col.reshape(n, c * filter_h * filter_w, oh * ow)  # (N, C*KH*KW, OH*OW), one copy


def col2im_batched(
    col: np.ndarray, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
    stride: int = 1, pad: int = 0,
) -> np.ndarray:
    """Adjoint of :func:`im2col_batched`: scatter-add every column entry back to its pixel.

    Overlapping windows sum. One vectorised add per kernel offset (KH * KW iterations), none per
    pixel or per sample.
    """
    n, c, h, w = input_shape
    oh = conv_output_size(h, filter_h, stride, pad)
    ow = conv_output_size(w, filter_w, stride, pad)
    col6 = col.reshape(n, c, filter_h, filter_w, oh, ow)  # (N, C, KH, KW, OH, OW)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for i in range(filter_h):
        i_max = i + stride * oh
        for j in range(filter_w):
            j_max = j + stride * ow
            img[:, :, i:i_max:stride, j:j_max:stride] += col6[:, :, i, j]  # (N, C, OH, OW)
    return img[:, :, pad:h + pad, pad:w + pad]  # (N, C, H, W)


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """The course's layout: (N, C, H, W) -> (N * OH * OW, C * KH * KW), same dtype as ``x``."""
    n, c = x.shape[:2]
    windows = im2col_windows(x, filter_h, filter_w, stride, pad)  # (N, C, OH, OW, KH, KW)
    oh, ow = windows.shape[2:4]
    col = windows.transpose(0, 2, 3, 1, 4, 5)  # (N, OH, OW, C, KH, KW), still a view
    return col.reshape(n * oh * ow, c * filter_h * filter_w)  # (N*OH*OW, C*KH*KW), one copy


def col2im(
    col: np.ndarray, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
    stride: int = 1, pad: int = 0,
) -> np.ndarray:
    """Adjoint of :func:`im2col` (course layout): ``<col2im(y), x> == <y, im2col(x)>``."""
    n, c, h, w = input_shape
    oh = conv_output_size(h, filter_h, stride, pad)
    ow = conv_output_size(w, filter_w, stride, pad)
    col6 = col.reshape(n, oh, ow, c, filter_h, filter_w)  # (N, OH, OW, C, KH, KW)
    col6 = col6.transpose(0, 3, 4, 5, 1, 2)  # (N, C, KH, KW, OH, OW), a view
    return col2im_batched(col6, input_shape, filter_h, filter_w, stride, pad)  # (N, C, H, W)
