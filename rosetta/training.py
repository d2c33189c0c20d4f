"""The training loop every framework shares through its adapter (``rosetta train`` / ``compare``).

Same seed and options give the same initial weights and the same batch order
(:func:`rosetta.data.batch_order`) in every framework, so four runs differ only by the frameworks.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from rosetta.adapters import Adapter
from rosetta.data import batch_order, layout_for, load_mnist
from rosetta.tolerances import errors
from rosetta.weights import ModelConfig, save_weights


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``saved`` is the weight file written first (None without --out)."""

    def __init__(self, saved: str | os.PathLike[str] | None):
        super().__init__()
        self.saved = saved


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return {"epoch": self.epoch, "train_loss": self.train_loss, "train_acc": self.train_acc,
                "test_acc": self.test_acc, "seconds": self.seconds}


@dataclass
class MNISTSplits:
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    eval_train: tuple[np.ndarray, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        # Train accuracy on a fixed 10k subset: a full pass would double the epoch time.
        self.eval_train = (self.x_train[:10000], self.t_train[:10000])


def load_splits(config: ModelConfig, data_dir: str | os.PathLike[str] | None, dtype: str,
                limit: int | None = None) -> MNISTSplits:
    """MNIST in the canonical layout of ``config`` (MLP flat, CNN NCHW); ``limit`` keeps the first
    N train and N test examples (for quick runs and tests)."""
    layout = layout_for(config.input_shape)
    x_train, t_train = load_mnist("train", data_dir, layout=layout, dtype=dtype, limit=limit)
    x_test, t_test = load_mnist("test", data_dir, layout=layout, dtype=dtype, limit=limit)
    return MNISTSplits(x_train, t_train, x_test, t_test)


def load_test(config: ModelConfig, data_dir: str | os.PathLike[str] | None, dtype: str,
              limit: int | None = None) -> MNISTSplits:
    """The test split only (``rosetta eval``), as :class:`MNISTSplits` with an empty train split."""
    x_test, t_test = load_mnist("test", data_dir, layout=layout_for(config.input_shape), dtype=dtype,
                                limit=limit)
    return MNISTSplits(x_test[:0], t_test[:0], x_test, t_test)


def train_epoch(adapter: Adapter, data: MNISTSplits, epoch: int, batch_size: int, seed: int,
                on_step: Callable[[int, float], None] | None = None, shuffle: bool = True) -> float:
    """One epoch over ``data.x_train`` in the shared batch order (``shuffle=False``: in order);
    returns the mean loss."""
    losses = []
    for step, idx in enumerate(batch_order(len(data.x_train), batch_size, seed, epoch, shuffle), start=1):
        loss = adapter.train_step(data.x_train[idx], data.t_train[idx])
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at epoch {epoch + 1}, step {step} "
                                   f"({adapter.framework}); lower --lr or check the weights")
        losses.append(loss)
        if on_step is not None:
            on_step(step, loss)
    return float(np.mean(losses))


def evaluate(adapter: Adapter, data: MNISTSplits, epoch: int, train_loss: float, seconds: float,
             whole_train: bool = False) -> EpochResult:
    """Accuracies after an epoch: train accuracy on ``data.eval_train``, test accuracy on the test
    split. ``whole_train`` (the course notes' line): the train loss and accuracy are measured in
    eval mode over the whole train split after the epoch, not averaged over its steps."""
    if whole_train:
        return EpochResult(epoch, adapter.loss(data.x_train, data.t_train),
                           adapter.accuracy(data.x_train, data.t_train),
                           adapter.accuracy(data.x_test, data.t_test), seconds)
    return EpochResult(epoch, train_loss, adapter.accuracy(*data.eval_train),
                       adapter.accuracy(data.x_test, data.t_test), seconds)


def notes_line(e: EpochResult) -> str:
    """One epoch as the course notes' Chainer program prints it."""
    return (f"Epoch {e.epoch} loss(train) = {e.train_loss:f}, accuracy(train) = {e.train_acc:f}, "
            f"accuracy(test) = {e.test_acc:f}")


def fit(adapter: Adapter, data: MNISTSplits, epochs: int, batch_size: int, seed: int,
        start_epoch: int = 0, out: str | os.PathLike[str] | None = None,
        metadata: Mapping[str, str] | None = None, progress: bool = True,
        on_epoch: Callable[[EpochResult], None] | None = None,
        lr: float | None = None, lr_decay: float = 1.0, shuffle: bool = True,
        whole_train: bool = False) -> list[EpochResult]:
    """Train ``epochs`` epochs; after each, evaluate and save canonical weights atomically to
    ``out``. Ctrl-C stops after the current step and saves what was learned before re-raising.
    With ``lr``, epoch ``e`` (counted from 0) runs at ``lr * lr_decay ** e``; ``shuffle`` and
    ``whole_train`` as in :func:`train_epoch` and :func:`evaluate`."""
    from tqdm import tqdm

    history: list[EpochResult] = []
    steps = math.ceil(len(data.x_train) / batch_size)
    for epoch in range(start_epoch, start_epoch + epochs):
        if lr is not None:
            adapter.set_lr(epoch_lr(lr, lr_decay, epoch))
        start = time.perf_counter()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}", disable=not progress, leave=False,
                   dynamic_ncols=True)

        def on_step(step: int, loss: float, bar=bar) -> None:  # noqa: ANN001
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")

        try:
            loss = train_epoch(adapter, data, epoch, batch_size, seed, on_step, shuffle)
            bar.close()
            result = evaluate(adapter, data, epoch + 1, loss, time.perf_counter() - start, whole_train)
        except KeyboardInterrupt:
            bar.close()
            if out is not None:
                _save(adapter, out, {**dict(metadata or {}), "epoch": str(epoch), "interrupted": "1"})
            raise TrainingInterrupted(out) from None
        history.append(result)
        if out is not None:
            # A Ctrl-C during this write leaves the previous file (the write is atomic).
            _save(adapter, out, {**dict(metadata or {}), "epoch": str(epoch + 1)})
        if on_epoch is not None:
            on_epoch(result)
    return history


def epoch_lr(lr: float, lr_decay: float, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 0): ``lr * lr_decay ** epoch``."""
    return lr * lr_decay**epoch


def _save(adapter: Adapter, out: str | os.PathLike[str], metadata: Mapping[str, str]) -> None:
    save_weights(out, adapter.params(), adapter.config, extra_metadata=metadata)


def max_param_divergence(params: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                         ) -> tuple[str, float]:
    """The tensor with the largest relative difference to the reference (the parity suite's
    measure, max|a - ref| / max|ref|), and that difference."""
    rel = {name: errors(params[name], ref)[1] for name, ref in reference.items()}
    worst = max(rel, key=rel.__getitem__)
    return worst, rel[worst]
