"""The one interface through which tests, the CLI and the benchmarks drive every implementation.

All arrays that cross this interface are NumPy arrays in the canonical layout of
:mod:`rosetta.weights`: MLP input ``(N, 784)``, CNN input ``(N, C, H, W)``, conv activations
``(N, C, H, W)``, labels ``int64 (N,)``. Each framework's adapter converts at this boundary and
nowhere else, so a parity failure is never a conversion artefact of the test.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rosetta.weights import ModelConfig, param_spec, trainable_names, validate_params

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
# Images per eval-mode batch. The CNNs' inference is memory-bound here: a batch of 1000 holds
# 138 MB per float64 conv activation, 100 holds 14 MB, which stays in cache. Measured over the
# 10k test images (CNN, float64, one thread): NumPy 4.6 s with 1000, 3.1 s with 100; torch 7.3 s
# against 3.6 s.
EVAL_BATCH = 100

# The reference hyper-parameters (the course's defaults). Every port is configured so one step
# with these values computes the reference update equation (see reference_numpy/optimizers.py).
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "adagrad": {"lr": 0.01, "eps": 1e-7},
    "rmsprop": {"lr": 0.01, "rho": 0.99, "eps": 1e-7},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7},
}


def optimizer_hparams(name: str, **overrides: float) -> dict[str, float]:
    """Defaults of optimizer ``name`` updated with ``overrides``; unknown names raise ValueError."""
    if name not in OPTIMIZER_DEFAULTS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    unknown = set(overrides) - set(OPTIMIZER_DEFAULTS[name])
    if unknown:
        raise ValueError(f"optimizer {name!r} takes {sorted(OPTIMIZER_DEFAULTS[name])}, "
                         f"not {sorted(unknown)}")
    return {**OPTIMIZER_DEFAULTS[name], **overrides}


class Adapter:
    """A model of one framework behind the canonical interface, driven through the package surface.

    Construct with a config, canonical params (names and shapes of ``param_spec(config)``) and a
    dtype ("float32" or "float64"). The model starts in eval mode with no optimizer. A subclass per
    framework converts arrays at the boundary (:meth:`_input`, :meth:`_labels`, :meth:`_output`)
    and nothing else: the computation is the package's (``loss_and_grads``, ``train_step``, ...).
    """

    framework: str = ""

    def __init__(self, config: ModelConfig, params: Mapping[str, np.ndarray], dtype: str = "float32"):
        from rosetta.registry import package

        self.config = config
        self.dtype = np.dtype(dtype)
        self.optimizer_name: str | None = None
        self.optimizer: object | None = None
        self.package = package(self.framework)
        model_class = getattr(self.package, config.class_name)
        self.model = model_class(config, params=self._canonical(params), dtype=self.dtype.name)

    # --- conversions at the boundary (per framework) ------------------------------------------
    def _input(self, x: np.ndarray) -> object:
        """Canonical input (MLP (N, 784), CNNs NCHW) -> the framework's input."""
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _labels(self, t: np.ndarray) -> object:
        return np.ascontiguousarray(t, dtype=np.int64)

    def _output(self, a: object) -> np.ndarray:
        """A framework activation -> a canonical NumPy array (a copy: later calls must not alias it)."""
        return np.array(a)

    def _activations(self, x: object, train: bool) -> dict[str, object]:
        return self.model.forward(x, train=train, return_activations=True)[1]

    def _logits(self, x: object) -> object:
        """Eval-mode logits alone: no activation is kept or copied out (inference, trajectories)."""
        return self.model.forward(x, train=False)

    # --- parameters ---------------------------------------------------------------------------
    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Set every parameter and BatchNorm running statistic from canonical arrays."""
        self.package.load_canonical(self.model, self._canonical(params))

    def params(self) -> dict[str, np.ndarray]:
        """All canonical tensors (parameters and BatchNorm state), in ``param_spec`` order."""
        return self.package.dump_canonical(self.model)

    # --- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> dict[str, np.ndarray]:
        """Every intermediate activation by layer name, in forward order; the last is the logits.

        ``train=True`` uses batch statistics in BatchNorm (and updates the running ones) and
        applies dropout (with the injected masks, if any).
        """
        return {name: self._output(a) for name, a in self._activations(self._input(x), train).items()}

    def loss_and_grads(
        self, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray | None]:
        """Mean cross-entropy (+ L2 and L1 penalties), the gradient of every trainable tensor by
        name, and the gradient with respect to ``x`` when ``input_grad`` (else None). No update."""
        labels = self._labels(self._check(t))
        loss, grads, dx = self.package.loss_and_grads(self.model, self._input(x), labels,
                                                      train=train, input_grad=input_grad)
        return float(loss), grads, (None if dx is None else self._output(dx))

    def set_optimizer(self, name: str, **hparams: float) -> None:
        """Create a fresh optimizer (state zeroed) with the reference hyper-parameter names."""
        self.optimizer = self.package.make_optimizer(name, self.model, **optimizer_hparams(name, **hparams))
        self.optimizer_name = name

    def _require_optimizer(self) -> object:
        if self.optimizer is None:
            raise RuntimeError("call set_optimizer(name, **hparams) first")
        return self.optimizer

    def set_lr(self, lr: float) -> None:
        """Change the learning rate of the current optimizer, keeping its state (for lr schedules)."""
        self.package.set_lr(self._require_optimizer(), lr)

    def train_step(self, x: np.ndarray, t: np.ndarray) -> float:
        """One step in train mode: forward, backward, optimizer update. Returns the loss."""
        optimizer = self._require_optimizer()
        labels = self._labels(self._check(t))
        return float(self.package.train_step(self.model, optimizer, self._input(x), labels))

    def set_dropout_masks(self, masks: Mapping[str, np.ndarray] | None) -> None:
        """Fix the keep-masks of the Dropout layers (by layer name, activation-shaped, bool);
        None returns to random masks."""
        self.package.set_dropout_masks(self.model, masks)

    # --- shared helpers -----------------------------------------------------------------------
    def _check(self, t: np.ndarray) -> np.ndarray:
        """Labels are integer class indices in [0, output_size), the same rule in every framework
        (Chainer alone would ignore -1, its ignore_label, and NumPy would index from the end)."""
        t = np.asarray(t)
        if t.dtype.kind not in "iu":
            raise ValueError(f"labels must be integer class indices, got dtype {t.dtype}")
        classes = self.config.output_size
        bad = np.flatnonzero((t < 0) | (t >= classes))
        if bad.size:
            raise ValueError(f"label {int(t.flat[bad[0]])} at index {int(bad[0])} is not a class index "
                             f"in [0, {classes})")
        return t

    def _canonical(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``params`` against the contract (WeightFileError names the tensor), then cast
        them to the adapter's dtype: the one deliberate dtype conversion of the weights."""
        validate_params(params, self.config)
        return {n: np.asarray(params[n], dtype=self.dtype) for n in param_spec(self.config)}

    def logits(self, x: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
        """Eval-mode logits, computed in batches (the same values as ``forward``'s last entry)."""
        out = [self._output(self._logits(self._input(x[i:i + batch_size])))
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out, axis=0)

    def predict(self, x: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
        """Eval-mode class predictions."""
        return np.argmax(self.logits(x, batch_size), axis=1)

    def loss(self, x: np.ndarray, t: np.ndarray, batch_size: int = EVAL_BATCH) -> float:
        """The framework's eval-mode loss (``loss_fn``: mean cross-entropy plus the penalties) over
        all of ``x``, from batches weighted by their size."""
        labels = self._check(t)
        total = 0.0
        for i in range(0, len(x), batch_size):
            batch_labels = labels[i:i + batch_size]
            logits = self._logits(self._input(x[i:i + batch_size]))
            value = self.package.loss_fn(self.model, logits, self._labels(batch_labels))
            # squeeze: a 0-d loss may come back as shape (1,) (np.ascontiguousarray is >= 1-d).
            total += float(np.squeeze(self._output(value))) * len(batch_labels)
        return total / len(labels)

    def accuracy(self, x: np.ndarray, t: np.ndarray, batch_size: int = EVAL_BATCH) -> float:
        """Share of correct eval-mode predictions."""
        return float(np.mean(self.predict(x, batch_size) == t))

    def param_names(self) -> list[str]:
        return list(param_spec(self.config))

    def trainable_names(self) -> list[str]:
        return trainable_names(self.config)
