"""The NumPy reference behind the canonical Adapter interface (its layout is the canonical one)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference_numpy.cnn import CNN
from reference_numpy.mlp import MLP
from reference_numpy.optimizers import Optimizer, make_optimizer
from reference_numpy.train import train_step
from reference_numpy.weights import dump_canonical, load_canonical
from rosetta.adapters.base import Adapter, optimizer_hparams
from rosetta.weights import MLPConfig, ModelConfig


class NumpyAdapter(Adapter):
    framework = "numpy"

    def __init__(self, config: ModelConfig, params: Mapping[str, np.ndarray], dtype: str = "float32"):
        super().__init__(config, params, dtype)
        model_class = MLP if isinstance(config, MLPConfig) else CNN
        self.model = model_class(config, params=self._canonical(params), dtype=self.dtype.name)
        self.optimizer: Optimizer | None = None

    def _input(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=self.dtype)

    # --- parameters ---------------------------------------------------------------------------
    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        load_canonical(self.model, self._canonical(params))

    def params(self) -> dict[str, np.ndarray]:
        return dump_canonical(self.model)

    # --- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> dict[str, np.ndarray]:
        _, activations = self.model.forward(self._input(x), train=train, return_activations=True)
        # Copies: a later forward must not change what a caller holds (flatten is a view).
        return {name: np.array(a) for name, a in activations.items()}

    def loss_and_grads(
        self, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray | None]:
        labels = np.asarray(t, dtype=np.int64)
        loss, grads, dx = self.model.loss_and_gradient(self._input(x), labels, train=train,
                                                       input_grad=input_grad)
        grads = {n: np.array(g) for n, g in grads.items()}
        return float(loss), grads, (np.array(dx) if input_grad else None)

    def set_optimizer(self, name: str, **hparams: float) -> None:
        self.optimizer = make_optimizer(name, self.model, **optimizer_hparams(name, **hparams))
        self.optimizer_name = name

    def set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr

    def train_step(self, x: np.ndarray, t: np.ndarray) -> float:
        if self.optimizer is None:
            raise RuntimeError("call set_optimizer(name, **hparams) before train_step")
        return float(train_step(self.model, self.optimizer, self._input(x), np.asarray(t, dtype=np.int64)))

    def set_dropout_masks(self, masks: Mapping[str, np.ndarray] | None) -> None:
        self.model.set_dropout_masks(masks)
