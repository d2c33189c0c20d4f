"""The parity matrix: every port against the NumPy reference, llm.c style.

Same canonical weights in both, then logits and loss, every activation by layer name, every
gradient by name and the input gradient, 1-10 steps of each optimizer, BatchNorm and Dropout, and
100-step trajectories on real MNIST. Each comparison is a :class:`Record`; a failing one is
reported with framework, model, dtype, tensor, error and tolerance, and with the first layer (in
forward order) whose activations part.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np

from rosetta.adapters import Adapter, make_adapter
from rosetta.adapters.base import OPTIMIZERS
from rosetta.data import batch_order, load_mnist
from rosetta.tolerances import MIN_ARGMAX_AGREEMENT, errors, tolerance
from rosetta.weights import CNNConfig, MLPConfig, ModelConfig, init_params, is_state

DTYPES = ("float64", "float32")
SECTIONS = ("forward", "grads", "optimizer", "batchnorm", "dropout", "trajectory")
QUANTITIES = ("logits", "loss", "activation", "grad", "grad_input", "optimizer", "batchnorm",
              "dropout", "trajectory")
TRAJECTORY_OPTIMIZERS = ("sgd", "adam")
TRAJECTORY_STEPS = 100
TRAJECTORY_BATCH = 100
OPTIMIZER_STEPS = 10
# NOTE(framework): eps-amplification: AdaGrad, RMSProp and Adam divide by sqrt(h) + eps.
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


def base_config(model: str) -> ModelConfig:
    """The default model of the parity suite."""
    return MLPConfig() if model == "mlp" else CNNConfig()


def synthetic_batch(config: ModelConfig, dtype: str, n: int = 8, seed: int = 0,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random-normal inputs (no MNIST zeros: no pooling ties, no ReLU kinks) and labels."""
    rng = np.random.default_rng([seed, 12345])
    shape = (n, config.input_size) if isinstance(config, MLPConfig) else (n, *config.input_dim)
    x = rng.standard_normal(shape).astype(dtype)
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
    """Tensors whose gradient is mathematically zero: a bias feeding a train-mode BatchNorm."""
    if not config.use_batchnorm:
        return frozenset()
    if isinstance(config, CNNConfig):
        return frozenset({"conv1.b"})
    return frozenset(f"fc{i}.b" for i in range(1, len(config.hidden_sizes) + 1))


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
# The reference side, computed once per configuration and cached.


@functools.lru_cache(maxsize=64)
def _reference(config: ModelConfig, dtype: str, section: str, extra: object = None) -> object:
    ref = make_adapter("numpy", config, init_params(config, seed=0, dtype=dtype), dtype)
    return SECTION_RUNNERS[section](ref, config, dtype, extra)


def _run_forward(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> object:
    x, t = synthetic_batch(config, dtype)
    acts = adapter.forward(x, train=False)
    loss, _, _ = adapter.loss_and_grads(x, t, train=False)
    return acts, loss


def _run_grads(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> object:
    x, t = synthetic_batch(config, dtype)
    loss, grads, dx = adapter.loss_and_grads(x, t, train=True, input_grad=True)
    return loss, grads, dx


def _run_optimizer(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> object:
    name, steps, hparams = extra  # type: ignore[misc]
    adapter.set_optimizer(name, **dict(hparams))
    history = []
    for step in range(steps):
        x, t = synthetic_batch(config, dtype, seed=100 + step)
        adapter.train_step(x, t)
        history.append({n: v.copy() for n, v in adapter.params().items() if not is_state(n)})
    return history


def _run_batchnorm(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> object:
    x, t = synthetic_batch(config, dtype)
    train_acts = adapter.forward(x, train=True)
    state_after_forward = {n: v.copy() for n, v in adapter.params().items() if is_state(n)}
    loss, grads, dx = adapter.loss_and_grads(x, t, train=True, input_grad=True)
    adapter.set_optimizer("sgd")
    for step in range(3):
        xs, ts = synthetic_batch(config, dtype, seed=200 + step)
        adapter.train_step(xs, ts)
    state_after_steps = {n: v.copy() for n, v in adapter.params().items()}
    eval_acts = adapter.forward(x, train=False)
    return train_acts, state_after_forward, loss, grads, dx, state_after_steps, eval_acts


def dropout_masks(config: MLPConfig, n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Seeded keep-masks for every Dropout layer of ``config``."""
    rng = np.random.default_rng(seed)
    return {f"drop{i}": rng.random((n, h)) >= config.dropout_ratio
            for i, h in enumerate(config.hidden_sizes, start=1)}


def _run_dropout(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> object:
    x, t = synthetic_batch(config, dtype)
    adapter.set_dropout_masks(dropout_masks(config, len(x)))  # type: ignore[arg-type]
    acts = adapter.forward(x, train=True)
    loss, grads, dx = adapter.loss_and_grads(x, t, train=True, input_grad=True)
    eval_acts = adapter.forward(x, train=False)
    return acts, loss, grads, dx, eval_acts


@functools.lru_cache(maxsize=4)
def _mnist(data_dir: str, layout: str, dtype: str) -> tuple[np.ndarray, ...]:
    x_train, t_train = load_mnist("train", data_dir, layout=layout, dtype=dtype,
                                  limit=TRAJECTORY_STEPS * TRAJECTORY_BATCH)
    x_test, t_test = load_mnist("test", data_dir, layout=layout, dtype=dtype)
    return x_train, t_train, x_test, t_test


def _run_trajectory(adapter: Adapter, config: ModelConfig, dtype: str, extra: object) -> object:
    optimizer, data_dir = extra  # type: ignore[misc]
    layout = "flat" if isinstance(config, MLPConfig) else "NCHW"
    x_train, t_train, x_test, _ = _mnist(data_dir, layout, dtype)
    adapter.set_optimizer(optimizer)
    batches = batch_order(len(x_train), TRAJECTORY_BATCH, seed=0, epoch=0)
    for idx in batches:
        adapter.train_step(x_train[idx], t_train[idx])
    return adapter.params(), adapter.predict(x_test)


SECTION_RUNNERS: dict[str, Callable[[Adapter, ModelConfig, str, object], object]] = {
    "forward": _run_forward, "grads": _run_grads, "optimizer": _run_optimizer,
    "batchnorm": _run_batchnorm, "dropout": _run_dropout, "trajectory": _run_trajectory,
}


# --------------------------------------------------------------------------------------------
# The sections, one port at a time.


def _port(framework: str, config: ModelConfig, dtype: str,
          perturb: Callable[[dict[str, np.ndarray]], None] | None = None) -> Adapter:
    params = init_params(config, seed=0, dtype=dtype)
    if perturb is not None:
        perturb(params)
    return make_adapter(framework, config, params, dtype)


def check_forward(model: str, framework: str, dtype: str,
                  perturb: Callable[[dict[str, np.ndarray]], None] | None = None) -> list[Record]:
    """Section 1 and 2: logits, loss and every intermediate activation (eval mode)."""
    config = base_config(model)
    ref_acts, ref_loss = _reference(config, dtype, "forward")  # type: ignore[misc]
    acts, loss = _run_forward(_port(framework, config, dtype, perturb), config, dtype, None)
    logits_name = list(ref_acts)[-1]
    records = [compare(model, framework, dtype, "logits", logits_name, acts[logits_name],
                       ref_acts[logits_name]),
               compare(model, framework, dtype, "loss", "loss", loss, ref_loss)]
    inner = {n: v for n, v in ref_acts.items() if n != logits_name}
    return records + compare_dicts(model, framework, dtype, "activation", acts, inner)


def check_grads(model: str, framework: str, dtype: str) -> list[Record]:
    """Section 3: the gradient of every parameter by name, and of the input."""
    config = base_config(model)
    ref_loss, ref_grads, ref_dx = _reference(config, dtype, "grads")  # type: ignore[misc]
    loss, grads, dx = _run_grads(_port(framework, config, dtype), config, dtype, None)
    return [compare(model, framework, dtype, "loss", "loss (train)", loss, ref_loss),
            *compare_dicts(model, framework, dtype, "grad", grads, ref_grads),
            compare(model, framework, dtype, "grad_input", "x", dx, ref_dx)]


def check_optimizer(model: str, framework: str, dtype: str, optimizer: str,
                    steps: int = OPTIMIZER_STEPS, defaults: bool = False) -> list[Record]:
    """Section 4: parameters after every one of ``steps`` steps of ``optimizer``, with the
    conditioned hyper-parameters (strict bound) or the course defaults (measured bound)."""
    config = base_config(model)
    hparams = {} if defaults else CONDITIONED_HPARAMS[optimizer]
    extra = (optimizer, steps, tuple(sorted(hparams.items())))
    ref_history = _reference(config, dtype, "optimizer", extra)
    history = _run_optimizer(_port(framework, config, dtype), config, dtype, extra)
    label = f"{optimizer} (defaults)" if defaults else optimizer
    tol_quantity = "optimizer_defaults" if defaults else "optimizer"
    records = []
    for step, (params, ref) in enumerate(zip(history, ref_history, strict=True), start=1):  # type: ignore[call-overload]
        records += compare_dicts(model, framework, dtype, "optimizer", params, ref,
                                 prefix=f"{label} step {step}: ", tol_quantity=tol_quantity)
    return records


def check_batchnorm(model: str, framework: str, dtype: str) -> list[Record]:
    """Section 5: BatchNorm train and eval mode, gradients and running statistics."""
    config = replace(base_config(model), use_batchnorm=True)
    ref = _reference(config, dtype, "batchnorm")
    out = _run_batchnorm(_port(framework, config, dtype), config, dtype, None)
    labels = ("train forward: ", "running stats after 1 forward: ", None, "train grad: ",
              None, "after 3 SGD steps: ", "eval forward: ")
    records = []
    for label, got, want in zip(labels, out, ref, strict=True):  # type: ignore[call-overload]
        if label is not None:
            records += compare_dicts(model, framework, dtype, "batchnorm", got, want, prefix=label,
                                     round_off=round_off_only(config))
    records.append(compare(model, framework, dtype, "batchnorm", "train loss", out[2], ref[2]))  # type: ignore[index]
    records.append(compare(model, framework, dtype, "batchnorm", "train grad: x", out[4], ref[4]))  # type: ignore[index]
    return records


def check_dropout(model: str, framework: str, dtype: str) -> list[Record]:
    """Section 6: Dropout with shared keep-masks (MLP), train forward, gradients, eval forward."""
    config = replace(MLPConfig(), dropout_ratio=0.5) if model == "mlp" else None
    if config is None:
        raise ValueError("the CNN has no Dropout layer; the dropout section runs on the MLP")
    ref = _reference(config, dtype, "dropout")
    acts, loss, grads, dx, eval_acts = _run_dropout(_port(framework, config, dtype), config, dtype, None)
    ref_acts, ref_loss, ref_grads, ref_dx, ref_eval = ref  # type: ignore[misc]
    return [*compare_dicts(model, framework, dtype, "dropout", acts, ref_acts, prefix="train forward: "),
            compare(model, framework, dtype, "dropout", "train loss", loss, ref_loss),
            *compare_dicts(model, framework, dtype, "dropout", grads, ref_grads, prefix="train grad: "),
            compare(model, framework, dtype, "dropout", "train grad: x", dx, ref_dx),
            *compare_dicts(model, framework, dtype, "dropout", eval_acts, ref_eval, prefix="eval forward: ")]


def check_trajectory(model: str, framework: str, dtype: str, optimizer: str, data_dir: str,
                     ) -> tuple[list[Record], float]:
    """Section 7: 100 steps on real MNIST batches; all parameters at the end, and the share of
    identical argmax predictions on the 10k test images."""
    config = base_config(model)
    ref_params, ref_pred = _reference(config, dtype, "trajectory", (optimizer, data_dir))  # type: ignore[misc]
    params, pred = _run_trajectory(_port(framework, config, dtype), config, dtype, (optimizer, data_dir))
    agreement = float(np.mean(pred == ref_pred))
    records = compare_dicts(model, framework, dtype, "trajectory", params, ref_params,
                            prefix=f"{optimizer} x{TRAJECTORY_STEPS}: ",
                            tol_quantity="trajectory_adam" if optimizer == "adam" else "trajectory")
    records.append(Record(model, framework, dtype, "trajectory",
                          f"{optimizer} x{TRAJECTORY_STEPS}: argmax disagreement on 10k test",
                          1.0 - agreement, 1.0 - agreement, 1.0 - MIN_ARGMAX_AGREEMENT,
                          agreement >= MIN_ARGMAX_AGREEMENT))
    return records, agreement


def failure_report(records: Iterable[Record], model: str, framework: str, dtype: str,
                   perturb: Callable[[dict[str, np.ndarray]], None] | None = None) -> str:
    """The failing records, then where the two implementations first part: the first activation
    (forward order) over tolerance and the loaded parameters that already differ."""
    failed = [r for r in records if not r.passed]
    if not failed:
        return ""
    config = base_config(model)
    port = _port(framework, config, dtype, perturb)
    ref_acts, _ = _reference(config, dtype, "forward")  # type: ignore[misc]
    x, _ = synthetic_batch(config, dtype)
    divergence = first_divergence(port.forward(x), ref_acts, dtype)
    ref_params = init_params(config, seed=0, dtype=dtype)
    changed = diverging_params(port.params(), ref_params, dtype)
    lines = [f"{len(failed)} tensor(s) out of tolerance for {framework} {model} {dtype}:"]
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


def run_matrix(frameworks: Iterable[str], models: Iterable[str] = ("mlp", "cnn"),
               dtypes: Iterable[str] = DTYPES, data_dir: str | None = None,
               progress: Callable[[str], None] | None = None) -> list[Record]:
    """The whole matrix (trajectories only with ``data_dir``), as records."""
    records: list[Record] = []
    for model in models:
        for framework in frameworks:
            for dtype in dtypes:
                if progress:
                    progress(f"{framework} {model} {dtype}")
                records += check_forward(model, framework, dtype)
                records += check_grads(model, framework, dtype)
                for optimizer in OPTIMIZERS:
                    records += check_optimizer(model, framework, dtype, optimizer)
                    records += check_optimizer(model, framework, dtype, optimizer, defaults=True)
                records += check_batchnorm(model, framework, dtype)
                if model == "mlp":
                    records += check_dropout(model, framework, dtype)
                if data_dir is not None:
                    for optimizer in TRAJECTORY_OPTIMIZERS:
                        records += check_trajectory(model, framework, dtype, optimizer, data_dir)[0]
    return records


def summarize(records: Iterable[Record]) -> dict[tuple[str, str, str, str], Record]:
    """The worst record (largest rel err / tol) per (model, framework, dtype, quantity)."""
    worst: dict[tuple[str, str, str, str], Record] = {}
    for r in records:
        key = (r.model, r.framework, r.dtype, r.quantity)
        if key not in worst or r.max_rel_err / r.tol > worst[key].max_rel_err / worst[key].tol:
            worst[key] = r
    return worst
