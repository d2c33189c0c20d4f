"""im2col / col2im: the course's loops, and a one-gather form of the same matrix.

``col`` is ``(N * OH * OW, C * KH * KW)``: rows in (n, oh, ow) order, columns in (c, kh, kw)
order, so ``col @ W.reshape(FN, -1).T`` is the convolution. :func:`im2col` and :func:`col2im`
are the course's (a zero-filled ``(N, C, KH, KW, OH, OW)`` buffer, one strided copy per kernel
offset, then a transpose), except that they keep the input's dtype where the course's ``np.zeros``
made float64. :func:`im2col_fast` builds the identical matrix with one ``np.take`` through a cached
index, :func:`col2im_fast` adds the identical terms in the identical order into an NHWC buffer, so
the two routes agree to the last bit (parity_tests/test_reference_routes.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def conv_output_size(size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """(size + 2 * pad - filter_size) // stride + 1, floor as the frameworks do."""
    return (size + 2 * pad - filter_size) // stride + 1


def _pad(x: np.ndarray, pad: int) -> np.ndarray:
    if pad == 0:
        return x
    return np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])  # (N, C, H + 2p, W + 2p)


def _check_4d(x: np.ndarray) -> None:
    if x.ndim != 4:
        raise ValueError(f"im2col expects (N, C, H, W) input, got shape {x.shape}")


# --- the course's ---------------------------------------------------------------------------
# [rosetta:im2col]
def im2col(input_data: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """(N, C, H, W) -> (N * OH * OW, C * KH * KW), the course's loop over kernel offsets."""
    _check_4d(input_data)
    n, c, h, w = input_data.shape
    out_h = conv_output_size(h, filter_h, stride, pad)
    out_w = conv_output_size(w, filter_w, stride, pad)
    img = _pad(input_data, pad)  # (N, C, H + 2p, W + 2p)
    col = np.zeros((n, c, filter_h, filter_w, out_h, out_w), dtype=input_data.dtype)
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]  # (N, C, OH, OW)
    col = col.transpose(0, 4, 5, 1, 2, 3)  # (N, OH, OW, C, KH, KW)
    return col.reshape(n * out_h * out_w, -1)  # (N*OH*OW, C*KH*KW)


def col2im(
    col: np.ndarray, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
    stride: int = 1, pad: int = 0,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: every column entry is added back onto its pixel (overlaps sum)."""
    n, c, h, w = input_shape
    out_h = conv_output_size(h, filter_h, stride, pad)
    out_w = conv_output_size(w, filter_w, stride, pad)
    col = col.reshape(n, out_h, out_w, c, filter_h, filter_w)  # (N, OH, OW, C, KH, KW)
    col = col.transpose(0, 3, 4, 5, 1, 2)  # (N, C, KH, KW, OH, OW)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]  # (N, C, OH, OW)
    return img[:, :, pad:h + pad, pad:w + pad]  # (N, C, H, W)
# [/rosetta:im2col]


# --- the fast form of the same ----------------------------------------------------------------
@lru_cache(maxsize=64)
def _gather_index(c: int, hp: int, wp: int, filter_h: int, filter_w: int, stride: int,
                  out_h: int, out_w: int, channels_last: bool) -> np.ndarray:
    """Flat offsets into one padded image, (C, HP, WP) or (HP, WP, C), of every col entry in
    col's order."""
    ch, oy, ox, ky, kx = np.ix_(np.arange(c), stride * np.arange(out_h), stride * np.arange(out_w),
                                np.arange(filter_h), np.arange(filter_w))
    if channels_last:
        index = ((oy + ky) * wp + (ox + kx)) * c + ch  # (C, OH, OW, KH, KW)
    else:
        index = ch * hp * wp + (oy + ky) * wp + (ox + kx)  # (C, OH, OW, KH, KW)
    index = index.transpose(1, 2, 0, 3, 4)  # (OH, OW, C, KH, KW): col's (row, column) order
    return np.ascontiguousarray(index.reshape(-1), dtype=np.intp)  # (OH*OW*C*KH*KW,)


def im2col_fast(x: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """The same matrix as :func:`im2col`, gathered by one ``np.take`` (no zero fill, no transpose):
    1.6-2.8x faster here (1.3 against 3.7 ms for the CNN's conv1 on 100 images, 40 against 64 ms
    for 16 channels at 28 x 28 with pad 1), because the copy runs in col's own order. Input in NHWC
    memory (what a Convolution, and the ReLU and pool after it, hand on) is read where it lies."""
    _check_4d(x)
    n, c, h, w = x.shape
    out_h = conv_output_size(h, filter_h, stride, pad)
    out_w = conv_output_size(w, filter_w, stride, pad)
    nhwc = x.transpose(0, 2, 3, 1)  # (N, H, W, C), a view
    channels_last = c > 1 and nhwc.flags.c_contiguous
    if channels_last:
        img = np.pad(nhwc, [(0, 0), (pad, pad), (pad, pad), (0, 0)]) if pad else nhwc  # (N, HP, WP, C)
    else:
        img = _pad(x, pad)  # (N, C, HP, WP)
    index = _gather_index(c, h + 2 * pad, w + 2 * pad, filter_h, filter_w, stride, out_h, out_w,
                          channels_last)
    flat = img.reshape(n, -1)  # (N, HP*WP*C) or (N, C*HP*WP); a copy only for other layouts
    col = np.take(flat, index, axis=1)  # (N, OH*OW*C*KH*KW)
    return col.reshape(n * out_h * out_w, -1)  # (N*OH*OW, C*KH*KW)


# col2im_fast scatters this many bytes of col at a time: the KH*KW strided passes over a chunk then
# read it from cache instead of memory (L2 is 1 MiB a core here, L3 32 MiB shared). Measured on
# the deep CNN's backward, 100 images float32: conv2 (16 ch, 28 x 28) 26.6 -> 11.5 ms, conv4
# 16.8 -> 7.7 ms, conv6 6.0 -> 4.0 ms; chunks of 1 to 10 images time the same within 5%.
COL2IM_CHUNK_BYTES = 4 << 20


def col2im_fast(
    col: np.ndarray, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
    stride: int = 1, pad: int = 0,
) -> np.ndarray:
    """:func:`col2im` without its transpose: the same additions in the same (kh, kw) order, into an
    NHWC buffer, so every pixel's sum is bit-identical. Returns an (N, C, H, W) view of NHWC memory,
    the layout the Convolution's output has, so the previous layer's backward stays in it. A few
    images at a time (COL2IM_CHUNK_BYTES of col): each pixel belongs to one image, so the chunks
    change only the order in which pixels are visited, never the order of one pixel's terms."""
    n, c, h, w = input_shape
    out_h = conv_output_size(h, filter_h, stride, pad)
    out_w = conv_output_size(w, filter_w, stride, pad)
    col = col.reshape(n, out_h, out_w, c, filter_h, filter_w)  # (N, OH, OW, C, KH, KW), a view
    img = np.zeros((n, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1, c), dtype=col.dtype)
    chunk = max(1, COL2IM_CHUNK_BYTES * n // max(1, col.nbytes))  # images per chunk
    for start in range(0, n, chunk):
        col_part = col[start:start + chunk]  # (n', OH, OW, C, KH, KW)
        img_part = img[start:start + chunk]  # (n', HP, WP, C)
        for y in range(filter_h):
            y_max = y + stride * out_h
            for x in range(filter_w):
                x_max = x + stride * out_w
                img_part[:, y:y_max:stride, x:x_max:stride, :] += col_part[..., y, x]  # (n', OH, OW, C)
    return img[:, pad:h + pad, pad:w + pad, :].transpose(0, 3, 1, 2)  # (N, C, H, W) view
