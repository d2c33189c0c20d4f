"""The PyTorch port behind the canonical Adapter interface (arrays cross as canonical NumPy)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from rosetta.adapters.base import Adapter, optimizer_hparams
from rosetta.weights import MLPConfig, ModelConfig
from torch_impl.cnn import CNN
from torch_impl.layers import Dropout
from torch_impl.mlp import MLP
from torch_impl.optimizers import make_optimizer
from torch_impl.train import loss_fn, train_step
from torch_impl.weights import canonical_grads, dump_canonical, load_canonical


class TorchAdapter(Adapter):
    framework = "torch"

    def __init__(self, config: ModelConfig, params: Mapping[str, np.ndarray], dtype: str = "float32"):
        super().__init__(config, params, dtype)
        model_class = MLP if isinstance(config, MLPConfig) else CNN
        self.model = model_class(config, params=self._canonical(params), dtype=self.dtype.name)
        self.model.eval()
        self.optimizer: torch.optim.Optimizer | None = None

    # --- conversions at the boundary ----------------------------------------------------------
    def _input(self, x: np.ndarray) -> torch.Tensor:
        # Canonical layout is torch's (MLP (N, 784), CNN NCHW): only the dtype may change.
        return torch.from_numpy(np.ascontiguousarray(x, dtype=self.dtype))

    @staticmethod
    def _labels(t: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64))

    # --- parameters ---------------------------------------------------------------------------
    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        load_canonical(self.model, self._canonical(params))

    def params(self) -> dict[str, np.ndarray]:
        return dump_canonical(self.model)

    # --- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> dict[str, np.ndarray]:
        with torch.no_grad():
            _, activations = self.model(self._input(x), train=train, return_activations=True)
        # The activations are NCHW already (torch's native layout is the canonical one).
        return {name: a.numpy() for name, a in activations.items()}

    def loss_and_grads(
        self, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray | None]:
        self.model.zero_grad(set_to_none=True)
        xt = self._input(x)
        if input_grad:
            xt.requires_grad_(True)
        logits = self.model(xt, train=train)
        loss = loss_fn(self.model, logits, self._labels(t))
        loss.backward()
        grads = canonical_grads(self.model)
        dx = np.array(xt.grad.numpy(), order="C") if input_grad else None
        self.model.zero_grad(set_to_none=True)
        return loss.item(), grads, dx

    def set_optimizer(self, name: str, **hparams: float) -> None:
        self.optimizer = make_optimizer(name, self.model, **optimizer_hparams(name, **hparams))
        self.optimizer_name = name

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            old, group["lr"] = group["lr"], lr
            if self.optimizer_name != "momentum":
                continue
            # NOTE(framework): torch's momentum buffer b is the course's velocity divided by -lr
            # (v = -lr * b). Rescale b so that v, the state the course keeps, is unchanged.
            for p in group["params"]:
                buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer.mul_(old / lr)

    def train_step(self, x: np.ndarray, t: np.ndarray) -> float:
        if self.optimizer is None:
            raise RuntimeError("call set_optimizer(name, **hparams) before train_step")
        return train_step(self.model, self.optimizer, self._input(x), self._labels(t))

    def set_dropout_masks(self, masks: Mapping[str, np.ndarray] | None) -> None:
        layers = {n: m for n, m in self.model.named_children() if isinstance(m, Dropout)}
        if masks is not None:
            unknown = set(masks) - set(layers)
            if unknown:
                raise KeyError(f"no dropout layer {sorted(unknown)}; the model has {sorted(layers)}")
        for name, layer in layers.items():
            mask = None if masks is None or name not in masks else masks[name]
            layer.set_mask(None if mask is None else torch.from_numpy(np.array(mask, dtype=bool)))
