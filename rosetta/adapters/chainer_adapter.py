"""The Chainer port behind the canonical :class:`Adapter` interface.

Canonical and Chainer layouts agree for inputs (MLP (N, 784), CNN NCHW) and activations, so the
only conversions are the weights (chainer_impl.weights) and explicit dtype casts of the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chainer_impl.compat import import_chainer

chainer = import_chainer()

from chainer_impl.cnn import CNN  # noqa: E402
from chainer_impl.layers import Dropout  # noqa: E402
from chainer_impl.mlp import MLP  # noqa: E402
from chainer_impl.optimizers import make_optimizer  # noqa: E402
from chainer_impl.train import loss_fn, train_step  # noqa: E402
from chainer_impl.weights import dump_canonical, dump_canonical_grads, load_canonical  # noqa: E402
from rosetta.adapters.base import Adapter, optimizer_hparams  # noqa: E402
from rosetta.weights import MLPConfig, ModelConfig  # noqa: E402


class ChainerAdapter(Adapter):
    framework = "chainer"

    def __init__(self, config: ModelConfig, params: Mapping[str, np.ndarray], dtype: str = "float32"):
        super().__init__(config, params, dtype)
        model_class = MLP if isinstance(config, MLPConfig) else CNN
        self.model = model_class(config, params=self._canonical(params), dtype=self.dtype.name)
        self.optimizer: chainer.Optimizer | None = None

    def _input(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=self.dtype)

    # --- parameters ---------------------------------------------------------------------------
    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        load_canonical(self.model, self._canonical(params))

    def params(self) -> dict[str, np.ndarray]:
        return dump_canonical(self.model)

    # --- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> dict[str, np.ndarray]:
        with chainer.no_backprop_mode():
            _, acts = self.model.forward(self._input(x), train=train, return_activations=True)
        # Copies: flatten is a view of pool1 and eval-mode dropout returns its input.
        return {name: np.array(v.array) for name, v in acts.items()}

    def loss_and_grads(
        self, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray | None]:
        # A Variable input gets a gradient; a plain array does not (and skips that work).
        x_in = chainer.Variable(self._input(x)) if input_grad else self._input(x)
        loss = loss_fn(self.model, x_in, np.asarray(t), train=train)
        self.model.cleargrads()
        loss.backward()
        dx = np.array(x_in.grad) if input_grad else None
        return float(loss.array), dump_canonical_grads(self.model), dx

    def set_optimizer(self, name: str, **hparams: float) -> None:
        self.optimizer = make_optimizer(name, self.model, **optimizer_hparams(name, **hparams))
        self.optimizer_name = name

    def set_lr(self, lr: float) -> None:
        # NOTE(framework): Chainer's Adam calls the learning rate "alpha"; the others "lr".
        name = "alpha" if self.optimizer_name == "adam" else "lr"
        setattr(self.optimizer.hyperparam, name, lr)

    def train_step(self, x: np.ndarray, t: np.ndarray) -> float:
        if self.optimizer is None:
            raise RuntimeError("call set_optimizer(name, **hparams) before train_step")
        return train_step(self.model, self.optimizer, self._input(x), np.asarray(t))

    def set_dropout_masks(self, masks: Mapping[str, np.ndarray] | None) -> None:
        layers = {name.lstrip("/"): link for name, link in self.model.namedlinks(skipself=True)
                  if isinstance(link, Dropout)}
        unknown = set(masks or {}) - set(layers)
        if unknown:
            raise ValueError(f"no Dropout layer named {sorted(unknown)}; the model has {sorted(layers)}")
        for name, link in layers.items():
            link.set_mask(None if masks is None else masks.get(name), self.dtype)
