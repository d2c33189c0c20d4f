"""DeepCNN (course: DeepConvNet): the reference's gradient check, and every port against the
reference in float64 and float32, in both dropout conventions, train and eval.

Each port is driven directly through its package (model, loss_fn, its gradient dump,
make_optimizer, train_step). Compared: the logits, every activation by layer name, the loss with
L2 and L1 penalties, every gradient and the input gradient, with the dropout masks shared; then
the parameters after each of 3 SGD and 3 Adam steps. The weights are init_params with non-zero
biases; the inputs are seeded random normals, chosen away from ReLU kinks and max-pool ties so
that float32 round-off cannot flip a unit between the reference and a port.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from conftest import import_framework, require_framework

from reference_numpy import DeepCNN as RefDeepCNN
from reference_numpy.gradient_check import assert_gradients_close, check_model
from reference_numpy.layers import MaxPooling, Relu
from reference_numpy.optimizers import make_optimizer as ref_make_optimizer
from reference_numpy.train import train_step as ref_train_step
from rosetta.tolerances import errors, tolerance
from rosetta.weights import DeepCNNConfig, init_params, trainable_names

PORTS = ("torch", "tf", "chainer")
DTYPES = ("float64", "float32")
MODES = ("inverted", "course")
N = 4  # batch size
# The book's network, with both penalties on so that they reach every loss and gradient.
CONFIG = DeepCNNConfig(weight_decay=0.05, weight_decay_l1=0.01)
# The optimizer steps: SGD, and Adam with eps = lr so that round-off at g ~ 0 is not amplified
# (see NOTE(framework:eps-amplification) in rosetta/parity.py).
OPTIMIZERS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3},
}
STEPS = 3
# Distance (in units of a layer's std) every ReLU input and max-pool runner-up keeps from its kink
# in the compared batches: 10x the float32 round-off of the deepest layers (~1e-6 of their std).
MARGIN = 1e-5
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread while this module runs (restored after). On batch 4 its two
    threads only wait for each other: a forward and backward took 0.09 s with two threads on
    the idle 2-core machine, 0.007 s with one, and ~1 s with two while other processes ran."""
    try:
        import torch
    except ImportError:  # the torch tests skip (or fail under ROSETTA_REQUIRE_ALL=1) on their own
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(mode: str) -> DeepCNNConfig:
    return dataclasses.replace(CONFIG, dropout_mode=mode)


@functools.cache
def params64() -> dict[str, np.ndarray]:
    """He weights and non-zero biases (so that every bias and its gradient is exercised)."""
    params = init_params(CONFIG, seed=0, scheme="he", dtype="float64")
    rng = np.random.default_rng(5)
    return {n: v + 0.1 * rng.standard_normal(v.shape) if n.endswith(".b") else v for n, v in params.items()}


def params(dtype: str) -> dict[str, np.ndarray]:
    return {n: v.astype(dtype) for n, v in params64().items()}


def masks(n: int = N, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"drop1": rng.random((n, CONFIG.hidden_size)) >= CONFIG.dropout_ratio,
            "drop2": rng.random((n, CONFIG.output_size)) >= CONFIG.dropout_ratio}


# --- inputs away from kinks and ties ---------------------------------------------------------

def kink_distance(model: RefDeepCNN, x: np.ndarray) -> float:
    """The smallest distance of any ReLU input from 0 and of any max-pool window's two largest
    values from each other, relative to that layer's input std.

    Exactly equal window values are skipped: they are outputs whose whole receptive field is
    dead (ReLU zeros and padding, e.g. conv4's pad-2 corners), equal to the bias and moved by
    the same parameters, so either tie-break gives the same gradients.
    """
    _, acts = model.forward(x, train=True, return_activations=True)
    names = list(acts)
    dists = [np.inf]
    for i, name in enumerate(names):
        h = acts[names[i - 1]] if i else None
        if isinstance(model.layers[name], Relu):
            dists.append(float(np.min(np.abs(h))) / float(np.std(h)))
        if isinstance(model.layers[name], MaxPooling):
            n, c, hh, ww = h.shape
            windows = h[:, :, :hh // 2 * 2, :ww // 2 * 2].reshape(n, c, hh // 2, 2, ww // 2, 2)
            top2 = np.sort(windows.transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4), axis=1)[:, 2:]
            gaps = top2[:, 1] - top2[:, 0]
            live = (top2[:, 1] > 0) & (gaps > 0)  # windows of ReLU zeros: the ReLU distance covers them
            dists.append(float(np.min(gaps[live], initial=np.inf)) / float(np.std(h)))
    return min(dists)


def safe_batch(models: list[RefDeepCNN], first_seed: int, n: int = N,
               ) -> tuple[np.ndarray, np.ndarray]:
    """The first seeded random-normal batch whose forward pass (float64) through every model
    stays MARGIN away from every kink and tie, so float32 round-off cannot cross one."""
    for seed in range(first_seed, first_seed + 50):
        rng = np.random.default_rng([seed, 2024])
        x = rng.standard_normal((n, *CONFIG.input_dim))
        if all(kink_distance(model, x) > MARGIN for model in models):
            return x, rng.integers(0, CONFIG.output_size, n)
    raise AssertionError(f"no seed in {first_seed}..{first_seed + 49} gives a kink-free batch")


# The optimizer cases: SGD in the course's convention, Adam in the inverted one, so that both
# conventions reach the updates.
OPT_CASES = (("sgd", "course"), ("adam", "inverted"))
# Where the searches for kink-free batches start: the first seed that passes (safe_batch still
# checks it, and moves on should a change of the model or the weights make it unsafe).
FORWARD_SEED = 7
STEP_SEEDS = (103, 205, 310)


@functools.cache
def forward_batch() -> tuple[np.ndarray, np.ndarray]:
    """The batch of the forward and gradient comparisons."""
    return safe_batch([RefDeepCNN(config("inverted"), params=params64(), dtype="float64")], FORWARD_SEED)


@functools.cache
def step_batches() -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, list[dict[str, np.ndarray]]]]:
    """One batch per optimizer step, each safe for the weights before that step on the float64
    trajectory of every case in OPT_CASES; and those trajectories (parameters after each step)."""
    models = {}
    for name, mode in OPT_CASES:
        models[name] = RefDeepCNN(config(mode), params=params64(), dtype="float64")
        models[name].set_dropout_masks(masks())
    optimizers = {name: ref_make_optimizer(name, m, **OPTIMIZERS[name]) for name, m in models.items()}
    out, histories = [], {name: [] for name in models}
    for seed in STEP_SEEDS:
        x, t = safe_batch(list(models.values()), seed)
        out.append((x, t))
        for name, m in models.items():
            ref_train_step(m, optimizers[name], x, t)
            histories[name].append({n: v.copy() for n, v in m.params.items()})
    return out, histories


# --- the reference --------------------------------------------------------------------------

SMALL = DeepCNNConfig(input_dim=(1, 12, 12), conv_params=((2, 3, 1, 1), (2, 3, 1, 1), (3, 3, 1, 1),
                                                          (3, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1)),
                      hidden_size=5, output_size=4, weight_decay=0.1, weight_decay_l1=0.02)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("train", [True, False])
def test_reference_gradcheck(mode: str, train: bool) -> None:
    """Central differences against backward for every tensor and the input, float64, fixed
    masks, L2 and L1 on."""
    cfg = dataclasses.replace(SMALL, dropout_mode=mode)
    base = init_params(cfg, seed=3, scheme="he", dtype="float64")
    rng = np.random.default_rng(4)
    model = RefDeepCNN(cfg, params={n: v + 0.1 * rng.standard_normal(v.shape) if n.endswith(".b") else v
                                    for n, v in base.items()}, dtype="float64")
    rng = np.random.default_rng(1)
    model.set_dropout_masks({"drop1": rng.random((2, 5)) >= 0.5, "drop2": rng.random((2, 4)) >= 0.5})
    for seed in range(20):
        x = np.random.default_rng([seed, 9]).standard_normal((2, 1, 12, 12))
        if kink_distance(model, x) > 1e-4:  # 10 h from every kink, in units of the layer's std
            break
    else:
        raise AssertionError("no seed in range(20) gives a kink-free batch")
    t = np.array([1, 3])
    # 30 sampled entries per tensor (of up to 144) keep the check under a second.
    result = check_model(model, x, t, train=train, input_grad=True, max_entries=30)
    assert set(result) == {*trainable_names(cfg), "input"}
    assert_gradients_close(result)


def test_reference_layers_and_shapes() -> None:
    model = RefDeepCNN(dtype="float64")
    logits, acts = model.forward(np.zeros((2, 1, 28, 28)), return_activations=True)
    assert list(acts) == DeepCNNConfig().layer_names() == list(model.layers)
    assert acts["conv4"].shape == (2, 32, 16, 16) and acts["pool3"].shape == (2, 64, 4, 4)
    assert acts["flatten"].shape == (2, 1024) and acts["drop2"] is logits
    no_dropout = RefDeepCNN(DeepCNNConfig(dropout_ratio=0.0))
    assert "drop1" not in no_dropout.layers and "drop2" not in no_dropout.layers


@pytest.mark.parametrize("mode", MODES)
def test_reference_dropout_convention(mode: str) -> None:
    """Eval scales by 1 - ratio in the course's convention only; train keeps the masked units
    unscaled there and scales them by 1 / (1 - ratio) in the inverted one."""
    ref = reference("float64", mode)
    train_acts, eval_acts = ref[("acts", True)], ref[("acts", False)]
    scale_train, scale_eval = (2.0, 1.0) if mode == "inverted" else (1.0, 0.5)
    np.testing.assert_array_equal(train_acts["drop1"], train_acts["relu7"] * masks()["drop1"] * scale_train)
    np.testing.assert_array_equal(train_acts["drop2"], train_acts["fc2"] * masks()["drop2"] * scale_train)
    np.testing.assert_array_equal(eval_acts["drop1"], eval_acts["relu7"] * scale_eval)
    np.testing.assert_array_equal(eval_acts["drop2"], eval_acts["fc2"] * scale_eval)


# --- the ports ------------------------------------------------------------------------------

class Port:
    """One framework's DeepCNN behind the few calls the tests make; arrays cross as canonical NumPy."""

    def __init__(self, cfg: DeepCNNConfig, dtype: str) -> None:
        self.dtype = dtype

    def forward(self, x: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def loss_and_grads(self, x: np.ndarray, t: np.ndarray, train: bool,
                       ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        raise NotImplementedError

    def set_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def optimizer(self, name: str, hparams: Mapping[str, float]) -> Any:
        return self.pkg.optimizers.make_optimizer(name, self.model, **hparams)

    def params(self) -> dict[str, np.ndarray]:
        return self.pkg.weights.dump_canonical(self.model)


class TorchPort(Port):
    def __init__(self, cfg: DeepCNNConfig, dtype: str) -> None:
        super().__init__(cfg, dtype)
        self.torch = import_framework("torch")
        import torch_impl.deepcnn
        import torch_impl.optimizers
        import torch_impl.train
        import torch_impl.weights

        self.pkg = torch_impl
        self.model = torch_impl.deepcnn.DeepCNN(cfg, params=params(dtype), dtype=dtype)

    def forward(self, x: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        with self.torch.no_grad():
            _, acts = self.model(self.torch.from_numpy(x.astype(self.dtype)), train=train,
                                 return_activations=True)
        return {n: a.numpy().copy() for n, a in acts.items()}

    def loss_and_grads(self, x: np.ndarray, t: np.ndarray, train: bool,
                       ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        self.model.zero_grad(set_to_none=True)
        xt = self.torch.from_numpy(x.astype(self.dtype)).requires_grad_(True)
        loss = self.pkg.train.loss_fn(self.model, self.model(xt, train=train), self.torch.from_numpy(t))
        loss.backward()
        return loss.item(), self.pkg.weights.canonical_grads(self.model), xt.grad.numpy().copy()

    def set_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        for name, mask in masks.items():
            getattr(self.model, name).set_mask(self.torch.from_numpy(mask))

    def step(self, optimizer: Any, x: np.ndarray, t: np.ndarray) -> float:
        return self.pkg.train.train_step(self.model, optimizer, self.torch.from_numpy(x.astype(self.dtype)),
                                         self.torch.from_numpy(t))


class TFPort(Port):
    def __init__(self, cfg: DeepCNNConfig, dtype: str) -> None:
        super().__init__(cfg, dtype)
        self.tf = import_framework("tensorflow")
        import tf_impl.deepcnn
        import tf_impl.optimizers
        import tf_impl.train
        import tf_impl.weights

        self.pkg = tf_impl
        self.model = tf_impl.deepcnn.DeepCNN(cfg, params=params(dtype), dtype=dtype)
        self.variables = {n: v for n, v, _ in tf_impl.weights.conversions(self.model)}

    def _input(self, x: np.ndarray) -> Any:
        return self.tf.constant(np.ascontiguousarray(np.transpose(x.astype(self.dtype), NCHW_TO_NHWC)))

    @staticmethod
    def _nchw(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(a, NHWC_TO_NCHW)) if a.ndim == 4 else a

    def forward(self, x: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        _, acts = self.model.forward(self._input(x), train=train, return_activations=True)
        return {n: self._nchw(a.numpy()) for n, a in acts.items()}

    def loss_and_grads(self, x: np.ndarray, t: np.ndarray, train: bool,
                       ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        names = trainable_names(self.model.config)
        xt = self._input(x)
        with self.tf.GradientTape() as tape:
            tape.watch(xt)
            loss = self.pkg.train.loss_fn(self.model, self.model(xt, training=train), self.tf.constant(t))
        dx, *grads = tape.gradient(loss, [xt, *(self.variables[n] for n in names)])
        named = {n: self.pkg.weights.to_canonical(n, g.numpy(), self.model)
                 for n, g in zip(names, grads, strict=True)}
        return float(loss), named, self._nchw(dx.numpy())

    def set_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        for name, mask in masks.items():
            getattr(self.model, name).keep_mask = np.array(mask, dtype=bool)

    def step(self, optimizer: Any, x: np.ndarray, t: np.ndarray) -> float:
        return self.pkg.train.train_step(self.model, optimizer, self._input(x), self.tf.constant(t))


class ChainerPort(Port):
    def __init__(self, cfg: DeepCNNConfig, dtype: str) -> None:
        super().__init__(cfg, dtype)
        require_framework("chainer")
        from chainer_impl.compat import import_chainer  # the np.sctypes shim before chainer itself

        self.chainer = import_chainer()
        import chainer_impl.deepcnn
        import chainer_impl.optimizers
        import chainer_impl.train
        import chainer_impl.weights

        self.pkg = chainer_impl
        self.model = chainer_impl.deepcnn.DeepCNN(cfg, params=params(dtype), dtype=dtype)

    def forward(self, x: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        with self.chainer.no_backprop_mode():
            _, acts = self.model.forward(x.astype(self.dtype), train=train, return_activations=True)
        return {n: np.array(a.array) for n, a in acts.items()}

    def loss_and_grads(self, x: np.ndarray, t: np.ndarray, train: bool,
                       ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        xv = self.chainer.Variable(x.astype(self.dtype))
        loss = self.pkg.train.loss_fn(self.model, xv, t, train=train)
        self.model.cleargrads()
        loss.backward()
        return float(loss.array), self.pkg.weights.dump_canonical_grads(self.model), np.array(xv.grad)

    def set_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        for name, mask in masks.items():
            getattr(self.model, name).set_mask(mask, np.dtype(self.dtype))

    def step(self, optimizer: Any, x: np.ndarray, t: np.ndarray) -> float:
        return self.pkg.train.train_step(self.model, optimizer, x.astype(self.dtype), t)


PORT_CLASSES: dict[str, Callable[[DeepCNNConfig, str], Port]] = {
    "torch": TorchPort, "tf": TFPort, "chainer": ChainerPort}


@functools.cache
def reference(dtype: str, mode: str) -> dict[str, Any]:
    """The reference's activations, loss, gradients and input gradient, train and eval."""
    model = RefDeepCNN(config(mode), params=params(dtype), dtype=dtype)
    model.set_dropout_masks(masks())
    x, t = forward_batch()
    out: dict[str, Any] = {}
    for train in (True, False):
        _, out[("acts", train)] = model.forward(x.astype(dtype), train=train, return_activations=True)
        loss, grads, dx = model.loss_and_gradient(x.astype(dtype), t, train=train, input_grad=True)
        out[("loss", train)], out[("grads", train)], out[("dx", train)] = loss, grads, dx
    return out


def relative(actual: np.ndarray | float, ref: np.ndarray | float) -> float:
    return errors(np.asarray(actual), np.asarray(ref))[1]


def check(found: dict[str, float], dtype: str, quantity: str, label: str,
          actual: np.ndarray | float, ref: np.ndarray | float) -> None:
    """Record the relative error of ``actual`` under ``label`` and fail past the bound."""
    rel = found[label] = relative(actual, ref)
    bound = tolerance(dtype, quantity)
    assert rel <= bound, f"{label}: relative error {rel:.2e} > {quantity} bound {bound:g} ({dtype})"


def port_errors(port: str, dtype: str) -> dict[str, float]:
    """Every compared quantity's relative error for ``port`` at ``dtype`` (asserting each)."""
    found: dict[str, float] = {}
    x, t = forward_batch()
    for mode in MODES:
        ref = reference(dtype, mode)
        model = PORT_CLASSES[port](config(mode), dtype)
        model.set_masks(masks())
        for train in (True, False):
            tag = f"{mode} {'train' if train else 'eval'}"
            acts = model.forward(x, train)
            ref_acts = ref[("acts", train)]
            assert list(acts) == list(ref_acts), f"{port} layer names {list(acts)}"
            last = list(ref_acts)[-1]
            check(found, dtype, "logits", f"{tag} logits", acts[last], ref_acts[last])
            for name, a in ref_acts.items():
                assert acts[name].dtype == np.dtype(dtype), f"{port} {name}: {acts[name].dtype}"
                check(found, dtype, "activation", f"{tag} activation {name}", acts[name], a)
            loss, grads, dx = model.loss_and_grads(x, t, train)
            check(found, dtype, "loss", f"{tag} loss", loss, ref[("loss", train)])
            assert list(grads) == list(ref[("grads", train)])
            for name, g in ref[("grads", train)].items():
                check(found, dtype, "grad", f"{tag} grad {name}", grads[name], g)
            check(found, dtype, "grad_input", f"{tag} grad x", dx, ref[("dx", train)])
    return found


@functools.cache
def reference_steps(dtype: str, name: str, mode: str) -> list[dict[str, np.ndarray]]:
    """The reference's parameters after each optimizer step (float64: the trajectory that chose
    the batches)."""
    batches, histories = step_batches()
    if dtype == "float64":
        return histories[name]
    model = RefDeepCNN(config(mode), params=params(dtype), dtype=dtype)
    model.set_dropout_masks(masks())
    optimizer = ref_make_optimizer(name, model, **OPTIMIZERS[name])
    history = []
    for x, t in batches:
        ref_train_step(model, optimizer, x.astype(dtype), t)
        history.append({n: v.copy() for n, v in model.params.items()})
    return history


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("port", PORTS)
def test_forward_loss_grads_match_reference(port: str, dtype: str) -> None:
    found = port_errors(port, dtype)
    # Every layer, every gradient and the input gradient, twice (train, eval) per convention.
    n_layers, n_grads = len(CONFIG.layer_names()), len(trainable_names(CONFIG))
    assert len(found) == len(MODES) * 2 * (1 + n_layers + 1 + n_grads + 1)


@pytest.mark.parametrize("name,mode", OPT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("port", PORTS)
def test_optimizer_steps_match_reference(port: str, dtype: str, name: str, mode: str) -> None:
    model = PORT_CLASSES[port](config(mode), dtype)
    model.set_masks(masks())
    optimizer = model.optimizer(name, OPTIMIZERS[name])
    found: dict[str, float] = {}
    history = reference_steps(dtype, name, mode)
    for step, ((x, t), ref) in enumerate(zip(step_batches()[0], history, strict=True), 1):
        model.step(optimizer, x, t)
        after = model.params()
        for tensor, value in ref.items():
            check(found, dtype, "optimizer", f"{name} step {step} {tensor}", after[tensor], value)
    assert len(found) == STEPS * len(trainable_names(CONFIG))
