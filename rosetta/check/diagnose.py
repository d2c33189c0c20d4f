"""At the first tensor that parts, re-run the reference's computation under each known porting
difference and name the one that reproduces the port. Each cause carries its porting-guide slug
(a ``## slug: title`` section of docs/porting.md)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

import rosetta.check.ops as ops
from rosetta.check.model import Event
from rosetta.tolerances import errors

Hypothesis = tuple[str, str, Callable[[], np.ndarray]]  # (cause, slug, compute)

BN_EPS = (1e-3, 1e-5, 2e-5, 1e-6, 1e-7, 1e-8, 1e-4, 1e-2, 1e-1, 0.0)
BN_MOMENTA = (0.1, 0.9, 0.99, 0.01, 0.997, 0.999, 0.0)
KIND_WORDS = {
    "relu": "ReLU",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "identity": "no activation (identity)",
    "softmax": "softmax",
    "leaky_relu": "leaky ReLU",
    "log_softmax": "log-softmax",
}


@dataclass
class Diagnosis:
    where: str
    cause: str
    slug: str | None
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"where": self.where, "cause": self.cause, "slug": self.slug, "detail": self.detail}


def matches(candidate: np.ndarray, port: np.ndarray, tol: float) -> bool:
    if candidate.shape != port.shape or not np.all(np.isfinite(candidate)):
        return False
    return errors(port, candidate)[1] <= tol


def first(hypotheses: Iterator[Hypothesis], port: np.ndarray, tol: float) -> tuple[str, str] | None:
    for cause, slug, compute in hypotheses:
        try:
            candidate = np.asarray(compute(), dtype=np.float64)
        except (ValueError, IndexError, KeyError, FloatingPointError):
            continue
        if matches(candidate, port, tol):
            return cause, slug
    return None


def _f64(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float64)


def layer_hypotheses(
    ev: Event,
    params: dict[str, np.ndarray],
    framework: str,
    train: bool,
    mask: np.ndarray | None,
    x4d: np.ndarray | None,
    port_kind: str | None,
) -> Iterator[Hypothesis]:
    """Candidate port outputs for the reference event ``ev`` (its input ``ev.inp``)."""
    x = _f64(ev.inp)
    kind = ev.kind
    W, b = _f64(params.get("W")), _f64(params.get("b"))  # noqa: N806
    a = ev.attrs
    if kind == "affine":
        if W is not None and W.shape[0] == W.shape[1]:
            yield (
                "weight not transposed: the port computes x @ W.T where the reference computes "
                "x @ W (a square weight loads without a shape error)",
                "dense-layout",
                lambda: ops.affine(x, W.T, b),
            )
        src = x if x.ndim == 4 else x4d
        if src is not None and src.ndim == 4:
            for perm in itertools.permutations((1, 2, 3)):
                if perm == (1, 2, 3):
                    continue
                order = ", ".join("CHW"[p - 1] for p in perm)
                yield (
                    f"flatten order: the port flattens the features in ({order}) order, the "
                    "reference in (C, H, W)",
                    "flatten-order",
                    lambda perm=perm: ops.affine(src.transpose(0, *perm).reshape(len(src), -1), W, b),
                )
        yield ("bias missing: the port adds no bias", "dense-layout", lambda: ops.affine(x, W, None))
    if kind == "conv":
        stride, pad = int(a.get("stride", 1)), int(a.get("pad", 0))
        # NOTE(framework:padding-stride): torch/Chainer take a pad per side, Keras only "valid" or
        # "same" (pad 2 for a 5x5 kernel): a port that copies the wrong one changes the output size.
        for s, p in itertools.product((1, 2, 3), (0, 1, 2, 3)):
            if (s, p) != (stride, pad):
                yield (
                    f"padding or stride: the port's convolution uses stride {s}, padding {p}; the "
                    f"reference stride {stride}, padding {pad}",
                    "padding-stride",
                    lambda s=s, p=p: ops.conv(x, W, b, s, p),
                )
        yield (
            "kernel flipped: the port computes a true convolution, the reference a cross-correlation",
            "conv-layout",
            lambda: ops.conv(x, W[:, :, ::-1, ::-1], b, stride, pad),
        )
    if kind in ("pool", "avgpool"):
        size, stride, pad = int(a.get("size", 2)), int(a.get("stride", 2)), int(a.get("pad", 0))
        mode = "max" if kind == "pool" else "avg"
        # NOTE(framework:pool-ceil): the course floors odd sizes; torch ceil_mode=True, Chainer's
        # default cover_all=True and Keras padding="same" keep a last partial window.
        yield (
            "pooling rounds up: the port keeps the last partial window (torch ceil_mode=True, "
            "Chainer cover_all=True, Keras padding='same'); the reference floors",
            "pool-ceil",
            lambda: ops.pool(x, size, stride, pad, ceil=True, mode=mode),
        )
        other = "avg" if mode == "max" else "max"
        yield (
            f"pooling kind: the port takes the {other} of each window, the reference the {mode}",
            "padding-stride",
            lambda: ops.pool(x, size, stride, pad, mode=other),
        )
        for k, s, p in itertools.product((2, 3), (1, 2, 3), (0, 1)):
            if (k, s, p) != (size, stride, pad):
                yield (
                    f"padding or stride: the port pools {k}x{k}, stride {s}, padding {p}; the "
                    f"reference {size}x{size}, stride {stride}, padding {pad}",
                    "padding-stride",
                    lambda k=k, s=s, p=p: ops.pool(x, k, s, p, mode=mode),
                )
    # NOTE(framework:activation-differs): the course's activation layers are explicit; a port that
    # fuses them (Dense(activation=...)) or calls them functionally can swap or drop one unseen.
    if kind in KIND_WORDS:
        ref_word = KIND_WORDS[kind]
        for name in ops.ACTIVATIONS:
            if name != kind:
                yield (
                    f"activation differs: the port applies {KIND_WORDS[name]} where the reference "
                    f"applies {ref_word}",
                    "activation-differs",
                    lambda name=name: ops.activation(name, x),
                )
    if kind == "batchnorm":
        gamma, beta = _f64(params["gamma"]), _f64(params["beta"])
        eps = float(a.get("eps", 1e-5))
        rm, rv = _f64(params.get("running_mean")), _f64(params.get("running_var"))
        for e in BN_EPS:
            if not np.isclose(e, eps, rtol=1e-3, atol=0):
                if train:
                    yield (
                        f"BatchNorm eps: the port adds eps = {e:g}, the reference {eps:g}",
                        "bn-eps",
                        lambda e=e: ops.batchnorm(x, gamma, beta, e),
                    )
                else:
                    yield (
                        f"BatchNorm eps: the port adds eps = {e:g}, the reference {eps:g}",
                        "bn-eps",
                        lambda e=e: ops.batchnorm(x, gamma, beta, e, mean=rm, var=rv),
                    )
        slug = "keras-training-flag" if framework == "keras" else "train-flag"
        if train:
            yield (
                "train/eval mode: the port's BatchNorm normalises with its running statistics in "
                "train mode (it runs in inference mode)",
                slug,
                lambda: ops.batchnorm(x, gamma, beta, eps, mean=rm, var=rv),
            )
        else:
            yield (
                "train/eval mode: the port's BatchNorm normalises with the batch statistics in eval "
                "mode (it runs in training mode)",
                slug,
                lambda: ops.batchnorm(x, gamma, beta, eps),
            )
        if x.ndim == 4 and train:
            yield (
                "BatchNorm axes: the port normalises every activation separately (the course's "
                "flattened form), the reference per channel over (N, H, W)",
                "bn-4d-axes",
                lambda: ops.batchnorm(x, gamma, beta, eps, per_activation=True),
            )
    if kind == "dropout":
        p = float(a.get("ratio", 0.5))
        ref_scaled = _ref_scaled(ev, x, mask, p, train)
        if train and mask is not None:
            yield ("train/eval mode: the port's Dropout is inactive in train mode", "train-flag", lambda: x)
            if ref_scaled:
                yield (
                    f"dropout scaling: the port keeps x * mask (the course's convention); the "
                    f"reference scales kept units by 1 / (1 - {p:g})",
                    "dropout-scaling",
                    lambda: x * mask,
                )
            else:
                yield (
                    f"dropout scaling: the port scales kept units by 1 / (1 - {p:g}) (inverted "
                    "dropout, as the frameworks do); the reference keeps x * mask (the course's "
                    "convention)",
                    "dropout-scaling",
                    lambda: x * mask / (1 - p),
                )
            for q in (0.1, 0.2, 0.25, 0.3, 0.5, 0.75, 0.8, 0.9):
                if abs(q - p) > 1e-9:
                    yield (
                        f"dropout ratio: the port scales by 1 / (1 - {q:g}), the reference by "
                        f"1 / (1 - {p:g})",
                        "dropout-scaling",
                        lambda q=q: x * mask / (1 - q),
                    )
        if not train:
            yield (
                f"dropout scaling: the port passes x through in eval mode (inverted dropout); the "
                f"reference multiplies by 1 - {p:g} (the course's convention)",
                "dropout-scaling",
                lambda: x,
            )
            yield (
                f"dropout scaling: the port multiplies by 1 - {p:g} in eval mode (the course's "
                "convention); the reference passes x through (inverted dropout)",
                "dropout-scaling",
                lambda: x * (1 - p),
            )
    del port_kind


def _ref_scaled(ev: Event, x: np.ndarray, mask: np.ndarray | None, p: float, train: bool) -> bool:
    """Whether the reference's dropout scales kept units (inverted) in this pass."""
    if not train or mask is None:
        return True
    out = np.asarray(ev.out, dtype=np.float64)
    return bool(np.allclose(out, x * mask / (1 - p), rtol=1e-6, atol=0))


def eval_dropout_active(ev: Event, port: np.ndarray, p: float, tol: float) -> str | None:
    """The port's Dropout drops units in eval mode (torch F.dropout without training=...)."""
    x = np.asarray(ev.inp, dtype=np.float64)
    keep = port != 0
    if not np.any((x != 0) & ~keep):
        return None
    for scale in (1 / (1 - p), 1.0):
        if matches(x * keep * scale, port, tol):
            return (
                "train/eval mode: the port's Dropout drops units in eval mode (torch: "
                "F.dropout(x, p) without training=self.training)"
            )
    return None


def loss_hypotheses(z: np.ndarray, t: np.ndarray) -> Iterator[Hypothesis]:
    z = np.asarray(z, dtype=np.float64)
    n = len(t)
    ce = ops.cross_entropy(z, t)
    # NOTE(framework:loss-reduction): nn.CrossEntropyLoss(reduction="sum"), Keras reduction="sum"
    # and Chainer reduce="no" + F.sum scale the loss and every gradient by N.
    yield (
        "loss reduction: the port sums the per-example losses, the reference takes the mean",
        "loss-reduction",
        lambda: np.asarray(np.sum(ce)),
    )
    yield (
        "the course's log(y + 1e-7): the port's loss takes log(softmax + 1e-7), the reference "
        "the exact log-softmax",
        "softmax-ce",
        lambda: np.asarray(np.mean(-np.log(ops.softmax(z)[np.arange(n), t] + 1e-7))),
    )
    # NOTE(framework:softmax-twice): the frameworks' cross-entropies take logits; a softmax output
    # layer in front of them (the course's SoftmaxWithLoss has none) applies softmax twice.
    yield (
        "softmax applied twice: the port's loss applies softmax to values that are already probabilities",
        "softmax-twice",
        lambda: np.asarray(np.mean(ops.cross_entropy(ops.softmax(z), t))),
    )
    yield (
        "the port's loss takes the logits as log-probabilities (NLL without log-softmax)",
        "softmax-ce",
        lambda: np.asarray(-np.mean(z[np.arange(n), t])),
    )
    # NOTE(framework:label-smoothing): torch's label_smoothing and Keras's CategoricalCrossentropy
    # label_smoothing mix the one-hot target with the uniform one; the course has none.
    uniform = np.mean(-ops.log_softmax(z), axis=1)
    for eps in (0.1, 0.05, 0.2, 0.01, 0.3):
        yield (
            f"label smoothing: the port's loss smooths the labels by {eps:g}",
            "label-smoothing",
            lambda eps=eps: np.asarray(np.mean((1 - eps) * ce + eps * uniform)),
        )
    yield (
        "loss reduction: the port's loss is the mean over the batch divided by N again",
        "loss-reduction",
        lambda: np.asarray(np.mean(ce) / n),
    )


def course_guard_loss(z: np.ndarray, t: np.ndarray) -> float:
    """The course's cross_entropy_error: -mean(log(softmax(z)[t] + 1e-7))."""
    z = np.asarray(z, dtype=np.float64)
    return float(np.mean(-np.log(ops.softmax(z)[np.arange(len(t)), t] + 1e-7)))


def running_stat_hypotheses(
    x: np.ndarray, momentum: float, rm0: np.ndarray, rv0: np.ndarray, unbiased_ref: bool
) -> Iterator[tuple[str, str, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    mu, var_b, var_u, _ = ops.batch_stats(np.asarray(x, dtype=np.float64))
    ref_var = var_u if unbiased_ref else var_b
    other_var = var_b if unbiased_ref else var_u
    m = momentum

    def run(mm: float, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return mm * rm0 + (1 - mm) * mu, mm * rv0 + (1 - mm) * v

    for mm in BN_MOMENTA:
        if abs(mm - m) > 1e-9:
            extra = (
                " (torch's momentum weights the batch statistic: momentum=0.1 is 1 - 0.9)"
                if abs(mm - (1 - m)) < 1e-9
                else ""
            )
            yield (
                f"BatchNorm momentum convention: the port keeps {mm:g} of the running statistics "
                f"per step, the reference {m:g}{extra}",
                "bn-momentum",
                lambda mm=mm: run(mm, ref_var),
            )
    kinds = ("biased", "unbiased") if unbiased_ref else ("unbiased", "biased")
    yield (
        f"running variance: the port stores the {kinds[0]} batch variance, the reference the {kinds[1]} one",
        "bn-running-var",
        lambda: run(m, other_var),
    )
    for mm in BN_MOMENTA:
        if abs(mm - m) > 1e-9:
            yield (
                f"BatchNorm momentum convention and running variance: the port keeps {mm:g} "
                f"(reference {m:g}) and stores the {kinds[0]} variance",
                "bn-momentum",
                lambda mm=mm: run(mm, other_var),
            )
    yield (
        "train/eval mode: the port's BatchNorm did not update its running statistics in train mode",
        "train-flag",
        lambda: (rm0, rv0),
    )
