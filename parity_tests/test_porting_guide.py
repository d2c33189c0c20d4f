"""Every claim of docs/porting.md as a test: the mismatch with the framework defaults (asserted to be
there, with its size) and the agreement once the setting or conversion of the guide is applied.

Each section has a ``measure_*`` function (cached) returning its numbers; the section's test asserts
on them, and ``test_guide_numbers`` checks every number written in docs/porting.md against them.
The guide writes a number as a plain value followed by an HTML comment naming its measurement
(hidden once rendered), ``0.46<!-- softmax-ce.course -->``:

* ``0.46``, ``1.2e-01``, ``yes``/``no`` (1/0): equal to 2 significant digits (deterministic mismatches);
* ``≈ 1e-05``: the same order of magnitude, within a factor 10 (round-off, random draws);
* ``< 1e-06``: the measured value is below the bound (agreement after the fix).

Regenerate the ``=`` and ``≈`` numbers after a deliberate change with
``ROSETTA_UPDATE_PORTING=1 pytest parity_tests/test_porting_guide.py -k guide_numbers``.
Tensors are tiny and float64 unless a section is about float32, so the file runs in seconds.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_all, require_framework, shipped_optimizer_steps

from reference_numpy.functions import cross_entropy_error, softmax
from reference_numpy.layers import BatchNormalization, Convolution, Dropout, MaxPooling, Relu
from reference_numpy.optimizers import make_optimizer

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "porting.md"

# slug -> frameworks its measurement needs
SECTIONS: dict[str, tuple[str, ...]] = {}
_MEASURES: dict[str, Callable[[], dict[str, float]]] = {}


Measure = Callable[[], dict[str, float]]


def measure(slug: str, *needs: str) -> Callable[[Measure], Measure]:
    """Register the (cached) measurement of section ``slug``, which needs frameworks ``needs``."""

    def register(fn: Measure) -> Measure:
        cached = functools.cache(fn)
        SECTIONS[slug] = needs
        _MEASURES[slug] = cached
        return cached

    return register


def measured(slug: str) -> dict[str, float]:
    """The numbers of section ``slug``; skips (or fails under ROSETTA_REQUIRE_ALL=1) without its
    frameworks."""
    for framework in SECTIONS[slug]:
        require_framework(framework)
    return _MEASURES[slug]()


def rel(actual: Any, reference: Any) -> float:
    """max|a - ref| / max|ref| in float64."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    assert a.shape == r.shape, f"shape {a.shape} vs reference {r.shape}"
    return float(np.max(np.abs(a - r)) / max(float(np.max(np.abs(r))), 1e-300))


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, 2024])


def _torch() -> Any:
    import torch

    return torch


def _tf() -> tuple[Any, Any]:
    import keras
    import tensorflow as tf

    return tf, keras


def _chainer() -> Any:
    from chainer_impl.compat import import_chainer

    return import_chainer()


# ============================================================================================
# Layouts


@measure("dense-layout", "torch", "tf", "chainer")
def measure_dense_layout() -> dict[str, float]:
    torch, (tf, keras), chainer = _torch(), _tf(), _chainer()
    import chainer.links as L  # noqa: N812

    x = _rng().standard_normal((3, 4))
    W = _rng(1).standard_normal((4, 4))  # noqa: N806 - canonical (in, out); square, so no shape error
    b = _rng(2).standard_normal(4)
    ref = x @ W + b
    lin = torch.nn.Linear(4, 4, dtype=torch.float64)
    with torch.no_grad():
        lin.bias.copy_(torch.from_numpy(b))
        lin.weight.copy_(torch.from_numpy(W))  # as stored: wrong, torch's weight is (out, in)
        torch_naive = lin(torch.from_numpy(x)).detach().numpy()
        lin.weight.copy_(torch.from_numpy(W.T))
        torch_fixed = lin(torch.from_numpy(x)).detach().numpy()
    with chainer.using_config("dtype", np.float64):  # links default to float32 parameters
        ch_naive = L.Linear(4, 4, initialW=W, initial_bias=b)(x).array
        ch_fixed = L.Linear(4, 4, initialW=W.T, initial_bias=b)(x).array
    dense = keras.layers.Dense(4, dtype="float64")
    dense.build((None, 4))
    dense.set_weights([W, b])  # Keras's kernel is (in, out): the canonical layout as is
    keras_out = np.asarray(dense(tf.constant(x)))
    return {"default": max(rel(torch_naive, ref), rel(ch_naive, ref)),
            "fixed": max(rel(torch_fixed, ref), rel(ch_fixed, ref), rel(keras_out, ref))}


def test_dense_layout() -> None:
    m = measured("dense-layout")
    assert m["default"] > 0.1  # (in, out) loaded as (out, in) computes x @ W.T
    assert m["fixed"] < 1e-12


@measure("conv-layout", "torch", "tf", "chainer")
def measure_conv_layout() -> dict[str, float]:
    torch, (tf, keras) = _torch(), _tf()
    _chainer()
    import chainer.functions as F  # noqa: N812

    x = _rng().standard_normal((2, 3, 6, 6))  # NCHW
    W = _rng(1).standard_normal((2, 3, 3, 3))  # noqa: N806 - canonical OIHW
    b = _rng(2).standard_normal(2)
    ref = Convolution(W, b).forward(x)
    torch_out = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(b))
    ch_out = F.convolution_2d(x, W, b).array
    conv = keras.layers.Conv2D(2, 3, dtype="float64")
    conv.build((None, 6, 6, 3))
    x_nhwc = tf.constant(x.transpose(0, 2, 3, 1))  # (N, H, W, C)
    conv.set_weights([W.reshape(3, 3, 3, 2), b])  # reshape is not a transpose: scrambles the taps
    naive = np.asarray(conv(x_nhwc)).transpose(0, 3, 1, 2)  # back to (N, C, H, W)
    conv.set_weights([W.transpose(2, 3, 1, 0), b])  # OIHW -> HWIO
    fixed = np.asarray(conv(x_nhwc)).transpose(0, 3, 1, 2)
    return {"default": rel(naive, ref),
            "fixed": max(rel(fixed, ref), rel(torch_out.numpy(), ref), rel(ch_out, ref))}


def test_conv_layout() -> None:
    m = measured("conv-layout")
    assert m["default"] > 0.1
    assert m["fixed"] < 1e-12


@measure("flatten-order", "tf")
def measure_flatten_order() -> dict[str, float]:
    tf, keras = _tf()
    c, h, w, out = 3, 4, 4, 5
    x = _rng().standard_normal((2, c, h, w))  # the pool output, NCHW
    W = _rng(1).standard_normal((c * h * w, out))  # noqa: N806 - canonical rows in (C, H, W) order
    ref = x.reshape(2, -1) @ W
    x_nhwc = tf.constant(x.transpose(0, 2, 3, 1))  # what the Keras CNN holds
    flat_hwc = np.asarray(keras.layers.Flatten(dtype="float64")(x_nhwc))  # rows in (H, W, C) order
    flat_chw = np.asarray(keras.layers.Flatten(dtype="float64")(tf.transpose(x_nhwc, (0, 3, 1, 2))))
    # the other option: permute fc1.W's rows once, at load time, from (C, H, W) to (H, W, C) order
    w_hwc = W.reshape(c, h, w, out).transpose(1, 2, 0, 3).reshape(c * h * w, out)
    return {"default": rel(flat_hwc @ W, ref), "fixed-transpose": rel(flat_chw @ W, ref),
            "fixed-permute": rel(flat_hwc @ w_hwc, ref)}


def test_flatten_order() -> None:
    m = measured("flatten-order")
    assert m["default"] > 0.1
    assert m["fixed-transpose"] < 1e-12
    assert m["fixed-permute"] < 1e-12


@measure("same-padding", "torch", "tf")
def measure_same_padding() -> dict[str, float]:
    torch, (tf, _) = _torch(), _tf()
    fnn = torch.nn.functional
    x = _rng().standard_normal((1, 1, 8, 8))
    w3 = _rng(1).standard_normal((1, 1, 3, 3))
    w4 = _rng(2).standard_normal((1, 1, 4, 4))

    def tf_same(w: np.ndarray, stride: int) -> np.ndarray:
        y = tf.nn.conv2d(x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), stride, "SAME")
        return np.asarray(y).transpose(0, 3, 1, 2)

    tx = torch.from_numpy(x)
    # strided: TF pads total max((out - 1) * s + k - in, 0) = 1 for in 8, k 3, s 2: 0 before, 1 after
    strided_sym = fnn.conv2d(tx, torch.from_numpy(w3), stride=2, padding=1).numpy()
    strided_fix = fnn.conv2d(fnn.pad(tx, (0, 1, 0, 1)), torch.from_numpy(w3), stride=2).numpy()
    # even kernel, stride 1: total 3 -> 1 before, 2 after; a symmetric pad cannot give 8 outputs
    even_sym_shape = fnn.conv2d(tx, torch.from_numpy(w4), padding=2).shape[-1]
    even_fix = fnn.conv2d(fnn.pad(tx, (1, 2, 1, 2)), torch.from_numpy(w4)).numpy()
    with warnings.catch_warnings():  # torch warns that an even kernel needs an extra pad copy
        warnings.simplefilter("ignore", UserWarning)
        even_torch_same = fnn.conv2d(tx, torch.from_numpy(w4), padding="same").numpy()
    ref_strided, ref_even = tf_same(w3, 2), tf_same(w4, 1)
    return {"default": rel(strided_sym, ref_strided), "even-kernel-symmetric-size": float(even_sym_shape),
            "fixed": max(rel(strided_fix, ref_strided), rel(even_fix, ref_even)),
            "torch-same-even": rel(even_torch_same, ref_even)}


def test_same_padding() -> None:
    m = measured("same-padding")
    assert m["default"] > 0.1  # same shape (4x4), shifted by one pixel
    assert m["even-kernel-symmetric-size"] == 9  # padding=2 on an 8x8 input with a 4x4 kernel
    assert m["fixed"] < 1e-12
    assert m["torch-same-even"] < 1e-12  # torch's padding="same" (stride 1) pads like TF


@measure("maxpool-ties", "torch", "tf", "chainer")
def measure_maxpool_ties() -> dict[str, float]:
    torch, (tf, _), chainer = _torch(), _tf(), _chainer()
    import chainer.functions as F  # noqa: N812

    x = np.zeros((1, 1, 4, 4))  # MNIST's background: every window is a 4-way tie
    x[0, 0, 3, 3] = 1.0
    dout = _rng().standard_normal((1, 1, 2, 2))
    pool = MaxPooling()
    pool.forward(x)
    ref = pool.backward(dout)  # first maximum in row-major window order
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 2, 2).backward(torch.from_numpy(dout))
    with tf.GradientTape() as tape:
        vx = tf.constant(x.transpose(0, 2, 3, 1))
        tape.watch(vx)
        y = tf.nn.max_pool2d(vx, 2, 2, "VALID")
    tf_dx = np.asarray(tape.gradient(y, vx, output_gradients=dout.transpose(0, 2, 3, 1)))  # NHWC
    tf_dx = tf_dx.transpose(0, 3, 1, 2)
    cx = chainer.Variable(x.copy())
    cy = F.max_pooling_2d(cx, 2, 2, cover_all=False)
    cy.grad = dout.copy()
    cy.backward()
    # a hand-written port that routes the gradient with the mask x == max: every tie gets it
    window_max = x.reshape(1, 1, 2, 2, 2, 2).max(axis=(3, 5))  # (1, 1, 2, 2)
    up = np.repeat(np.repeat(window_max, 2, axis=2), 2, axis=3)  # (1, 1, 4, 4)
    mask_form = (x == up) * np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3)
    return {"frameworks": max(rel(tx.grad.numpy(), ref), rel(tf_dx, ref), rel(cx.grad, ref)),
            "mask-form-sum-ratio": float(np.sum(np.abs(mask_form)) / np.sum(np.abs(ref)))}


def test_maxpool_ties() -> None:
    m = measured("maxpool-ties")
    assert m["mask-form-sum-ratio"] > 2  # the mask form hands a 4-way tie's gradient out 4 times
    assert m["frameworks"] < 1e-12  # torch, TF and Chainer send it to one element, as the course


# ============================================================================================
# Loss


@measure("softmax-ce", "torch", "tf")
def measure_softmax_ce() -> dict[str, float]:
    torch, (_, keras) = _torch(), _tf()
    z = np.zeros((2, 10))
    z[0, 1] = 30.0  # confidently wrong: the true loss is ~30
    z[1, 3] = 5.0
    t = np.array([0, 3])
    ref = float(np.mean(np.log(np.sum(np.exp(z), axis=1)) - z[np.arange(2), t]))
    course = cross_entropy_error(softmax(z), t)  # -log(p + 1e-7): capped at 16.1 per sample
    z32 = np.zeros((1, 10), dtype=np.float32)
    z32[0, 1] = 120.0
    with np.errstate(divide="ignore"):
        from_probs32 = float(-np.log(softmax(z32)[0, 0]))  # exp(-120) underflows float32: log(0)
    keras_default = float(keras.losses.SparseCategoricalCrossentropy(dtype="float64")(t, z))
    keras_logits = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(t, z))
    torch_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(t)))
    return {"course": rel(course, ref), "keras-default": rel(keras_default, ref),
            "from-probabilities-float32-inf": float(np.isinf(from_probs32)),
            "fixed": max(rel(keras_logits, ref), rel(torch_loss, ref))}


def test_softmax_ce() -> None:
    m = measured("softmax-ce")
    assert m["course"] > 0.1  # 16.1 instead of 30 on the wrong sample
    assert m["keras-default"] > 0.1  # from_logits=False reads logits as probabilities
    assert m["from-probabilities-float32-inf"] == 1.0
    assert m["fixed"] < 1e-12


def _notes_training(output_activation: str, epochs: int = 3, n: int = 10_000) -> tuple[float, float]:
    """The notes' program (--preset chainer-notes) in the reference, float64: LeCun init, Adam
    eps 1e-8, batches of 100 in order over the first ``n`` train images. Returns the notes' loss
    (train) and the accuracy on the 10k test images after ``epochs``."""
    from conftest import mnist_dir_or_skip

    from rosetta.adapters import make_adapter
    from rosetta.data import batch_order, load_mnist
    from rosetta.weights import MLPConfig, init_params

    config = MLPConfig(hidden_sizes=(100, 100), output_activation=output_activation)
    params = init_params(config, seed=0, scheme="lecun", dtype="float64")  # the same for both
    net = make_adapter("numpy", config, params, "float64")
    net.set_optimizer("adam", lr=1e-3, eps=1e-8)
    xs, ts = load_mnist("train", mnist_dir_or_skip(), layout="flat", dtype="float64", limit=n)
    txs, tts = load_mnist("test", mnist_dir_or_skip(), layout="flat", dtype="float64")
    for epoch in range(epochs):
        for idx in batch_order(n, 100, seed=0, epoch=epoch, shuffle=False):
            net.train_step(xs[idx], ts[idx])
    return net.loss(xs, ts), net.accuracy(txs, tts)


@measure("sigmoid-before-softmax")
def measure_sigmoid_before_softmax() -> dict[str, float]:
    from reference_numpy.layers import Sigmoid, SoftmaxWithLoss

    # The best the sigmoid allows: the right class's output 1, the nine others 0.
    z = np.full((1, 10), -40.0)
    z[0, 3] = 40.0
    y = Sigmoid().forward(z)
    loss_sig, acc_sig = _notes_training("sigmoid")
    loss_id, acc_id = _notes_training("identity")
    return {"loss-floor": SoftmaxWithLoss().forward(y, np.array([3])), "max-prob": float(softmax(y)[0, 3]),
            "loss-sigmoid": loss_sig, "acc-sigmoid": acc_sig, "loss-identity": loss_id,
            "acc-identity": acc_id, "acc-gap": acc_id - acc_sig}


def test_sigmoid_before_softmax() -> None:
    m = measured("sigmoid-before-softmax")
    assert abs(m["loss-floor"] - np.log(1 + 9 / np.e)) < 1e-12  # log(1 + 9/e): the loss cannot go lower
    assert abs(m["max-prob"] - np.e / (np.e + 9)) < 1e-12
    assert m["loss-sigmoid"] > m["loss-floor"] > m["loss-identity"]
    assert m["acc-sigmoid"] < m["acc-identity"]  # the damped gradients learn more slowly


@measure("keras-loss-float32", "tf")
def measure_keras_loss_float32() -> dict[str, float]:
    _, keras = _tf()
    z = _rng().standard_normal((8, 10)) * 3
    t = _rng(1).integers(0, 10, 8)
    ref = float(np.mean(np.log(np.sum(np.exp(z), axis=1)) - z[np.arange(8), t]))
    default = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(t, z)
    fixed = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(t, z)
    return {"default": rel(float(default), ref), "fixed": rel(float(fixed), ref),
            "default-is-float32": float(np.asarray(default).dtype == np.float32)}


def test_keras_loss_float32() -> None:
    m = measured("keras-loss-float32")
    assert m["default-is-float32"] == 1.0
    assert 1e-10 < m["default"] < 1e-6  # float64 logits, float32 loss
    assert m["fixed"] < 1e-14


# ============================================================================================
# Optimizers: one harness, one parameter vector, the same gradients for every framework.

_G_TINY = 1e-6  # one gradient element near 0, where eps matters


def _opt_case() -> tuple[np.ndarray, list[np.ndarray]]:
    w0 = _rng(5).standard_normal(6)
    grads = [_rng(10 + i).standard_normal(6) for i in range(3)]
    for g in grads:
        g[0] = _G_TINY
    return w0, grads


def _reference_steps(name: str, lrs: list[float] | None = None, **hp: float) -> np.ndarray:
    w0, grads = _opt_case()
    params = {"w": w0.copy()}
    opt = make_optimizer(name, **hp)
    for i, g in enumerate(grads):
        if lrs is not None:
            opt.lr = lrs[i]  # type: ignore[attr-defined]
        opt.update(params, {"w": g})
    return params["w"] - w0


def _torch_steps(make: Callable[[list[Any]], Any], lrs: list[float] | None = None,
                 on_lr_change: Callable[[Any, float, float], None] | None = None) -> np.ndarray:
    torch = _torch()
    w0, grads = _opt_case()
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = make([p])
    for i, g in enumerate(grads):
        if lrs is not None:
            old = opt.param_groups[0]["lr"]
            opt.param_groups[0]["lr"] = lrs[i]
            if on_lr_change is not None and i > 0 and old != lrs[i]:
                on_lr_change(opt, old, lrs[i])
        p.grad = torch.from_numpy(g.copy())
        opt.step()
    return p.detach().numpy() - w0


def _keras_steps(opt: Any) -> np.ndarray:
    tf, keras = _tf()
    w0, grads = _opt_case()
    v = keras.Variable(w0.copy(), dtype="float64")
    for g in grads:
        opt.apply_gradients([(tf.constant(g), v)])
    return np.asarray(v) - w0


def _chainer_steps(opt: Any) -> np.ndarray:
    chainer = _chainer()
    w0, grads = _opt_case()
    link = chainer.Link()
    with link.init_scope():
        link.w = chainer.Parameter(w0.copy())
    opt.setup(link)
    for g in grads:
        link.w.grad = g.copy()
        opt.update()
    return link.w.array - w0


def _shipped_steps(framework: str, name: str, lrs: list[float] | None = None, **hp: float) -> np.ndarray:
    """The same steps through the optimizer classes a port ships: the "fixed" of each section."""
    w0, grads = _opt_case()
    return shipped_optimizer_steps(framework, name, w0, grads, lrs, **hp) - w0


def _shipped(name: str, ref: np.ndarray, lrs: list[float] | None = None, **hp: float) -> float:
    """The largest error of the three ports' shipped optimizers against the reference's steps."""
    return max(rel(_shipped_steps(f, name, lrs, **hp), ref) for f in ("torch", "tf", "chainer"))


def _tf_course_steps(update: Callable[[Any, Any, dict[str, Any], int], None]) -> np.ndarray:
    """The contract's update written with tf ops (what tf_impl/optimizers.py does)."""
    tf, _ = _tf()
    w0, grads = _opt_case()
    v = tf.Variable(w0.copy())
    state: dict[str, Any] = {}
    for t, g in enumerate(grads, start=1):
        update(v, tf.constant(g), state, t)
    return v.numpy() - w0


@measure("sgd-lr", "torch", "tf", "chainer")
def measure_sgd_lr() -> dict[str, float]:
    torch, (_, keras), chainer = _torch(), _tf(), _chainer()
    ref = _reference_steps("sgd")  # lr = 0.01
    return {"torch-default": rel(_torch_steps(lambda p: torch.optim.SGD(p)), ref),
            "configured": max(rel(_torch_steps(lambda p: torch.optim.SGD(p, lr=0.01)), ref),
                              rel(_keras_steps(keras.optimizers.SGD()), ref),
                              rel(_chainer_steps(chainer.optimizers.SGD()), ref)),
            "fixed": _shipped("sgd", ref)}


def test_sgd_lr() -> None:
    m = measured("sgd-lr")
    assert m["torch-default"] == pytest.approx(0.9)  # torch's lr defaults to 1e-3, a tenth
    assert m["configured"] < 1e-6  # Keras holds lr in float32 (see keras-float32-hparams)
    assert m["fixed"] < 1e-12  # the ports' own classes (tf_impl keeps lr in float64)


@measure("momentum-form", "torch", "tf", "chainer")
def measure_momentum_form() -> dict[str, float]:
    torch, (_, keras), chainer = _torch(), _tf(), _chainer()
    lrs = [0.01, 0.01, 0.1]  # a schedule: lr x10 before the third step
    ref = _reference_steps("momentum", lrs=lrs)

    def torch_sgd(p: list[Any]) -> Any:
        return torch.optim.SGD(p, lr=0.01, momentum=0.9)

    def rescale(opt: Any, old: float, new: float) -> None:
        # torch's buffer b is v / (-lr): keep v by rescaling b when lr changes
        for state in opt.state.values():
            state["momentum_buffer"].mul_(old / new)

    const_ref = _reference_steps("momentum")
    return {"torch-lr-change": rel(_torch_steps(torch_sgd, lrs=lrs), ref),
            "constant-lr": max(rel(_torch_steps(torch_sgd), const_ref),
                               rel(_keras_steps(keras.optimizers.SGD(0.01, momentum=0.9)), const_ref),
                               rel(_chainer_steps(chainer.optimizers.MomentumSGD()), const_ref)),
            "rescaled": rel(_torch_steps(torch_sgd, lrs=lrs, on_lr_change=rescale), ref),
            "fixed": _shipped("momentum", ref, lrs=lrs)}


def test_momentum_form() -> None:
    m = measured("momentum-form")
    assert m["torch-lr-change"] > 0.1
    assert m["constant-lr"] < 1e-6
    assert m["rescaled"] < 1e-12
    assert m["fixed"] < 1e-12


def _adagrad_tf(lr: float = 0.01, eps: float = 1e-7) -> Callable[[Any, Any, dict[str, Any], int], None]:
    tf, _ = _tf()

    def update(v: Any, g: Any, state: dict[str, Any], t: int) -> None:
        h = state.setdefault("h", tf.zeros_like(g))  # h starts at 0
        state["h"] = h = h + g * g
        v.assign_sub(lr * g / (tf.sqrt(h) + eps))

    return update


@measure("adagrad", "torch", "tf", "chainer")
def measure_adagrad() -> dict[str, float]:
    torch, (_, keras), chainer = _torch(), _tf(), _chainer()
    ref = _reference_steps("adagrad")  # lr 0.01, eps 1e-7 outside the sqrt, h0 = 0
    return {"torch": rel(_torch_steps(lambda p: torch.optim.Adagrad(p)), ref),
            "keras": rel(_keras_steps(keras.optimizers.Adagrad()), ref),
            "chainer": rel(_chainer_steps(chainer.optimizers.AdaGrad()), ref),
            "configured": max(rel(_torch_steps(lambda p: torch.optim.Adagrad(p, lr=0.01, eps=1e-7)), ref),
                              rel(_chainer_steps(chainer.optimizers.AdaGrad(lr=0.01, eps=1e-7)), ref),
                              rel(_tf_course_steps(_adagrad_tf()), ref)),
            "fixed": _shipped("adagrad", ref)}


def test_adagrad() -> None:
    m = measured("adagrad")
    assert m["torch"] > 1e-3  # eps 1e-10: the g = 1e-6 element steps lr instead of lr / 1.1
    assert m["keras"] > 0.1  # lr 1e-3, h0 = 0.1, eps inside the sqrt
    assert m["chainer"] > 0.1  # lr 1e-3, eps 1e-8
    assert m["configured"] < 1e-12
    assert m["fixed"] < 1e-12


def _rmsprop_tf(lr: float = 0.01, rho: float = 0.99, eps: float = 1e-7,
                ) -> Callable[[Any, Any, dict[str, Any], int], None]:
    tf, _ = _tf()

    def update(v: Any, g: Any, state: dict[str, Any], t: int) -> None:
        h = state.setdefault("h", tf.zeros_like(g))
        state["h"] = h = rho * h + (1 - rho) * g * g
        v.assign_sub(lr * g / (tf.sqrt(h) + eps))

    return update


@measure("rmsprop", "torch", "tf", "chainer")
def measure_rmsprop() -> dict[str, float]:
    torch, (_, keras), chainer = _torch(), _tf(), _chainer()
    ref = _reference_steps("rmsprop")  # lr 0.01, rho 0.99, eps 1e-7 outside
    return {"torch": rel(_torch_steps(lambda p: torch.optim.RMSprop(p)), ref),
            "keras": rel(_keras_steps(keras.optimizers.RMSprop()), ref),
            "chainer": rel(_chainer_steps(chainer.optimizers.RMSprop()), ref),
            "configured": max(
                rel(_torch_steps(lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-7)), ref),
                rel(_chainer_steps(chainer.optimizers.RMSprop(lr=0.01, alpha=0.99, eps=1e-7)), ref),
                rel(_tf_course_steps(_rmsprop_tf()), ref)),
            "fixed": _shipped("rmsprop", ref)}


def test_rmsprop() -> None:
    m = measured("rmsprop")
    assert m["torch"] > 1e-3  # eps 1e-8
    assert m["keras"] > 0.1  # lr 1e-3, rho 0.9, eps inside the sqrt
    assert m["chainer"] > 1e-3  # eps 1e-8
    assert m["configured"] < 1e-12
    assert m["fixed"] < 1e-12


def _adam_torch_course(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7) -> np.ndarray:
    """The course's Adam with torch ops (what torch_impl/optimizers.py does)."""
    torch = _torch()
    w0, grads = _opt_case()
    w = torch.from_numpy(w0.copy())
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        gt = torch.from_numpy(g)
        lr_t = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
        m += (1 - b1) * (gt - m)
        v += (1 - b2) * (gt * gt - v)
        w -= lr_t * m / (v.sqrt() + eps)
    return w.numpy() - w0


@measure("adam", "torch", "tf", "chainer")
def measure_adam() -> dict[str, float]:
    torch, (_, keras), chainer = _torch(), _tf(), _chainer()
    ref = _reference_steps("adam")  # lr 1e-3, eps 1e-7 added before the bias correction
    return {"torch": rel(_torch_steps(lambda p: torch.optim.Adam(p)), ref),
            "torch-eps-1e-7": rel(_torch_steps(lambda p: torch.optim.Adam(p, eps=1e-7)), ref),
            "keras": rel(_keras_steps(keras.optimizers.Adam()), ref),
            "chainer": rel(_chainer_steps(chainer.optimizers.Adam()), ref),
            "configured": max(rel(_adam_torch_course(), ref),
                              rel(_chainer_steps(chainer.optimizers.Adam(eps=1e-7)), ref)),
            "fixed": _shipped("adam", ref)}


def test_adam() -> None:
    m = measured("adam")
    assert m["torch"] > 1e-3  # eps 1e-8, and after the bias correction
    assert m["torch-eps-1e-7"] > 1e-3  # the right eps in the wrong place still differs
    # Keras 3's Adam is the course's form with eps 1e-7; only its float32 hyper-parameters
    # (beta2^t rounded to float32) remain: see keras-float32-hparams
    assert m["keras"] < 1e-4
    assert m["chainer"] > 1e-3  # eps 1e-8
    assert m["configured"] < 1e-12
    assert m["fixed"] < 1e-12


@measure("adam-eps", "torch", "tf", "chainer")
def measure_adam_eps() -> dict[str, float]:
    torch, (_, keras), chainer = _torch(), _tf(), _chainer()
    from reference_numpy.optimizers import Adam

    ref_1e8 = _reference_steps("adam", eps=1e-8)  # the course's form with Chainer's eps
    return {"course": Adam().eps, "torch": torch.optim.Adam([torch.zeros(1)]).defaults["eps"],
            "keras": keras.optimizers.Adam().epsilon, "chainer": chainer.optimizers.Adam().hyperparam.eps,
            "course-vs-1e-8": rel(_reference_steps("adam"), ref_1e8),
            "chainer-vs-1e-8": rel(_chainer_steps(chainer.optimizers.Adam()), ref_1e8),
            "preset": _shipped("adam", ref_1e8, eps=1e-8)}


def test_adam_eps() -> None:
    m = measured("adam-eps")
    assert (m["course"], m["torch"], m["keras"], m["chainer"]) == (1e-7, 1e-8, 1e-7, 1e-8)
    assert m["course-vs-1e-8"] > 1e-3  # eps decides the step of a gradient element near 0
    assert m["chainer-vs-1e-8"] < 1e-12  # Chainer's Adam is the course's form: only eps differs
    assert m["preset"] < 1e-12  # the ports' classes with eps=1e-8 (--preset chainer-notes)


@measure("keras-float32-hparams", "tf")
def measure_keras_float32_hparams() -> dict[str, float]:
    tf, keras = _tf()
    ref = _reference_steps("sgd")

    def sgd(v: Any, g: Any, state: dict[str, Any], t: int) -> None:
        v.assign_sub(tf.constant(0.01, tf.float64) * g)

    return {"default": rel(_keras_steps(keras.optimizers.SGD(0.01)), ref),
            "fixed": rel(_tf_course_steps(sgd), ref)}


def test_keras_float32_hparams() -> None:
    m = measured("keras-float32-hparams")
    assert 1e-9 < m["default"] < 1e-7  # float32(0.01) = 0.009999999776
    assert m["fixed"] < 1e-14


@measure("eps-amplification")
def measure_eps_amplification() -> dict[str, float]:
    # The gradient of a bias-like weight (input constantly 1) is a sum of zero-mean terms: ~0 up
    # to round-off, which depends on the summation order (each framework's BLAS has its own).
    rng = _rng(7)
    x = np.concatenate([np.ones((256, 1)), rng.standard_normal((256, 3))], axis=1).astype(np.float32)
    d = rng.standard_normal((256, 5)).astype(np.float32) * 1e-2
    d -= d.mean(axis=0)  # zero-mean columns: the first row of x.T @ d is ~0
    g1 = (x.T @ d).astype(np.float64)
    g2 = (x[::-1].T @ d[::-1]).astype(np.float64)  # the same sums, reversed order
    out: dict[str, float] = {"gradient-rel": rel(g2, g1)}
    for label, eps in (("course", 1e-7), ("conditioned", 1e-3)):
        steps = [g * 0.01 / (np.sqrt(g * g) + eps) for g in (g1, g2)]  # AdaGrad's first step
        out[label] = float(np.max(np.abs(steps[1] - steps[0])) / np.max(np.abs(g2 - g1)))
        out[f"{label}-step-rel"] = rel(steps[1], steps[0])
    return out


def test_eps_amplification() -> None:
    m = measured("eps-amplification")
    assert m["gradient-rel"] < 1e-5  # the two gradients agree to float32 round-off
    assert 1e3 < m["course"] <= 0.01 / 1e-7  # amplified towards lr / eps = 1e5
    assert m["conditioned"] <= 0.01 / 1e-3 + 1e-9  # eps 1e-3: at most 10
    assert m["course-step-rel"] > 100 * m["conditioned-step-rel"]


# ============================================================================================
# BatchNorm


def _bn_input(shape: tuple[int, ...] = (4, 3), scale: float = 1.0) -> np.ndarray:
    return _rng(3).standard_normal(shape) * scale + 0.5


def _ref_bn(x: np.ndarray, momentum: float = 0.9, eps: float = 1e-5,
            **kw: Any) -> tuple[np.ndarray, BatchNormalization]:
    n = x.shape[1]
    bn = BatchNormalization(np.ones(n), np.zeros(n), momentum=momentum, eps=eps, **kw)
    return bn.forward(x, train_flg=True), bn


@measure("bn-momentum", "torch", "tf", "chainer")
def measure_bn_momentum() -> dict[str, float]:
    torch, (tf, keras), chainer = _torch(), _tf(), _chainer()
    import chainer.links as L  # noqa: N812

    x = _bn_input()
    _, ref = _ref_bn(x)

    def torch_mean(momentum: float) -> np.ndarray:
        bn = torch.nn.BatchNorm1d(3, momentum=momentum, dtype=torch.float64)
        bn.train()(torch.from_numpy(x))
        return bn.running_mean.numpy()

    kbn = keras.layers.BatchNormalization(dtype="float64", epsilon=1e-5)
    kbn(tf.constant(x), training=True)
    cbn = L.BatchNormalization(3, decay=0.9, eps=1e-5, dtype=np.float64)
    with chainer.using_config("train", True):
        cbn(x)
    return {"torch-0.9": rel(torch_mean(0.9), ref.running_mean),
            "keras-default": rel(np.asarray(kbn.moving_mean), ref.running_mean),
            "fixed": max(rel(torch_mean(1 - 0.9), ref.running_mean), rel(cbn.avg_mean, ref.running_mean))}


def test_bn_momentum() -> None:
    m = measured("bn-momentum")
    assert m["torch-0.9"] > 0.5  # torch's momentum weights the new batch statistic
    assert m["keras-default"] > 0.5  # Keras's 0.99 keeps more of the old value than the course's 0.9
    assert m["fixed"] < 1e-12


@measure("bn-eps", "torch", "tf", "chainer")
def measure_bn_eps() -> dict[str, float]:
    torch, (tf, keras), chainer = _torch(), _tf(), _chainer()
    import chainer.links as L  # noqa: N812

    x = _bn_input(scale=0.05)  # batch variance ~2.5e-3: eps is a visible share of it
    ref, _ = _ref_bn(x)  # eps 1e-5
    kbn = keras.layers.BatchNormalization(dtype="float64", momentum=0.9)
    keras_default = np.asarray(kbn(tf.constant(x), training=True))
    with chainer.using_config("train", True):
        ch_default = L.BatchNormalization(3, dtype=np.float64)(x).array
        ch_fixed = L.BatchNormalization(3, eps=1e-5, dtype=np.float64)(x).array
    torch_out = torch.nn.BatchNorm1d(3, dtype=torch.float64).train()(torch.from_numpy(x)).detach().numpy()
    kbn_fixed = keras.layers.BatchNormalization(dtype="float64", epsilon=1e-5)
    keras_fixed = np.asarray(kbn_fixed(tf.constant(x), training=True))
    return {"keras": rel(keras_default, ref), "chainer": rel(ch_default, ref),
            "fixed": max(rel(torch_out, ref), rel(ch_fixed, ref), rel(keras_fixed, ref))}


def test_bn_eps() -> None:
    m = measured("bn-eps")
    assert m["keras"] > 0.05  # eps 1e-3
    assert m["chainer"] > 1e-4  # eps 2e-5
    assert m["fixed"] < 1e-12


@measure("bn-running-var", "torch", "tf", "chainer")
def measure_bn_running_var() -> dict[str, float]:
    torch, (tf, keras), chainer = _torch(), _tf(), _chainer()
    import chainer.links as L  # noqa: N812

    from tf_impl.layers import BatchNorm

    x = _bn_input()  # m = 4 values per feature: unbiased = biased * 4 / 3
    _, ref = _ref_bn(x)
    _, course = _ref_bn(x, unbiased_running_var=False)  # the course stores the biased variance
    kbn = keras.layers.BatchNormalization(dtype="float64", momentum=0.9, epsilon=1e-5)
    kbn(tf.constant(x), training=True)
    tbn = torch.nn.BatchNorm1d(3, momentum=0.1, dtype=torch.float64)
    tbn.train()(torch.from_numpy(x))
    cbn = L.BatchNormalization(3, decay=0.9, eps=1e-5, dtype=np.float64)
    with chainer.using_config("train", True):
        cbn(x)
    port = BatchNorm(0.9, 1e-5, dtype="float64")
    port(tf.constant(x), training=True)
    return {"keras": rel(np.asarray(kbn.moving_variance), ref.running_var),
            "course": rel(course.running_var, ref.running_var),
            "keras-vs-course": rel(np.asarray(kbn.moving_variance), course.running_var),
            "fixed": max(rel(tbn.running_var.numpy(), ref.running_var), rel(cbn.avg_var, ref.running_var),
                         rel(np.asarray(port.running_var), ref.running_var))}


def test_bn_running_var() -> None:
    m = measured("bn-running-var")
    assert m["keras"] > 1e-2  # biased moving_variance
    assert m["course"] > 1e-2
    assert m["keras-vs-course"] < 1e-12  # Keras stores what the course stores
    assert m["fixed"] < 1e-12


@measure("bn-initial-var", "torch")
def measure_bn_initial_var() -> dict[str, float]:
    torch = _torch()
    x = _bn_input()
    _, ref = _ref_bn(x)
    # the course creates running_var = zeros(D) on the first forward; every framework starts at 1
    _, course = _ref_bn(x, running_var=np.zeros(3))
    tbn = torch.nn.BatchNorm1d(3, momentum=0.1, dtype=torch.float64)
    tbn.train()(torch.from_numpy(x))
    tbn.eval()
    probe = _bn_input() * 2
    torch_eval = tbn(torch.from_numpy(probe)).detach().numpy()
    return {"course-eval": rel(course.forward(probe, train_flg=False), torch_eval),
            "fixed": rel(ref.forward(probe, train_flg=False), torch_eval)}


def test_bn_initial_var() -> None:
    m = measured("bn-initial-var")
    assert m["course-eval"] > 0.5
    assert m["fixed"] < 1e-12


@measure("bn-4d-axes", "torch")
def measure_bn_4d_axes() -> dict[str, float]:
    torch = _torch()
    x = _rng(4).standard_normal((4, 2, 3, 3)) + 1.0
    torch_out = torch.nn.BatchNorm2d(2, dtype=torch.float64).train()(torch.from_numpy(x)).detach().numpy()
    # the course's BatchNormalization reshapes 4-D input to (N, C*H*W): one mean per activation
    per_activation, _ = _ref_bn(x.reshape(4, -1))
    per_channel, _ = _ref_bn(x)
    return {"per-activation": rel(per_activation.reshape(x.shape), torch_out),
            "fixed": rel(per_channel, torch_out)}


def test_bn_4d_axes() -> None:
    m = measured("bn-4d-axes")
    assert m["per-activation"] > 0.1
    assert m["fixed"] < 1e-12


# ============================================================================================
# Dropout


@measure("dropout-scaling", "torch")
def measure_dropout_scaling() -> dict[str, float]:
    torch = _torch()
    x = _rng().standard_normal((4, 6)) + 3.0  # no zeros: a zero output means a dropped unit
    torch.manual_seed(0)
    y = torch.nn.functional.dropout(torch.from_numpy(x), 0.5, training=True).numpy()
    mask = y != 0
    course = Dropout(0.5, mode="course")
    course.set_mask(mask)
    inverted = Dropout(0.5)
    inverted.set_mask(mask)
    return {"course-train": rel(course.forward(x, train_flg=True), y),
            "course-eval": rel(course.forward(x, train_flg=False), x),
            "fixed": rel(inverted.forward(x, train_flg=True), y)}


def test_dropout_scaling() -> None:
    m = measured("dropout-scaling")
    assert m["course-train"] == pytest.approx(0.5)  # x * mask vs x * mask / (1 - 0.5)
    assert m["course-eval"] == pytest.approx(0.5)  # x * (1 - 0.5) vs x
    assert m["fixed"] < 1e-15


@measure("dropout-masks", "torch", "chainer")
def measure_dropout_masks() -> dict[str, float]:
    torch, chainer = _torch(), _chainer()
    import chainer.functions as F  # noqa: N812

    x = _rng().standard_normal((50, 40)) + 3.0
    keep = np.random.default_rng(0).random(x.shape) >= 0.5  # the NumPy reference's mask, seed 0
    torch.manual_seed(0)
    torch_keep = torch.nn.functional.dropout(torch.from_numpy(x), 0.5, training=True).numpy() != 0
    ref = Dropout(0.5)
    ref.set_mask(keep)
    y_ref = ref.forward(x, train_flg=True)
    y_torch = torch.from_numpy(x) * torch.from_numpy(keep) / (1 - 0.5)  # the injected mask
    with chainer.using_config("train", True):
        y_ch = F.dropout(x, 0.5, mask=keep / (1 - 0.5)).array  # Chainer takes the mask pre-scaled
    return {"same-seed-disagreement": float(np.mean(keep != torch_keep)),
            "fixed": max(rel(y_torch.numpy(), y_ref), rel(y_ch, y_ref))}


def test_dropout_masks() -> None:
    m = measured("dropout-masks")
    assert 0.3 < m["same-seed-disagreement"] < 0.7  # seed 0 in both: unrelated masks
    assert m["fixed"] < 1e-15


# ============================================================================================
# Initialisation, labels, modes


@measure("init-defaults", "torch", "tf", "chainer")
def measure_init_defaults() -> dict[str, float]:
    torch, (_, keras) = _torch(), _tf()
    _chainer()
    import chainer.links as L  # noqa: N812

    from rosetta.weights import MLPConfig, init_params

    fan_in, fan_out = 784, 100
    he = np.sqrt(2.0 / fan_in)
    torch.manual_seed(0)
    torch_w = torch.nn.Linear(fan_in, fan_out).weight.detach().numpy()
    dense = keras.layers.Dense(fan_out)
    dense.build((None, fan_in))
    keras_w = np.asarray(dense.kernel)
    chainer_w = L.Linear(fan_in, fan_out).W.array
    canonical = init_params(MLPConfig(), seed=0)["fc1.W"]
    return {"torch": float(np.std(torch_w) / he), "keras": float(np.std(keras_w) / he),
            "chainer": float(np.std(chainer_w) / he), "canonical-he": float(np.std(canonical) / he),
            "torch-bias-nonzero": float(np.any(torch.nn.Linear(4, 3).bias.detach().numpy() != 0))}


def test_init_defaults() -> None:
    m = measured("init-defaults")
    assert m["torch"] == pytest.approx(1 / np.sqrt(6), rel=0.03)  # kaiming_uniform(a=sqrt(5))
    assert m["keras"] == pytest.approx(np.sqrt(784 / 884), rel=0.03)  # glorot_uniform
    assert m["chainer"] == pytest.approx(np.sqrt(0.5), rel=0.03)  # LeCunNormal
    assert m["canonical-he"] == pytest.approx(1.0, rel=0.03)
    assert m["torch-bias-nonzero"] == 1.0


@measure("label-dtypes", "torch", "chainer")
def measure_label_dtypes() -> dict[str, float]:
    torch = _torch()
    _chainer()
    import chainer.functions as F  # noqa: N812

    z = _rng().standard_normal((4, 10))
    t = np.array([1, 5, -1, 7])  # -1: Chainer's default ignore_label
    logsumexp = np.log(np.sum(np.exp(z), axis=1))
    ref_wrapped = float(np.mean(logsumexp - z[np.arange(4), t]))  # NumPy: t = -1 picks class 9
    chainer_loss = float(F.softmax_cross_entropy(z, t.astype(np.int32)).array)  # mean over 3
    try:
        torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(t.astype(np.int32)))
        torch_int32_error = 0.0
    except RuntimeError:
        torch_int32_error = 1.0
    valid = np.array([1, 5, 2, 7])
    ref = float(np.mean(logsumexp - z[np.arange(4), valid]))
    torch_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(valid)))
    ch_loss = float(F.softmax_cross_entropy(z, valid.astype(np.int32)).array)
    return {"ignore-label": rel(chainer_loss, ref_wrapped), "torch-int32-error": torch_int32_error,
            "fixed": max(rel(torch_loss, ref), rel(ch_loss, ref))}


def test_label_dtypes() -> None:
    m = measured("label-dtypes")
    assert m["ignore-label"] > 1e-2  # Chainer drops the -1 sample, NumPy reads it as class 9
    assert m["torch-int32-error"] == 1.0  # torch 2.x cross_entropy rejects int32 class targets
    assert m["fixed"] < 1e-12


@measure("keras-training-flag", "tf")
def measure_keras_training_flag() -> dict[str, float]:
    tf, keras = _tf()
    x = tf.constant(_bn_input())
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="float64")
    ref, _ = _ref_bn(_bn_input())
    drop = keras.layers.Dropout(0.5, dtype="float64")
    return {"batchnorm-default": rel(np.asarray(bn(x)), ref),  # no training: moving stats (0, 1)
            "dropout-default-identity": float(np.array_equal(np.asarray(drop(x)), np.asarray(x))),
            "fixed": rel(np.asarray(bn(x, training=True)), ref)}


def test_keras_training_flag() -> None:
    m = measured("keras-training-flag")
    assert m["batchnorm-default"] > 0.5
    assert m["dropout-default-identity"] == 1.0
    assert m["fixed"] < 1e-12


@measure("chainer-cover-all", "chainer")
def measure_chainer_cover_all() -> dict[str, float]:
    _chainer()
    import chainer.functions as F  # noqa: N812

    x = _rng().standard_normal((1, 1, 5, 5))  # odd size: 2x2 windows do not tile it
    ref = MaxPooling().forward(x)  # floor: 2x2
    default = F.max_pooling_2d(x, 2, 2).array
    fixed = F.max_pooling_2d(x, 2, 2, cover_all=False).array
    even = _rng().standard_normal((1, 1, 24, 24))  # the CNN's conv output: no difference
    return {"default-size": float(default.shape[-1]), "reference-size": float(ref.shape[-1]),
            "even-24-same": float(np.array_equal(F.max_pooling_2d(even, 2, 2).array,
                                                 MaxPooling().forward(even))),
            "fixed": rel(fixed, ref)}


def test_chainer_cover_all() -> None:
    m = measured("chainer-cover-all")
    assert m["default-size"] == 3 and m["reference-size"] == 2
    assert m["even-24-same"] == 1.0
    assert m["fixed"] < 1e-15


# ============================================================================================
# Data-parallel training (one run of rosetta.distributed, shared with test_distributed.py)


def _data_parallel(slug: str) -> dict[str, float]:
    from conftest import mnist_dir_or_skip

    from rosetta import distributed

    return distributed.pitfall_sizes(distributed.cached_run(str(mnist_dir_or_skip())))[slug]


@measure("grads-summed", "torch", "tf")
def measure_grads_summed() -> dict[str, float]:
    return _data_parallel("grads-summed")


def test_grads_summed() -> None:
    m = measured("grads-summed")
    assert m["torch"] > 0.1  # twice the SGD step, 20 times
    assert m["fixed"] < 1e-12


@measure("loss-per-replica-batch", "torch", "tf")
def measure_loss_per_replica_batch() -> dict[str, float]:
    return _data_parallel("loss-per-replica-batch")


def test_loss_per_replica_batch() -> None:
    m = measured("loss-per-replica-batch")
    assert m["tf"] > 0.1
    assert m["fixed"] < 1e-12


@measure("bn-per-replica", "torch", "tf")
def measure_bn_per_replica() -> dict[str, float]:
    return _data_parallel("bn-per-replica")


def test_bn_per_replica() -> None:
    m = measured("bn-per-replica")
    for key in ("torch-mlp", "torch-cnn"):
        assert m[key] > 1e-2, key
        assert m[f"{key}-predictions"] < 1.0, key  # some test predictions change
    assert m["sync"] < 1e-12


@measure("dropout-same-mask", "torch", "tf")
def measure_dropout_same_mask() -> dict[str, float]:
    return _data_parallel("dropout-same-mask")


def test_dropout_same_mask() -> None:
    m = measured("dropout-same-mask")
    assert m["torch"] > 0.1
    assert m["fixed"] < 1e-12


@measure("lr-rescale", "torch", "tf")
def measure_lr_rescale() -> dict[str, float]:
    return _data_parallel("lr-rescale")


def test_lr_rescale() -> None:
    m = measured("lr-rescale")
    assert m["same-lr-distance"] < 0.8  # half the steps: the parameters travel clearly less
    assert abs(m["scaled-lr-distance"] - 1.0) < 0.05  # linear scaling restores the travel
    assert m["scaled-lr-error"] < m["same-lr-error"]


# ============================================================================================
# The course's own traps


def course_relu_grad(x: np.ndarray) -> np.ndarray:
    """The course's relu_grad (common/functions.py), verbatim but for np.zeros_like."""
    grad = np.zeros_like(x)
    grad[x >= 0] = 1
    return grad


class CourseRelu:
    """The course's Relu layer (common/layers.py)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout[self.mask] = 0  # in place: the caller's array changes
        return dout


@measure("course-relu-grad", "torch")
def measure_course_relu_grad() -> dict[str, float]:
    torch = _torch()
    x = np.array([-1.0, 0.0, 2.0])
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).sum().backward()
    ref = Relu()
    ref.forward(x)
    return {"at-zero": float(abs(course_relu_grad(x)[1] - tx.grad.numpy()[1])),
            "fixed": float(np.max(np.abs(ref.backward(np.ones(3)) - tx.grad.numpy())))}


def test_course_relu_grad() -> None:
    m = measured("course-relu-grad")
    assert m["at-zero"] == 1.0  # course: 1 at x = 0; every framework: 0
    assert m["fixed"] == 0.0


@measure("course-relu-inplace")
def measure_course_relu_inplace() -> dict[str, float]:
    x = _rng().standard_normal((8, 8))
    dout = _rng(1).standard_normal((8, 8))
    kept = dout.copy()
    course = CourseRelu()
    course.forward(x)
    course.backward(dout)
    changed = float(np.mean(dout != kept))
    dout2 = kept.copy()
    ref = Relu()
    ref.forward(x)
    ref.backward(dout2)
    return {"changed-share": changed, "fixed": float(np.mean(dout2 != kept))}


def test_course_relu_inplace() -> None:
    m = measured("course-relu-inplace")
    assert m["changed-share"] > 0.3  # every negative input's dout was zeroed in the caller's array
    assert m["fixed"] == 0.0


# ============================================================================================
# The guide's numbers are these measurements.

# A measured number as the guide writes it: the value (``0.46``, ``1.1e+00``, ``yes``/``no``, or
# ``≈ 5e-08`` / ``< 1e-12``) followed by an HTML comment naming the measurement, which a rendered
# page hides: ``0.46<!-- softmax-ce.course -->``.
_NUMBER = re.compile(r"(?:(≈|<) )?(yes|no|[-+]?[0-9][0-9.]*(?:e[-+]?[0-9]+)?)"
                     r"<!-- ([a-z0-9-]+)\.([a-z0-9.-]+) -->")
# The form the guide used before (``slug.key = 1.1e+00`` in backticks): none may be left.
_OLD_NUMBER = re.compile(r"`[a-z0-9-]+\.[a-z0-9.-]+ (=|≈|<) [-+0-9.e]+`")
# A section heading: groups are ``## Title``, the sections of a group ``### slug: title``.
SECTION = re.compile(r"^### ([a-z0-9-]+): ", flags=re.M)


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def section_body(text: str, slug: str) -> str:
    """The text of section ``slug``, up to the next heading of a section or a group."""
    return re.split(r"\n#{2,3} ", text.split(f"### {slug}: ", 1)[1], maxsplit=1)[0]


def _fmt(op: str, value: float) -> str:
    return f"{value:.1e}" if op == "=" else f"{value:.0e}"


def _show(op: str, written: str, value: float) -> str:
    """``value`` written as the guide writes it, in the form of ``written`` (for the update)."""
    if op:
        return f"{op} {_fmt(op, value)}"
    if written in ("yes", "no"):
        return "yes" if value == 1.0 else "no"
    if "e" not in written and "." not in written:
        return str(round(value))
    return _fmt("=", value) if "e" in written else f"{value:.2g}"


def _value(written: str) -> float:
    return {"yes": 1.0, "no": 0.0}[written] if written in ("yes", "no") else float(written)


def _same(op: str, written: float, value: float) -> bool:
    if op == "<":
        return value < written
    if op == "=":
        return _fmt("=", value) == _fmt("=", written) or abs(value - written) <= 0.05 * abs(written)
    if written == 0 or value == 0:
        return written == value
    return abs(np.log10(abs(value)) - np.log10(abs(written))) <= 1.0


def compare_numbers(text: str, update: bool = False) -> tuple[str, list[str], set[tuple[str, str]], set[str]]:
    """Every measured number of ``text`` against its measurement: (the text, rewritten when
    ``update``; the disagreements; the (slug, key) quoted; the slugs whose frameworks are missing)."""
    skipped: set[str] = set()
    wrong: list[str] = []
    quoted: set[tuple[str, str]] = set()

    def check(match: re.Match[str]) -> str:
        op, written, slug, key = match.groups()
        op = op or ""
        assert slug in SECTIONS, f"docs/porting.md quotes {slug}.{key} but no section {slug!r} is measured"
        quoted.add((slug, key))
        try:
            values = measured(slug)
        except pytest.skip.Exception:
            skipped.add(slug)
            return match.group(0)
        assert key in values, f"docs/porting.md quotes {slug}.{key}; measured keys: {sorted(values)}"
        value = values[key]
        if update and op != "<":
            return f"{_show(op, written, value)}<!-- {slug}.{key} -->"
        if not _same(op or "=", _value(written), value):
            wrong.append(f"{slug}.{key}: guide says {op or '='} {written}, measured {value:.3g}")
        return match.group(0)

    return _NUMBER.sub(check, text), wrong, quoted, skipped


# Sections on framework mechanics: no number to measure (a miss fails the parity matrix or loses
# precision); each links the test that proves the port handles it.
MECHANICS: dict[str, str] = {
    'model-dtype': 'parity_tests/test_parity.py::test_logits_loss_activations',
    'keras-dtype': 'parity_tests/test_tf_port.py::test_keras_layer_without_dtype_computes_in_float32',
    'keras-build': 'parity_tests/test_convert.py::test_round_trip_bit_exact_and_native_load',
    'train-flag': 'parity_tests/test_parity.py::test_batchnorm',
    'chainer-functions': 'parity_tests/test_parity.py::test_logits_loss_activations',
    'chainer-bn-contiguous': 'parity_tests/test_parity.py::test_batchnorm',
    'chainer-cleargrads': 'parity_tests/test_parity.py::test_optimizer_steps',
    'chainer-load-npz': 'parity_tests/test_no_pickle.py::test_no_pickle',
    'tf-function': 'parity_tests/test_parity.py::test_dropout_shared_mask',
    'weight-decay': 'parity_tests/test_parity.py::test_gradients',
    # The porting mistakes rosetta check names: each proven by its gallery cases.
    **{slug: 'parity_tests/test_check.py::test_wrong_port_is_named' for slug in (
        'activation-differs', 'padding-stride', 'pool-ceil', 'softmax-twice', 'label-smoothing',
        'loss-reduction')},
}


def test_guide_sections() -> None:
    """Every section of the guide has a measurement and a test, and the other way round."""
    text = guide_text()
    headings = SECTION.findall(text)
    assert sorted(headings) == sorted([*SECTIONS, *MECHANICS]), (set(headings) ^ {*SECTIONS, *MECHANICS})
    assert not re.findall(r"^## ([a-z0-9-]+): ", text, flags=re.M), "a section at the level of the groups"
    for slug, link in MECHANICS.items():  # described, proven by a test elsewhere in the suite
        body = section_body(text, slug)
        assert f"Test: [`{link}`]" in body, f"section {slug} does not link {link}"
        path, name = link.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), f"{link} does not exist"
    for slug in SECTIONS:
        body = section_body(text, slug)
        test_name = "test_" + slug.replace("-", "_")
        assert test_name in globals(), f"section {slug}: no {test_name} in this file"
        assert f"test_porting_guide.py::{test_name}" in body, f"section {slug} does not link {test_name}"
        assert _NUMBER.search(body), f"section {slug} quotes no measured number"
    for slug in headings:  # the short anchor rosetta check prints (docs/porting.md#SLUG)
        assert f'<a id="{slug}"></a>\n\n### {slug}: ' in text, f"section {slug} has no anchor of its slug"


def test_guide_numbers() -> None:
    """Every number written in docs/porting.md matches its measurement (see the module docstring);
    with ROSETTA_UPDATE_PORTING=1 the ``=`` and ``≈`` numbers are rewritten instead."""
    text = guide_text()
    update = os.environ.get("ROSETTA_UPDATE_PORTING") == "1"
    assert not _OLD_NUMBER.findall(text), "numbers in the old `slug.key = value` form"
    new_text, wrong, quoted, skipped = compare_numbers(text, update)
    if update and new_text != text:
        GUIDE.write_text(new_text, encoding="utf-8")
    assert not wrong, "docs/porting.md disagrees with the measurements:\n" + "\n".join(wrong)
    for slug in SECTIONS:
        if slug in skipped or not any(s == slug for s, _ in quoted):
            continue  # missing frameworks, or a section the guide lacks (test_guide_sections says)
        for key in measured(slug):
            assert (slug, key) in quoted, f"measured {slug}.{key} is not quoted in docs/porting.md"
    if skipped:
        message = f"frameworks missing: numbers of {sorted(skipped)} not checked"
        if require_all():
            pytest.fail(message)
        pytest.skip(message)


def test_the_number_check_can_fail() -> None:
    """A number changed in the guide's text is reported (a section that needs no framework)."""
    text = guide_text()
    written = re.search(r"([0-9.]+)<!-- course-relu-inplace\.changed-share -->", text)
    assert written, "the guide lost course-relu-inplace.changed-share"
    changed = f"{float(written[1]) * 1.5:.2g}<!-- course-relu-inplace.changed-share -->"
    bad = text.replace(written.group(0), changed)
    assert any("changed-share" in w for w in compare_numbers(bad)[1])
    fixed = "<!-- course-relu-inplace.fixed -->"
    bound = text.replace(f"< 1e-15{fixed}", f"< 0{fixed}")
    assert bound != text and any("course-relu-inplace.fixed" in w for w in compare_numbers(bound)[1])
    assert _NUMBER.fullmatch("yes<!-- label-dtypes.torch-int32-error -->")
    assert _NUMBER.fullmatch("≈ 5e-08<!-- keras-loss-float32.default -->")


# ============================================================================================
# The guide's contents: every group and section, linked by the anchor GitHub gives its heading.


def github_anchor(heading: str) -> str:
    """The anchor GitHub generates for a heading: lower case, punctuation dropped (letters,
    digits, ``-``, ``_`` and spaces kept), each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> list[tuple[int, str, str]]:
    """(level, title, anchor) of every ``##``/``###`` heading outside code blocks, after the
    table of contents; repeated anchors get GitHub's ``-1``, ``-2`` suffixes."""
    found, seen, fenced = [], {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#{2,3}) (.+)$", line)
        if m:
            anchor = github_anchor(m[2])
            n = seen.get(anchor, 0)
            seen[anchor] = n + 1
            found.append((len(m[1]), m[2], f"{anchor}-{n}" if n else anchor))
    return [h for h in found if h[1] != "Contents"]


def contents(text: str) -> str:
    """The table of contents the guide must hold: groups as items, their sections nested."""
    return "\n".join(("  " if level == 3 else "") + f"- [{title}](#{anchor})"
                      for level, title, anchor in headings(text))


def test_guide_contents() -> None:
    text = guide_text()
    assert "\n## Contents\n\n" + contents(text) + "\n\n" in text, (
        "the contents of docs/porting.md are not its headings; expected:\n" + contents(text))
    anchors = {a for _, _, a in headings(text)} | set(re.findall(r'<a id="([a-z0-9-]+)"></a>', text))
    broken = [link for link in re.findall(r"\]\(#([^)]+)\)", text) if link not in anchors]
    assert not broken, f"links to no heading: {broken}"
    assert github_anchor("softmax-ce: cross-entropy vs the course's `+1e-7`") == (
        "softmax-ce-cross-entropy-vs-the-courses-1e-7")


@measure("course-names")
def measure_course_names() -> dict[str, float]:
    from reference_numpy.mlp import MLP
    from rosetta.course import import_course_params

    rng = _rng()
    sizes = [784, 50, 100, 10]
    course = {}
    for i in range(1, 4):
        course[f"W{i}"] = rng.standard_normal((sizes[i - 1], sizes[i])) * 0.3
        course[f"b{i}"] = rng.standard_normal(sizes[i]) * 0.3
    x = _rng(1).random((500, 784))

    def book_predict(x: np.ndarray) -> np.ndarray:  # the course's ch03 predict, softmax left out
        h = 1 / (1 + np.exp(-(x @ course["W1"] + course["b1"])))
        h = 1 / (1 + np.exp(-(h @ course["W2"] + course["b2"])))
        return h @ course["W3"] + course["b3"]

    book = book_predict(x)
    out = {}
    for activation in ("sigmoid", "relu"):
        imp = import_course_params(course, "course.pkl", {"activation": activation})
        logits = MLP(imp.config, params=imp.params, dtype="float64").forward(x)
        out[activation] = logits
    return {"relu-for-sigmoid": float(np.mean(np.argmax(out["relu"], 1) != np.argmax(book, 1))),
            "fixed": float(np.max(np.abs(out["sigmoid"] - book)) / np.max(np.abs(book)))}


def test_course_names() -> None:
    m = measured("course-names")
    assert m["relu-for-sigmoid"] > 0.1  # the activation cannot be guessed: refused without --activation
    assert m["fixed"] < 1e-14
