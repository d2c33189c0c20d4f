"""The fast and the course routes of Convolution and MaxPooling agree to the last bit in float64:
forward, dx, dW and db, on odd sizes, pad > 0, stride > 1, several channels, NCHW and NHWC memory.

"To the last bit" is checked on the raw bytes after ``+ 0.0``, which only turns -0.0 into +0.0
(a zero's sign is the one thing the two scatter orders may write differently).
"""

from __future__ import annotations

import numpy as np
import pytest

from reference_numpy import util
from reference_numpy.cnn import CNN
from reference_numpy.layers import ROUTES, Convolution, MaxPooling, Relu
from reference_numpy.util import col2im, col2im_fast, im2col, im2col_fast
from rosetta.weights import make_config


def assert_bits_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    a, b = np.ascontiguousarray(a + 0.0), np.ascontiguousarray(b + 0.0)
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64)), f"max |a - b| = {np.max(np.abs(a - b))}"


def nhwc_memory(x: np.ndarray) -> np.ndarray:
    """The same values, stored NHWC: what a Convolution (and the ReLU after it) hands on."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # (N, C, H, W) view


# (N, C, H, W, FN, K, stride, pad)
CONV_CASES = [
    (3, 1, 28, 28, 30, 5, 1, 0),  # the CNN's conv1
    (2, 3, 7, 6, 4, 3, 1, 1),  # odd sizes, pad 1
    (2, 3, 9, 11, 5, 3, 2, 1),  # stride 2, odd
    (2, 2, 8, 7, 3, 4, 3, 2),  # even kernel, stride 3, pad 2
    (2, 16, 14, 14, 32, 3, 1, 1),  # a deep CNN's 3x3 pad-1 block
    (1, 64, 7, 7, 64, 3, 1, 1),  # 7x7, the last block before a floor pool
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_convolution_routes_bit_identical(case: tuple[int, ...], layout: str) -> None:
    n, c, h, w, fn, k, stride, pad = case
    r = np.random.default_rng(sum(case))
    W, b = r.standard_normal((fn, c, k, k)), r.standard_normal(fn)  # noqa: N806
    x = r.standard_normal((n, c, h, w))
    x = nhwc_memory(x) if layout == "nhwc" else x
    layers = [Convolution(W, b, stride, pad, route=route) for route in ROUTES]
    outs = [layer.forward(x) for layer in layers]
    assert_bits_equal(*outs)
    dout = r.standard_normal(outs[0].shape)
    dxs = [layer.backward(dout) for layer in layers]
    assert_bits_equal(*dxs)
    assert_bits_equal(layers[0].dW, layers[1].dW)
    assert_bits_equal(layers[0].db, layers[1].db)


@pytest.mark.parametrize("stride,pad", [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_im2col_col2im_fast_bit_identical(stride: int, pad: int) -> None:
    r = np.random.default_rng(stride + 10 * pad)
    x = r.standard_normal((2, 3, 9, 7))
    col = im2col(x, 3, 2, stride, pad)
    for source in (x, nhwc_memory(x)):
        assert_bits_equal(im2col_fast(source, 3, 2, stride, pad), col)
    dcol = r.standard_normal(col.shape)
    assert_bits_equal(col2im_fast(dcol, x.shape, 3, 2, stride, pad), col2im(dcol, x.shape, 3, 2, stride, pad))


@pytest.mark.parametrize("images_per_chunk", [1, 2, 5])
def test_col2im_fast_chunks_bit_identical(images_per_chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """col2im_fast scatters a few images at a time: one image, an uneven split (2 + 2 + 1) and the
    whole batch give the course's sums to the last bit."""
    r = np.random.default_rng(images_per_chunk)
    x = r.standard_normal((5, 3, 9, 7))
    dcol = r.standard_normal(im2col(x, 3, 3, 1, 1).shape)
    image_bytes = dcol.nbytes // x.shape[0]
    monkeypatch.setattr(util, "COL2IM_CHUNK_BYTES", images_per_chunk * image_bytes)
    assert_bits_equal(col2im_fast(dcol, x.shape, 3, 3, 1, 1), col2im(dcol, x.shape, 3, 3, 1, 1))


# (shape, pool, stride): even, odd (floor), overlapping windows, 1 x 1
POOL_CASES = [((2, 3, 8, 6), 2, 2), ((2, 3, 7, 7), 2, 2), ((2, 2, 9, 8), 3, 2), ((1, 2, 5, 5), 3, 1),
              ((1, 2, 4, 4), 1, 1)]


@pytest.mark.parametrize("shape,pool,stride", POOL_CASES)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_maxpool_routes_bit_identical(shape: tuple[int, ...], pool: int, stride: int, layout: str) -> None:
    r = np.random.default_rng(pool + stride)
    x = r.standard_normal(shape)
    x[..., 0, :2] = x[..., 0, 2:3]  # ties inside a window
    x = nhwc_memory(x) if layout == "nhwc" else x
    layers = [MaxPooling(pool, pool, stride, route=route) for route in ROUTES]
    outs = [layer.forward(x) for layer in layers]
    assert_bits_equal(*outs)
    dout = r.standard_normal(outs[0].shape)
    assert_bits_equal(*[layer.backward(dout) for layer in layers])


def test_routes_reject_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown Convolution route 'gpu'"):
        Convolution(np.zeros((1, 1, 3, 3)), np.zeros(1), route="gpu")
    with pytest.raises(ValueError, match="unknown MaxPooling route"):
        MaxPooling(route="im2col")


def test_deep_block_routes_bit_identical_end_to_end() -> None:
    """conv 3x3 pad 1 -> ReLU -> conv -> ReLU -> pool on 7x7 (odd, floor): layouts carried through."""
    r = np.random.default_rng(3)
    x = r.standard_normal((2, 4, 7, 7))
    w1, w2 = r.standard_normal((8, 4, 3, 3)), r.standard_normal((8, 8, 3, 3))
    b1, b2 = r.standard_normal(8), r.standard_normal(8)
    results = []
    for route in ROUTES:
        stack = [Convolution(w1, b1, 1, 1, route), Relu(), Convolution(w2, b2, 1, 1, route), Relu(),
                 MaxPooling(2, 2, 2, route)]
        h = x
        for layer in stack:
            h = layer.forward(h)
        d = np.ones_like(h)
        for layer in reversed(stack):
            d = layer.backward(d)
        results.append((h, d, stack[0].dW, stack[2].dW, stack[2].db))
    for a, b in zip(*results, strict=True):
        assert_bits_equal(a, b)


def test_cnn_gradients_bit_identical_across_routes() -> None:
    x = np.random.default_rng(4).random((4, 1, 28, 28))
    t = np.array([0, 3, 7, 9])
    grads = []
    for route in ROUTES:
        model = CNN(make_config("cnn"), dtype="float64", route=route)
        grads.append(model.loss_and_gradient(x, t, input_grad=True))
    assert grads[0][0] == grads[1][0]
    for name in grads[0][1]:
        assert_bits_equal(grads[0][1][name], grads[1][1][name])
    assert_bits_equal(grads[0][2], grads[1][2])
