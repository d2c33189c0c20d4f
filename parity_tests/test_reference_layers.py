"""reference_numpy layers: gradient checks (float64), im2col/col2im, dtype, ties, BN, dropout."""

from __future__ import annotations

import numpy as np
import pytest

from reference_numpy.gradient_check import assert_gradients_close, check_layer, numerical_gradient
from reference_numpy.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Flatten,
    IdentityWithMSE,
    MaxPooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from reference_numpy.util import col2im, col2im_fast, im2col, im2col_fast
from rosetta.tolerances import errors, tolerance

GRADCHECK = tolerance("float64", "gradcheck")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- gradient checks -------------------------------------------------------------------------
def test_affine_gradcheck() -> None:
    r = rng()
    layer = Affine(r.standard_normal((6, 4)), r.standard_normal(4))
    assert_gradients_close(check_layer(layer, r.standard_normal((3, 6)), ("W:dW", "b:db")))


def test_affine_flattens_4d_input() -> None:
    r = rng()
    layer = Affine(r.standard_normal((2 * 3 * 3, 4)), r.standard_normal(4))
    x = r.standard_normal((2, 2, 3, 3))
    assert layer.forward(x).shape == (2, 4)
    assert_gradients_close(check_layer(layer, x, ("W:dW", "b:db")))


@pytest.mark.parametrize("layer_cls", [Relu, Sigmoid, Flatten])
def test_elementwise_gradcheck(layer_cls: type) -> None:
    assert_gradients_close(check_layer(layer_cls(), rng(1).standard_normal((3, 2, 4, 4))))


def test_relu_gradient_at_zero_is_zero() -> None:
    layer = Relu()
    layer.forward(np.array([-1.0, 0.0, 2.0]))
    assert layer.backward(np.ones(3)).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (1, 2), (3, 0)])
def test_convolution_gradcheck(stride: int, pad: int) -> None:
    r = rng(2)
    layer = Convolution(r.standard_normal((3, 2, 3, 3)), r.standard_normal(3), stride=stride, pad=pad)
    x = r.standard_normal((2, 2, 7, 6))
    assert_gradients_close(check_layer(layer, x, ("W:dW", "b:db")))


def test_convolution_matches_direct_loops() -> None:
    r = rng(3)
    w, b = r.standard_normal((2, 3, 3, 3)), r.standard_normal(2)
    x = r.standard_normal((2, 3, 6, 5))
    out = Convolution(w, b, stride=2, pad=1).forward(x)
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    expected = np.zeros((2, 2, 3, 3))
    for i in range(3):
        for j in range(3):
            patch = xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            expected[:, :, i, j] = np.einsum("nchw,fchw->nf", patch, w) + b
    assert errors(out, expected)[1] <= tolerance("float64", "activation")


def test_convolution_skips_dx_when_not_needed() -> None:
    r = rng()
    layer = Convolution(r.standard_normal((2, 1, 3, 3)), np.zeros(2))
    out = layer.forward(r.standard_normal((2, 1, 5, 5)))
    assert layer.backward(np.ones_like(out), need_dx=False) is None
    assert layer.dW.shape == (2, 1, 3, 3)


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (2, 2, 5, 7)])
def test_maxpool_gradcheck(shape: tuple[int, ...]) -> None:
    assert_gradients_close(check_layer(MaxPooling(2, 2, 2), rng(4).standard_normal(shape)))


def test_maxpool_generic_route_gradcheck_and_agrees_with_fast_route() -> None:
    x = rng(5).standard_normal((2, 3, 7, 7))
    assert_gradients_close(check_layer(MaxPooling(3, 3, 2), x))
    fast, slow = MaxPooling(2, 2, 2), MaxPooling(2, 2, 2, route="course")
    assert np.array_equal(fast.forward(x), slow.forward(x))
    dout = rng(6).standard_normal((2, 3, 3, 3))
    assert np.array_equal(fast.backward(dout), slow.backward(dout))


def test_maxpool_ties_go_to_first_max_in_row_major_order() -> None:
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, :, 2:] = [[1.0, 5.0], [5.0, 5.0]]  # window 2: three tied maxima
    fast, slow = MaxPooling(2, 2, 2), MaxPooling(2, 2, 2, route="course")
    expected = np.array([[[[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]])  # all-zero window: (0,0)
    for layer in (fast, slow):
        layer.forward(x)
        assert np.array_equal(layer.backward(np.ones((1, 1, 1, 2))), expected)


def test_softmax_with_loss_gradcheck() -> None:
    r = rng(7)
    x = r.standard_normal((4, 5))
    t = np.array([0, 4, 2, 2])
    layer = SoftmaxWithLoss()
    layer.forward(x, t)
    analytic = layer.backward(1.0)
    numerical = numerical_gradient(lambda: layer.forward(x, t), x)
    assert errors(numerical, analytic)[1] <= GRADCHECK


def test_softmax_with_loss_huge_logits_finite() -> None:
    layer = SoftmaxWithLoss()
    loss = layer.forward(np.array([[1e4, 0.0, -1e4]], dtype=np.float32), np.array([2]))
    assert loss == pytest.approx(2e4, rel=1e-6)
    assert np.all(np.isfinite(layer.backward()))


def test_identity_with_mse_gradcheck() -> None:
    r = rng(8)
    x, t = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    layer = IdentityWithMSE()
    assert layer.forward(x, t) == pytest.approx(0.5 * np.sum((x - t) ** 2) / 3)
    analytic = layer.backward()
    numerical = numerical_gradient(lambda: layer.forward(x, t), x)
    assert errors(numerical, analytic)[1] <= GRADCHECK


@pytest.mark.parametrize("shape", [(6, 4), (4, 3, 3, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradcheck(shape: tuple[int, ...], train: bool) -> None:
    r = rng(9)
    c = shape[1]
    layer = BatchNormalization(1 + 0.1 * r.standard_normal(c), r.standard_normal(c),
                               running_mean=r.standard_normal(c), running_var=1 + r.random(c))
    x = 2 * r.standard_normal(shape) + 1
    result = check_layer(layer, x, ("gamma:dgamma", "beta:dbeta"), forward_kwargs={"train_flg": train})
    assert_gradients_close(result)


def test_dropout_gradcheck_with_fixed_mask() -> None:
    x = rng(10).standard_normal((3, 5))
    layer = Dropout(0.4)
    layer.set_mask(rng(11).random((3, 5)) > 0.4)
    assert_gradients_close(check_layer(layer, x))


# --- im2col / col2im -------------------------------------------------------------------------
@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (3, 2)])
def test_im2col_col2im_adjoint(stride: int, pad: int) -> None:
    r = rng(12)
    x = r.standard_normal((2, 3, 7, 6))
    col = im2col(x, 3, 2, stride, pad)
    y = r.standard_normal(col.shape)
    lhs = np.sum(col2im(y, x.shape, 3, 2, stride, pad) * x)
    rhs = np.sum(y * col)
    assert abs(lhs - rhs) <= tolerance("float64", "activation") * abs(rhs)
    assert np.array_equal(im2col_fast(x, 3, 2, stride, pad), col)
    assert np.sum(col2im_fast(y, x.shape, 3, 2, stride, pad) * x) == pytest.approx(rhs)


def test_im2col_matches_course_layout() -> None:
    x = np.arange(2 * 2 * 4 * 4, dtype=np.float64).reshape(2, 2, 4, 4)
    col = im2col(x, 3, 3, 1, 0)
    assert col.shape == (2 * 2 * 2, 2 * 3 * 3)
    # Row (n=1, oh=0, ow=1), columns (c, kh, kw).
    assert np.array_equal(col[1 * 4 + 0 * 2 + 1], x[1, :, 0:3, 1:4].reshape(-1))


# --- dtype -----------------------------------------------------------------------------------
def test_float32_stays_float32_everywhere() -> None:
    r = rng(13)
    f32 = np.float32
    x = r.standard_normal((2, 2, 6, 6)).astype(f32)
    assert im2col(x, 3, 3, 1, 1).dtype == f32 and im2col_fast(x, 3, 3).dtype == f32
    assert col2im(im2col(x, 3, 3, 1, 1), x.shape, 3, 3, 1, 1).dtype == f32
    conv = Convolution(r.standard_normal((3, 2, 3, 3)).astype(f32), np.zeros(3, f32), pad=1)
    fc = Affine(r.standard_normal((27, 4)).astype(f32), np.zeros(4, f32))
    layers = [conv, BatchNormalization(np.ones(3, f32), np.zeros(3, f32)), Relu(), MaxPooling(),
              Dropout(0.5, seed=0), Flatten(), fc, Sigmoid()]
    h = x
    for layer in layers:
        h = layer.forward(h)
        assert h.dtype == f32, type(layer).__name__
    last = SoftmaxWithLoss()
    last.forward(h, np.array([0, 1]))
    d = last.backward()
    for layer in reversed(layers):
        d = layer.backward(d)
        assert d.dtype == f32, type(layer).__name__
    assert conv.dW.dtype == f32 and conv.db.dtype == f32
    assert layers[1].running_var.dtype == f32 and layers[1].dgamma.dtype == f32


# --- BatchNorm running statistics ------------------------------------------------------------
@pytest.mark.parametrize("unbiased", [True, False])
def test_batchnorm_running_stats_and_eval(unbiased: bool) -> None:
    r = rng(14)
    x = 3 * r.standard_normal((5, 2, 3, 3)) + 2  # per channel: m = 5 * 3 * 3 = 45 values
    rm, rv = np.full(2, 0.5), np.full(2, 2.0)
    layer = BatchNormalization(np.ones(2), np.zeros(2), momentum=0.9, eps=1e-5,
                               running_mean=rm, running_var=rv, unbiased_running_var=unbiased)
    y = layer.forward(x, train_flg=True)
    mu = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1 if unbiased else 0)
    assert np.allclose(layer.running_mean, 0.9 * 0.5 + 0.1 * mu, rtol=1e-12)
    assert np.allclose(layer.running_var, 0.9 * 2.0 + 0.1 * var, rtol=1e-12)
    assert layer.running_mean is rm and layer.running_var is rv  # updated in place
    assert np.allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    assert np.allclose(y.var(axis=(0, 2, 3)), 1 / (1 + 1e-5 / x.var(axis=(0, 2, 3))), rtol=1e-9)
    y_eval = layer.forward(x, train_flg=False)
    expected = (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
    assert np.allclose(y_eval, expected, rtol=1e-12)
    assert np.array_equal(layer.running_mean, rm)  # eval does not move the statistics


def test_batchnorm_2d_is_per_feature() -> None:
    x = rng(15).standard_normal((8, 3)) * [1.0, 10.0, 100.0]
    y = BatchNormalization(np.ones(3), np.zeros(3)).forward(x)
    assert np.allclose(y.std(axis=0), 1, atol=1e-4)


# --- Dropout ---------------------------------------------------------------------------------
def test_dropout_inverted_with_injected_mask() -> None:
    x = rng(16).standard_normal((4, 6)).astype(np.float32)
    mask = rng(17).random((4, 6)) > 0.3
    layer = Dropout(0.3)
    layer.set_mask(mask)
    y = layer.forward(x, train_flg=True)
    assert y.dtype == np.float32
    assert np.allclose(y, x * mask / 0.7, rtol=1e-6)
    assert np.allclose(layer.backward(np.ones_like(x)), mask / 0.7, rtol=1e-6)
    assert layer.forward(x, train_flg=False) is x  # inverted: eval is the identity
    with pytest.raises(ValueError, match="dropout mask has shape"):
        layer.forward(x[:2], train_flg=True)
    layer.set_mask(None)
    y = layer.forward(np.ones((200, 200)), train_flg=True)
    kept = y != 0
    assert np.allclose(y[kept], 1 / 0.7) and abs(kept.mean() - 0.7) < 0.01


def test_dropout_course_mode_scales_at_test_time() -> None:
    x = rng(18).standard_normal((4, 6))
    mask = rng(19).random((4, 6)) > 0.5
    layer = Dropout(0.5, mode="course")
    layer.set_mask(mask)
    assert np.array_equal(layer.forward(x, train_flg=True), x * mask)
    assert np.allclose(layer.forward(x, train_flg=False), x * 0.5)
    with pytest.raises(ValueError, match="unknown dropout mode"):
        Dropout(0.5, mode="scaled")


def test_dropout_seeded_masks_reproduce() -> None:
    a, b = Dropout(0.5, seed=3), Dropout(0.5, seed=3)
    x = np.ones((5, 5))
    assert np.array_equal(a.forward(x), b.forward(x))


def test_batchnorm_statistics_do_not_depend_on_the_memory_layout() -> None:
    """A conv hands BatchNorm an NCHW view of NHWC memory; its float64 statistics over (N, H, W)
    must be those of the same values in NCHW memory (summed one by one across a channel's 57,600
    values they were 1.2e-14 off, and the data-parallel running mean 1.9e-12 after 20 steps)."""
    r = np.random.default_rng(3)
    nhwc = 0.5 * r.standard_normal((100, 24, 24, 30)) + 0.2
    strided = nhwc.transpose(0, 3, 1, 2)  # (N, C, H, W) view of NHWC memory
    out = {}
    for name, x in (("strided", strided), ("contiguous", np.ascontiguousarray(strided))):
        layer = BatchNormalization(np.ones(30), np.zeros(30))
        out[name] = (layer.forward(x, train_flg=True), layer.running_mean.copy(), layer.running_var.copy())
    for got, want in zip(out["strided"], out["contiguous"], strict=True):
        np.testing.assert_array_equal(got, want)
