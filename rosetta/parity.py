"""The parity matrix: every port against the NumPy reference, llm.c style.

Same canonical weights in both, then logits and loss, every activation by layer name, every
gradient by name and the input gradient, 1-10 steps of each optimizer, BatchNorm and Dropout, and
trajectories on real MNIST (100 steps in float32, the first 25 in float64). Each comparison is a
:class:`Record`; a failing one is reported with framework, model, dtype, tensor, error and
tolerance, and with the first layer (in forward order) whose activations part.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rosetta.adapters import Adapter, make_adapter
from rosetta.adapters.base import OPTIMIZERS
from rosetta.configs import MODEL_NAMES, ModelConfig, config_class, make_config, non_default_fields
from rosetta.data import batch_order, layout_for, load_mnist
from rosetta.tolerances import MIN_ARGMAX_AGREEMENT, errors, tolerance
from rosetta.weights import init_params, is_state, param_spec

DTYPES = ("float64", "float32")
SECTIONS = ("forward", "grads", "optimizer", "batchnorm", "dropout", "trajectory")
QUANTITIES = ("logits", "loss", "activation", "grad", "grad_input", "optimizer", "batchnorm",
              "dropout", "trajectory")
TRAJECTORY_OPTIMIZERS = ("sgd", "adam")
TRAJECTORY_STEPS = 100
TRAJECTORY_BATCH = 100
OPTIMIZER_STEPS = 10
# In float64 the trajectory's parameters agree with the reference to ~1e-14 (bound 1e-12), so its
# predictions can differ only where a test image's top two logits tie to ~1e-12: measured 100%
# agreement on all 10k test images for every port, MLP, mlp:notes and CNN, SGD and Adam (worst
# parameter error 1.8e-14, tf CNN Adam). The float64 argmax agreement is therefore taken on the
# first 1000 test images (a tenth of the CNN's evaluation time); float32, where Adam's parameters
# part (its bound is 2e-1 and the agreement is the real check), on all 10k.
FLOAT64_TEST_IMAGES = 1000
# For the same reason the float64 trajectory runs the first FLOAT64_TRAJECTORY_STEPS of its
# steps: a formula that differs from the reference (a missing bias correction, a transposed
# tensor, a wrong decay) parts at the first step by far more than 1e-12, and round-off alone stays
# near 1e-14 however long the run (measured, worst tensor of every port, model and optimizer: 1.8e-14
# after 100 steps, 1.0e-14 after 25, tf CNN Adam both times; the MLPs 3.8e-15 after 25). Float32,
# where the ports drift apart with every step, keeps all 100.
FLOAT64_TRAJECTORY_STEPS = 25
# NOTE(framework:eps-amplification): AdaGrad, RMSProp and Adam divide by sqrt(h) + eps.
# Where a gradient element is near 0, its round-off (which differs between the frameworks'
# reduction orders) is amplified by up to lr / eps (1e5 with the course's eps = 1e-7) into the
# step. The strict check therefore runs with eps = lr (amplification <= 1: eps 1e-2 for AdaGrad
# and RMSProp at lr 1e-2, 1e-3 for Adam at lr 1e-3); eps placement still matters there (inside
# vs outside the sqrt differs by far more than the tolerance). The course defaults run as well,
# against the measured "optimizer_defaults" bound in the tolerance table.
CONDITIONED_HPARAMS: dict[str, dict[str, float]] = {
    "sgd": {}, "momentum": {}, "adagrad": {"eps": 1e-2}, "rmsprop": {"eps": 1e-2}, "adam": {"eps": 1e-3},
}


@dataclass(frozen=True)
class Record:
    """One tensor compared against the reference."""

    model: str
    framework: str
    dtype: str
    quantity: str
    tensor: str
    max_abs_err: float
    max_rel_err: float
    tol: float
    passed: bool

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (f"{verdict}: {self.framework} {self.model} {self.dtype} {self.quantity} "
                f"{self.tensor}: rel err {self.max_rel_err:.3g} (abs {self.max_abs_err:.3g}), "
                f"tol {self.tol:.3g}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Case:
    """One configuration of one model in the matrix, and the sections it runs.

    Every hyper-parameter of every config is set to a value that changes the result by at least
    one case (odd sizes, pad and stride, sigmoid, BatchNorm, both dropout conventions, L2 and L1
    decay, an output activation); ``parity_tests/test_parity.py`` checks that no field is left out.
    """

    model: str
    name: str
    hparams: tuple[tuple[str, object], ...] = ()
    sections: tuple[str, ...] = ("forward", "grads")
    # The optimizer section: which optimizers, how many steps on batches of how many images, and
    # whether the course defaults run beside the conditioned hyper-parameters.
    optimizers: tuple[str, ...] = OPTIMIZERS
    optimizer_steps: int = OPTIMIZER_STEPS
    optimizer_batch: int = 8
    optimizer_defaults: bool = True
    optimizer_kink_free: bool = False  # choose batches away from kinks (see KINK_MARGIN)
    # The trajectory section: optimizers, steps of TRAJECTORY_BATCH real MNIST images, and how
    # many test images the argmax agreement is measured on (None: all 10k).
    trajectory_optimizers: tuple[str, ...] = TRAJECTORY_OPTIMIZERS
    trajectory_steps: int = TRAJECTORY_STEPS
    trajectory_test_images: int | None = None

    @property
    def config(self) -> ModelConfig:
        return make_config(self.model, **dict(self.hparams))

    @property
    def label(self) -> str:
        return self.model if self.name == "default" else f"{self.model}:{self.name}"


def _case(model: str, name: str, sections: tuple[str, ...] = ("forward", "grads"),
          optimizer: dict | None = None, **hparams: object) -> Case:
    return Case(model, name, tuple(hparams.items()), sections, **(optimizer or {}))


DEFAULT_SECTIONS = ("forward", "grads", "optimizer", "trajectory")
ODD_DEEP_CONV = ((5, 3, 0, 1), (6, 3, 2, 2), (7, 2, 1, 1), (5, 3, 0, 1), (6, 3, 1, 2), (4, 2, 1, 1))
CASES: tuple[Case, ...] = (
    _case("mlp", "default", DEFAULT_SECTIONS),
    # Odd sizes, sigmoid hidden and output activations, L2 and L1 decay.
    _case("mlp", "odd", input_size=53, hidden_sizes=(37, 23, 11), output_size=7, activation="sigmoid",
          output_activation="sigmoid", weight_decay=0.05, weight_decay_l1=0.01),
    # The course notes' Chainer program: 784-100-100-10, ReLU, a sigmoid on the output before the
    # softmax cross-entropy (the output activation through optimizer steps and trajectories).
    _case("mlp", "notes", DEFAULT_SECTIONS, hidden_sizes=(100, 100), output_activation="sigmoid"),
    _case("mlp", "bn", ("forward", "grads", "batchnorm"), use_batchnorm=True, bn_momentum=0.8,
          bn_eps=1e-3, weight_decay=0.1),
    _case("mlp", "dropout", ("forward", "grads", "dropout"), dropout_ratio=0.5),
    _case("mlp", "dropout-course", ("forward", "grads", "dropout"), dropout_ratio=0.3,
          dropout_mode="course", weight_decay_l1=0.01),
    _case("cnn", "default", DEFAULT_SECTIONS),
    # Odd conv output (9x8: floor against ceil / cover_all), pad, stride, other sizes, L2 and L1.
    _case("cnn", "odd", input_dim=(2, 17, 15), filter_num=7, filter_size=3, pad=1, stride=2,
          hidden_size=17, output_size=5, weight_decay=0.05, weight_decay_l1=0.01),
    _case("cnn", "bn", ("forward", "grads", "batchnorm"), use_batchnorm=True, bn_momentum=0.8,
          bn_eps=1e-3, weight_decay=0.1),
    # The deep CNN's optimizer steps: 3 steps of SGD and Adam (eps = lr) on batches of 4 that keep
    # clear of every ReLU kink and pooling tie (KINK_MARGIN). With 8 images no batch among 50
    # candidates does (half a million activations: the smallest lands within 1e-5 std of a kink),
    # and RMSProp / AdaGrad / the course eps then turn the crossed kink into float32 differences
    # of 1.2e-5 - 5e-2 (measured, torch and TF). The MLP and CNN cases run all five, 10 steps.
    _case("deepcnn", "default", ("forward", "grads", "optimizer", "dropout", "trajectory"),
          # Its trajectory: 5 Adam steps, agreement on 500 test images (the NumPy reference's
          # deep CNN takes ~0.4 s a step and ~1 s per 1000 images on one core; the MLP and CNN run
          # both optimizers for 100 steps and all 10k images in float32, 25 and 1000 in float64).
          optimizer={"optimizers": ("sgd", "adam"), "optimizer_steps": 3, "optimizer_batch": 4,
                     "optimizer_defaults": False, "optimizer_kink_free": True,
                     "trajectory_optimizers": ("adam",),
                     "trajectory_steps": 5, "trajectory_test_images": 500}),
    # Odd feature maps after every conv and pool, pad 0 and 2, strides 2, other sizes, the course's
    # dropout, L2 and L1.
    _case("deepcnn", "odd", ("forward", "grads", "dropout"), input_dim=(2, 23, 21),
          conv_params=ODD_DEEP_CONV, hidden_size=13, output_size=7, dropout_ratio=0.3,
          dropout_mode="course", weight_decay=0.05, weight_decay_l1=0.01),
)
CASES_BY_LABEL = {c.label: c for c in CASES}


def cases(models: Iterable[str] = MODEL_NAMES) -> list[Case]:
    """The matrix's cases of ``models``, in table order."""
    models = tuple(models)
    return [c for c in CASES if c.model in models]


def get_case(case: Case | str) -> Case:
    """A case by label ("mlp", "cnn:odd"); a bare model name is its default case."""
    if isinstance(case, Case):
        return case
    if case not in CASES_BY_LABEL:
        raise ValueError(f"unknown parity case {case!r}; choose one of: {', '.join(CASES_BY_LABEL)}")
    return CASES_BY_LABEL[case]


def base_config(model: str) -> ModelConfig:
    """The default model of the parity suite."""
    return config_class(model)()


def parity_params(config: ModelConfig, dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """He weights (``init_params``) with every other tensor made non-trivial: biases, beta and
    running means N(0, 0.1), gamma and running variances 1 + N(0, 0.1) / |.|. A zero bias or a
    unit gamma would hide a bias, gamma or running-statistic bug."""
    params = init_params(config, seed=seed, dtype="float64")
    rng = np.random.default_rng([seed, 777])
    for name, value in params.items():
        if name.endswith(".W"):
            continue
        noise = rng.standard_normal(value.shape) * 0.1
        params[name] = value + (np.abs(noise) if name.endswith("running_var") else noise)
    return {n: v.astype(dtype) for n, v in params.items()}


def synthetic_batch(config: ModelConfig, dtype: str, n: int = 8, seed: int = 0,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random-normal inputs (no MNIST zeros: no pooling ties, no ReLU kinks) and labels."""
    rng = np.random.default_rng([seed, 12345])
    x = rng.standard_normal((n, *config.input_shape)).astype(dtype)
    t = rng.integers(0, config.output_size, size=n).astype(np.int64)
    return x, t
def compare(model: str, framework: str, dtype: str, quantity: str, tensor: str,
            actual: np.ndarray | float, reference: np.ndarray | float,
            tol_quantity: str | None = None, floor: float = 0.0) -> Record:
    """A Record for one tensor; the bound comes from the tolerance table."""
    abs_err, rel_err = errors(np.asarray(actual), np.asarray(reference), floor)
    tol = tolerance(dtype, tol_quantity or quantity)
    return Record(model, framework, dtype, quantity, tensor, abs_err, rel_err, tol,
                  bool(rel_err <= tol))


def compare_dicts(model: str, framework: str, dtype: str, quantity: str,
                  actual: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                  prefix: str = "", tol_quantity: str | None = None,
                  round_off: frozenset[str] = frozenset()) -> list[Record]:
    """Records for every tensor of ``reference``; a tensor missing in ``actual`` fails. Each is
    measured relative to itself; those in ``round_off`` relative to the group's largest tensor."""
    group_max = max((float(np.max(np.abs(r))) for r in reference.values() if np.size(r)), default=0.0)
    records = []
    for name, ref in reference.items():
        if name not in actual:
            tol = tolerance(dtype, tol_quantity or quantity)
            records.append(Record(model, framework, dtype, quantity, f"{prefix}{name} (missing)",
                                  float("inf"), float("inf"), tol, False))
            continue
        floor = group_max if name in round_off else 0.0
        records.append(compare(model, framework, dtype, quantity, prefix + name, actual[name], ref,
                               tol_quantity, floor))
    return records


def round_off_only(config: ModelConfig) -> frozenset[str]:
    """Tensors whose gradient is mathematically zero: the bias of a layer feeding a train-mode
    BatchNorm (BN subtracts the batch mean)."""
    names = config.layer_names()
    spec = param_spec(config)
    return frozenset(f"{prev}.b" for prev, name in zip(names, names[1:], strict=False)
                     if name.startswith("bn") and f"{prev}.b" in spec)


def first_divergence(actual: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                     dtype: str) -> tuple[str, float] | None:
    """The first layer (forward order) whose activation exceeds the activation tolerance."""
    tol = tolerance(dtype, "activation")
    for name, ref in reference.items():
        if name not in actual or actual[name].shape != ref.shape:
            return name, float("inf")
        rel = errors(actual[name], ref)[1]
        if rel > tol:
            return name, rel
    return None


def diverging_params(actual: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                     dtype: str) -> list[str]:
    """Parameters whose values differ from the reference beyond the activation tolerance."""
    tol = tolerance(dtype, "activation")
    return [n for n, ref in reference.items() if n not in actual or errors(actual[n], ref)[1] > tol]


# --------------------------------------------------------------------------------------------
# What each section computes, as typed results; the reference side is computed once per case.


@dataclass
class ForwardResult:
    activations: dict[str, np.ndarray]  # eval mode, forward order; the last is the logits
    loss: float


@dataclass
class GradResult:
    loss: float  # train mode (dropout with the shared masks)
    grads: dict[str, np.ndarray]
    grad_input: np.ndarray


@dataclass
class BatchNormResult:
    train_activations: dict[str, np.ndarray]
    state_after_forward: dict[str, np.ndarray]  # running statistics after one train forward
    grad: GradResult
    after_steps: dict[str, np.ndarray]  # every tensor after 3 SGD steps
    eval_activations: dict[str, np.ndarray]


@dataclass
class DropoutResult:
    train_activations: dict[str, np.ndarray]
    grad: GradResult
    eval_activations: dict[str, np.ndarray]


@dataclass
class TrajectoryResult:
    params: dict[str, np.ndarray]
    predictions: np.ndarray  # argmax on the 10k test images


@dataclass
class TrajectoryCheck:
    records: list[Record]
    agreement: float  # share of identical argmax predictions with the reference


@functools.lru_cache(maxsize=128)
def _reference(case: Case, dtype: str, section: str, extra: object = None) -> object:
    ref = _adapter("numpy", case, dtype, section)
    return SECTION_RUNNERS[section](ref, case.config, dtype, extra)


@functools.lru_cache(maxsize=32)
def dropout_masks(config: ModelConfig, n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Seeded keep-masks for every Dropout layer of ``config``, shaped like its activations
    (cached: callers must not modify them)."""
    names = config.dropout_layers()
    if not names:
        return {}
    x, _ = synthetic_batch(config, "float64", n=n)
    acts = _adapter("numpy", None, "float64", "forward", config).forward(x)
    rng = np.random.default_rng(seed)
    ratio = float(config.dropout_ratio)  # type: ignore[union-attr]
    return {name: rng.random(acts[name].shape) >= ratio for name in names}


def _grads(adapter: Adapter, config: ModelConfig, dtype: str) -> GradResult:
    x, t = synthetic_batch(config, dtype)
    loss, grads, dx = adapter.loss_and_grads(x, t, train=True, input_grad=True)
    return GradResult(loss, grads, dx)  # type: ignore[arg-type]


def _run_forward(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> ForwardResult:
    x, t = synthetic_batch(config, dtype)
    acts = adapter.forward(x, train=False)
    loss, _, _ = adapter.loss_and_grads(x, t, train=False)
    return ForwardResult(acts, loss)


def _run_grads(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> GradResult:
    adapter.set_dropout_masks(dropout_masks(config, 8))
    return _grads(adapter, config, dtype)


# Every ReLU input and every max-pool window's runner-up keeps at least this distance (relative
# to the layer's input std) from its kink in the optimizer section's batches: 10x the float32
# round-off of the deep CNN's last layers (~1e-6 of their std). A batch that crosses a kink in one
# framework and not in another changes one unit's gradient outright, and the float32 steps then
# part by 1.2e-5-1.8e-5 (measured: deepcnn RMSProp, torch and TF) instead of round-off.
KINK_MARGIN = 1e-5


def kink_distance(model: object, x: np.ndarray) -> float:
    """The smallest distance of a ReLU input from 0 and of a max-pool window's two largest values
    from each other, relative to that layer's input std (reference model, train mode).

    Windows whose two largest values are exactly equal are skipped: their whole receptive field is
    dead (ReLU zeros, padding), so either tie-break routes the same gradient."""
    from reference_numpy.layers import MaxPooling, Relu

    _, acts = model.forward(x, train=True, return_activations=True)  # type: ignore[attr-defined]
    names = list(acts)
    dists = [np.inf]
    for prev, name in zip(names, names[1:], strict=False):
        h = acts[prev]
        layer = model.layers[name]  # type: ignore[attr-defined]
        if isinstance(layer, Relu):
            dists.append(float(np.min(np.abs(h))) / float(np.std(h)))
        elif isinstance(layer, MaxPooling) and h.ndim == 4:
            n, c, hh, ww = h.shape
            windows = h[:, :, :hh // 2 * 2, :ww // 2 * 2].reshape(n, c, hh // 2, 2, ww // 2, 2)
            top2 = np.sort(windows.transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4), axis=1)[:, 2:]
            gaps = top2[:, 1] - top2[:, 0]
            live = (top2[:, 1] > 0) & (gaps > 0)
            dists.append(float(np.min(gaps[live], initial=np.inf)) / float(np.std(h)))
    return min(dists)


@functools.lru_cache(maxsize=64)
def optimizer_seeds(case: Case, extra: object) -> tuple[int, tuple[int, ...]]:
    """The batch size and the seed of each optimizer step: 100 + step, or, for a case with
    ``optimizer_kink_free``, the first candidate whose inputs stay KINK_MARGIN away from every
    kink on the float64 reference trajectory."""
    name, steps, hparams = extra  # type: ignore[misc]
    n = case.optimizer_batch
    if not case.optimizer_kink_free:  # the MLP and CNN bounds were measured on these batches
        return n, tuple(100 + step for step in range(steps))
    ref = _adapter("numpy", case, "float64", "optimizer")
    ref.set_dropout_masks(dropout_masks(case.config, n))
    ref.set_optimizer(name, **dict(hparams))
    seeds = []
    for step in range(steps):
        candidates = range(100 + 50 * step, 150 + 50 * step)
        for seed in candidates:
            x, t = synthetic_batch(case.config, "float64", n=n, seed=seed)
            if kink_distance(ref.model, x) > KINK_MARGIN:
                break
        else:
            raise RuntimeError(f"{case.label}: no kink-free batch among seeds "
                               f"{candidates[0]}..{candidates[-1]}")
        seeds.append(seed)
        ref.train_step(x, t)
    return n, tuple(seeds)


def _run_optimizer(adapter: Adapter, config: ModelConfig, dtype: str, extra: object,
                   ) -> list[dict[str, np.ndarray]]:
    name, steps, hparams, (n, seeds) = extra  # type: ignore[misc]
    adapter.set_dropout_masks(dropout_masks(config, n))
    adapter.set_optimizer(name, **dict(hparams))
    history = []
    for step in range(steps):
        x, t = synthetic_batch(config, dtype, n=n, seed=seeds[step])
        adapter.train_step(x, t)
        history.append({n: v.copy() for n, v in adapter.params().items() if not is_state(n)})
    return history


def _run_batchnorm(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> BatchNormResult:
    x, _ = synthetic_batch(config, dtype)
    adapter.set_dropout_masks(dropout_masks(config, 8))
    train_acts = adapter.forward(x, train=True)
    state_after_forward = {n: v.copy() for n, v in adapter.params().items() if is_state(n)}
    grad = _grads(adapter, config, dtype)
    adapter.set_optimizer("sgd")
    for step in range(3):
        xs, ts = synthetic_batch(config, dtype, seed=200 + step)
        adapter.train_step(xs, ts)
    after_steps = {n: v.copy() for n, v in adapter.params().items()}
    eval_acts = adapter.forward(x, train=False)
    return BatchNormResult(train_acts, state_after_forward, grad, after_steps, eval_acts)


def _run_dropout(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> DropoutResult:
    x, _ = synthetic_batch(config, dtype)
    adapter.set_dropout_masks(dropout_masks(config, len(x)))
    acts = adapter.forward(x, train=True)
    return DropoutResult(acts, _grads(adapter, config, dtype), adapter.forward(x, train=False))


@functools.lru_cache(maxsize=4)
def _mnist(data_dir: str, layout: str, dtype: str) -> tuple[np.ndarray, ...]:
    x_train, t_train = load_mnist("train", data_dir, layout=layout, dtype=dtype,
                                  limit=TRAJECTORY_STEPS * TRAJECTORY_BATCH)
    x_test, t_test = load_mnist("test", data_dir, layout=layout, dtype=dtype)
    return x_train, t_train, x_test, t_test


def train_trajectory(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> np.ndarray:
    """The trajectory's training steps on ``adapter``; returns the test images its predictions are
    measured on. ``extra``: (optimizer, data_dir, steps, test_images)."""
    optimizer, data_dir, steps, test_images = extra  # type: ignore[misc]
    x_train, t_train, x_test, _ = _mnist(data_dir, layout_for(config.input_shape), dtype)
    x_train, t_train, x_test = x_train[:steps * TRAJECTORY_BATCH], t_train[:steps * TRAJECTORY_BATCH], \
        x_test[:test_images]
    # Dropout: one shared keep-mask for every step (all batches have TRAJECTORY_BATCH images).
    adapter.set_dropout_masks(dropout_masks(config, TRAJECTORY_BATCH))
    adapter.set_optimizer(optimizer)
    for idx in batch_order(len(x_train), TRAJECTORY_BATCH, seed=0, epoch=0):
        adapter.train_step(x_train[idx], t_train[idx])
    return x_test


def _run_trajectory(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> TrajectoryResult:
    x_test = train_trajectory(adapter, config, dtype, extra)
    return TrajectoryResult(adapter.params(), adapter.predict(x_test))


SECTION_RUNNERS: dict[str, Callable[[Adapter, ModelConfig, str, object], object]] = {
    "forward": _run_forward, "grads": _run_grads, "optimizer": _run_optimizer,
    "batchnorm": _run_batchnorm, "dropout": _run_dropout, "trajectory": _run_trajectory,
}


# --------------------------------------------------------------------------------------------
# The sections, one port at a time.


Perturb = Callable[[dict[str, np.ndarray]], None]


def _adapter(framework: str, case: Case | None, dtype: str, section: str,
             config: ModelConfig | None = None, perturb: Perturb | None = None) -> Adapter:
    """``framework``'s model of the case, from the parity weights. The optimizer and trajectory
    sections start from the He init with zero biases, the weights their bounds were measured with
    (the course-default optimizer bound amplifies round-off by lr / eps: see eps-amplification)."""
    config = case.config if case is not None else config
    assert config is not None
    if section in ("optimizer", "trajectory"):
        params = init_params(config, seed=0, dtype=dtype)
    else:
        params = parity_params(config, dtype)
    if perturb is not None:
        perturb(params)
    return make_adapter(framework, config, params, dtype)


def _records(case: Case, framework: str, dtype: str) -> Callable[..., list[Record]]:
    def many(quantity: str, actual: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
             prefix: str = "", tol_quantity: str | None = None, round_off: bool = False) -> list[Record]:
        floor_names = round_off_only(case.config) if round_off else frozenset()
        return compare_dicts(case.label, framework, dtype, quantity, actual, reference, prefix,
                             tol_quantity, floor_names)
    return many


def _grad_records(case: Case, framework: str, dtype: str, quantity: str, got: GradResult,
                  want: GradResult, prefix: str = "") -> list[Record]:
    label = case.label
    return [compare(label, framework, dtype, "loss" if quantity == "grad" else quantity,
                    f"{prefix}loss (train)", got.loss, want.loss),
            *compare_dicts(label, framework, dtype, quantity, got.grads, want.grads, prefix,
                           round_off=round_off_only(case.config)),
            compare(label, framework, dtype, "grad_input" if quantity == "grad" else quantity,
                    f"{prefix}x", got.grad_input, want.grad_input)]


def check_forward(case: Case | str, framework: str, dtype: str, perturb: Perturb | None = None,
                  ) -> list[Record]:
    """Sections 1 and 2: logits, loss and every intermediate activation (eval mode)."""
    case = get_case(case)
    ref: ForwardResult = _reference(case, dtype, "forward")  # type: ignore[assignment]
    got = _run_forward(_adapter(framework, case, dtype, "forward", perturb=perturb), case.config, dtype, None)
    logits_name = list(ref.activations)[-1]
    inner = {n: v for n, v in ref.activations.items() if n != logits_name}
    return [compare(case.label, framework, dtype, "logits", logits_name, got.activations[logits_name],
                    ref.activations[logits_name]),
            compare(case.label, framework, dtype, "loss", "loss", got.loss, ref.loss),
            *_records(case, framework, dtype)("activation", got.activations, inner)]


def check_grads(case: Case | str, framework: str, dtype: str) -> list[Record]:
    """Section 3: the gradient of every parameter by name, and of the input (train mode, with the
    shared dropout masks where the model has Dropout)."""
    case = get_case(case)
    ref: GradResult = _reference(case, dtype, "grads")  # type: ignore[assignment]
    got = _run_grads(_adapter(framework, case, dtype, "grads"), case.config, dtype, None)
    return _grad_records(case, framework, dtype, "grad", got, ref)


def check_optimizer(case: Case | str, framework: str, dtype: str, optimizer: str,
                    steps: int | None = None, defaults: bool = False) -> list[Record]:
    """Section 4: parameters after every one of ``steps`` steps of ``optimizer``, with the
    conditioned hyper-parameters (strict bound) or the course defaults (measured bound)."""
    case = get_case(case)
    steps = case.optimizer_steps if steps is None else steps
    hparams = {} if defaults else CONDITIONED_HPARAMS[optimizer]
    extra = (optimizer, steps, tuple(sorted(hparams.items())))
    extra = (*extra, optimizer_seeds(case, extra))
    ref_history: list[dict[str, np.ndarray]] = _reference(case, dtype, "optimizer", extra)  # type: ignore[assignment]
    history = _run_optimizer(_adapter(framework, case, dtype, "optimizer"), case.config, dtype, extra)
    label = f"{optimizer} (defaults)" if defaults else optimizer
    tol_quantity = "optimizer_defaults" if defaults else "optimizer"
    many = _records(case, framework, dtype)
    records = []
    for step, (params, ref) in enumerate(zip(history, ref_history, strict=True), start=1):
        records += many("optimizer", params, ref, f"{label} step {step}: ", tol_quantity, round_off=True)
    return records


def check_batchnorm(case: Case | str, framework: str, dtype: str) -> list[Record]:
    """Section 5: BatchNorm train and eval mode, gradients and running statistics."""
    case = get_case(case)
    ref: BatchNormResult = _reference(case, dtype, "batchnorm")  # type: ignore[assignment]
    got = _run_batchnorm(_adapter(framework, case, dtype, "batchnorm"), case.config, dtype, None)
    many = _records(case, framework, dtype)
    return [*many("batchnorm", got.train_activations, ref.train_activations, "train forward: "),
            *many("batchnorm", got.state_after_forward, ref.state_after_forward,
                  "running stats after 1 forward: "),
            *_grad_records(case, framework, dtype, "batchnorm", got.grad, ref.grad, "train grad: "),
            *many("batchnorm", got.after_steps, ref.after_steps, "after 3 SGD steps: ", round_off=True),
            *many("batchnorm", got.eval_activations, ref.eval_activations, "eval forward: ")]


def check_dropout(case: Case | str, framework: str, dtype: str) -> list[Record]:
    """Section 6: Dropout with shared keep-masks: train forward, gradients, eval forward (where
    the course's convention scales by 1 - ratio)."""
    case = get_case(case)
    if not case.config.dropout_layers():
        raise ValueError(f"parity case {case.label!r} has no Dropout layer")
    ref: DropoutResult = _reference(case, dtype, "dropout")  # type: ignore[assignment]
    got = _run_dropout(_adapter(framework, case, dtype, "dropout"), case.config, dtype, None)
    many = _records(case, framework, dtype)
    return [*many("dropout", got.train_activations, ref.train_activations, "train forward: "),
            *_grad_records(case, framework, dtype, "dropout", got.grad, ref.grad, "train grad: "),
            *many("dropout", got.eval_activations, ref.eval_activations, "eval forward: ")]


def trajectory_test_images(case: Case, dtype: str) -> int | None:
    """How many test images the trajectory's argmax agreement is measured on (None: all 10k)."""
    if dtype != "float64":
        return case.trajectory_test_images
    return min(case.trajectory_test_images or FLOAT64_TEST_IMAGES, FLOAT64_TEST_IMAGES)


def trajectory_steps(case: Case, dtype: str) -> int:
    """How many steps the trajectory runs (float64: at most FLOAT64_TRAJECTORY_STEPS)."""
    if dtype != "float64":
        return case.trajectory_steps
    return min(case.trajectory_steps, FLOAT64_TRAJECTORY_STEPS)


def check_trajectory(case: Case | str, framework: str, dtype: str, optimizer: str, data_dir: str,
                     ) -> TrajectoryCheck:
    """Section 7: steps on real MNIST batches (100; float64: the first FLOAT64_TRAJECTORY_STEPS);
    all parameters at the end, and the share of identical argmax predictions on the test images
    (float64: the first FLOAT64_TEST_IMAGES)."""
    case = get_case(case)
    steps = trajectory_steps(case, dtype)
    extra = (optimizer, data_dir, steps, trajectory_test_images(case, dtype))
    ref: TrajectoryResult = _reference(case, dtype, "trajectory", extra)  # type: ignore[assignment]
    got = _run_trajectory(_adapter(framework, case, dtype, "trajectory"), case.config, dtype, extra)
    agreement = float(np.mean(got.predictions == ref.predictions))
    records = _records(case, framework, dtype)(
        "trajectory", got.params, ref.params, f"{optimizer} x{steps}: ",
        "trajectory_adam" if optimizer == "adam" else "trajectory")
    records.append(Record(case.label, framework, dtype, "trajectory",
                          f"{optimizer} x{steps}: argmax disagreement on "
                          f"{len(got.predictions)} test images",
                          1.0 - agreement, 1.0 - agreement, 1.0 - MIN_ARGMAX_AGREEMENT,
                          agreement >= MIN_ARGMAX_AGREEMENT))
    return TrajectoryCheck(records, agreement)


def failure_report(records: Iterable[Record], case: Case | str, framework: str, dtype: str,
                   perturb: Perturb | None = None) -> str:
    """The failing records, then where the two implementations first part: the first activation
    (forward order) over tolerance and the loaded parameters that already differ."""
    failed = [r for r in records if not r.passed]
    if not failed:
        return ""
    case = get_case(case)
    port = _adapter(framework, case, dtype, "forward", perturb=perturb)
    ref: ForwardResult = _reference(case, dtype, "forward")  # type: ignore[assignment]
    x, _ = synthetic_batch(case.config, dtype)
    divergence = first_divergence(port.forward(x), ref.activations, dtype)
    changed = diverging_params(port.params(), parity_params(case.config, dtype), dtype)
    lines = [f"{len(failed)} tensor(s) out of tolerance for {framework} {case.label} {dtype}:"]
    lines += ["  " + r.describe() for r in failed[:12]]
    if len(failed) > 12:
        lines.append(f"  ... and {len(failed) - 12} more")
    if divergence is None:
        lines.append("first divergence: none in the eval forward pass (the difference is in backward "
                     "or in the optimizer)")
    else:
        lines.append(f"first divergence: layer {divergence[0]!r} (rel err {divergence[1]:.3g})")
    lines.append("loaded parameters that differ from the canonical weights: "
                 + (", ".join(changed) if changed else "none"))
    return "\n".join(lines)


def check_case(case: Case | str, framework: str, dtype: str, data_dir: str | None = None) -> list[Record]:
    """Every section the case runs (trajectories only with ``data_dir``)."""
    case = get_case(case)
    records: list[Record] = []
    for section in case.sections:
        if section == "forward":
            records += check_forward(case, framework, dtype)
        elif section == "grads":
            records += check_grads(case, framework, dtype)
        elif section == "optimizer":
            for optimizer in case.optimizers:
                records += check_optimizer(case, framework, dtype, optimizer)
                if case.optimizer_defaults:
                    records += check_optimizer(case, framework, dtype, optimizer, defaults=True)
        elif section == "batchnorm":
            records += check_batchnorm(case, framework, dtype)
        elif section == "dropout":
            records += check_dropout(case, framework, dtype)
        elif section == "trajectory" and data_dir is not None:
            for optimizer in case.trajectory_optimizers:
                records += check_trajectory(case, framework, dtype, optimizer, data_dir).records
    return records


def custom_case(config: ModelConfig) -> Case:
    """A case for a config given on the command line: forward and gradients, and the BatchNorm
    and Dropout sections where the model has those layers."""
    names = config.layer_names()
    sections = ("forward", "grads", *(("batchnorm",) if any(n.startswith("bn") for n in names) else ()),
                *(("dropout",) if config.dropout_layers() else ()))
    return Case(config.name, "custom", tuple(non_default_fields(config).items()), sections)


def matrix_units(frameworks: Iterable[str], models: Iterable[str] = MODEL_NAMES,
                 dtypes: Iterable[str] = DTYPES, only: Sequence[Case] | None = None,
                 ) -> list[tuple[Case, tuple[str, ...], str]]:
    """The matrix as units of work, (case, frameworks, dtype) in table order: one unit computes
    its case's reference results once for all the frameworks."""
    frameworks, dtypes = tuple(frameworks), tuple(dtypes)
    return [(case, frameworks, dtype) for case in (cases(models) if only is None else only)
            for dtype in dtypes]


def run_unit(case: Case, frameworks: Sequence[str], dtype: str, data_dir: str | None) -> list[Record]:
    """Every section of ``case`` for each of ``frameworks`` in one dtype."""
    return [r for framework in frameworks for r in check_case(case, framework, dtype, data_dir)]


def _unit_cost(unit: tuple[Case, tuple[str, ...], str], data_dir: str | None) -> float:
    """A rough relative cost, to start the longest units first: the trajectories on MNIST and
    the deep CNN dominate."""
    case, _, dtype = unit
    cost = {"mlp": 1.0, "cnn": 3.0, "deepcnn": 6.0}.get(case.model, 1.0)
    cost *= 2.0 if dtype == "float64" else 1.0
    if data_dir is not None and "trajectory" in case.sections:
        cost *= 10.0 * trajectory_steps(case, dtype) / TRAJECTORY_STEPS
    return cost


# A worker process whose frameworks failed to load: every unit it is given raises this.
_WORKER_START_ERROR: list[BaseException] = []


def _start_worker(frameworks: Sequence[str]) -> None:
    """A matrix process: one compute thread per library, the frameworks loaded quietly, and no
    retracing warnings (one compiled TF step per model is the design, as in rosetta.cli). A
    framework that does not load is kept for :func:`_run_unit_in_worker` to raise (an initializer
    that raises only breaks the pool, and its message is lost)."""
    import logging

    from rosetta.bench import limit_threads

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from rosetta.registry import FrameworkNotInstalled, package, quiet_native_start_up

    try:
        for framework in frameworks:
            package(framework)
    except FrameworkNotInstalled as exc:
        _WORKER_START_ERROR.append(exc)
        return
    with quiet_native_start_up():
        limit_threads(1, frameworks)


def _run_unit_in_worker(case: Case, frameworks: Sequence[str], dtype: str, data_dir: str | None,
                        ) -> list[Record]:
    if _WORKER_START_ERROR:
        raise _WORKER_START_ERROR[0]
    return run_unit(case, frameworks, dtype, data_dir)


def spreads(jobs: int, units: int) -> bool:
    """Whether :func:`run_matrix` hands ``units`` units to worker processes (else runs them here)."""
    return jobs > 1 and units > 1


def run_matrix(frameworks: Iterable[str], models: Iterable[str] = MODEL_NAMES,
               dtypes: Iterable[str] = DTYPES, data_dir: str | None = None,
               progress: Callable[[str], None] | None = None,
               only: Sequence[Case] | None = None, jobs: int = 1) -> list[Record]:
    """The whole matrix (trajectories only with ``data_dir``), as records in table order;
    ``only``: these cases instead of the table's. ``progress`` is called with each unit's name
    when it is done. ``jobs > 1`` spreads the units over that many processes, one compute thread
    each (the records are the same: each unit computes its own reference)."""
    frameworks = tuple(frameworks)
    units = matrix_units(frameworks, models, dtypes, only)
    results: dict[int, list[Record]] = {}
    if not spreads(jobs, len(units)):
        for i, (case, fws, dtype) in enumerate(units):
            results[i] = run_unit(case, fws, dtype, data_dir)
            if progress:
                progress(f"{case.label} {dtype}")
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: TensorFlow and torch are not fork-safe once loaded.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(frameworks,)) as pool:
            order = sorted(range(len(units)), key=lambda i: -_unit_cost(units[i], data_dir))
            futures = {pool.submit(_run_unit_in_worker, *units[i], data_dir): i for i in order}
            try:
                for future in as_completed(futures):
                    i = futures[future]
                    results[i] = future.result()
                    if progress:
                        progress(f"{units[i][0].label} {units[i][2]}")
            except BaseException:  # a failed unit or Ctrl-C: the units not started are dropped
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [r for i in range(len(units)) for r in results[i]]


def summarize(records: Iterable[Record]) -> dict[tuple[str, str, str, str], Record]:
    """The worst record (largest rel err / tol) per (model, framework, dtype, quantity)."""
    worst: dict[tuple[str, str, str, str], Record] = {}
    for r in records:
        key = (r.model, r.framework, r.dtype, r.quantity)
        if key not in worst or r.max_rel_err / r.tol > worst[key].max_rel_err / worst[key].tol:
            worst[key] = r
    return worst
