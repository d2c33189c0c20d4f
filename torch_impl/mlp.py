"""The MLP (course: MultiLayerNet / MultiLayerNetExtend) as a torch.nn.Module."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rosetta.configs import activation_store
from rosetta.weights import MLPConfig, init_params
from torch_impl.layers import Dropout
from torch_impl.weights import load_canonical

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# [rosetta:activations]
# Built-in modules; nn.ReLU's gradient at exactly 0 is 0, as the reference's.
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
# [/rosetta:activations]


# [rosetta:mlp]
class MLP(nn.Module):
    """``fc1, [bn1], act1, [drop1], fc2, [bn2], act2, [drop2], fc3, [out_act]``; input ``(N, 784)``."""

    def __init__(self, config: MLPConfig | None = None, params: dict[str, np.ndarray] | None = None,
                 dtype: str = "float32") -> None:
        super().__init__()
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLP needs an MLPConfig, got {type(config).__name__}")
        self.config = config
        # NOTE(framework:init-defaults): torch's own init (Kaiming-uniform, a=sqrt(5)) is
        # overwritten: the model loads rosetta.weights.init_params (He by default).
        # NOTE(framework:model-dtype): every module is built in the model dtype; nothing global
        # (torch.set_default_dtype) is touched, so float32 and float64 models coexist.
        torch_dtype = TORCH_DTYPES[np.dtype(dtype).name]
        sizes = config.sizes
        n_affine = len(sizes) - 1
        self.layer_names: list[str] = []
        for i in range(1, n_affine + 1):
            # [rosetta:dense]
            # NOTE(framework:dense-layout): nn.Linear stores weight as (out, in) and computes
            # x @ weight.T + bias; the canonical W is (in, out), so weights.py transposes it.
            self._add(f"fc{i}", nn.Linear(sizes[i - 1], sizes[i], dtype=torch_dtype))
            # [/rosetta:dense]
            if i == n_affine:
                break  # the last affine layer feeds the loss
            # [rosetta:batchnorm]
            if config.use_batchnorm:
                # NOTE(framework:bn-momentum): torch's momentum weights the *batch* statistic
                # (running = (1 - m) * running + m * batch), the reference's the running one,
                # so torch momentum = 1 - bn_momentum.
                self._add(f"bn{i}", nn.BatchNorm1d(sizes[i], eps=config.bn_eps,
                                                   momentum=1.0 - config.bn_momentum, dtype=torch_dtype))
            # [/rosetta:batchnorm]
            self._add(f"act{i}", ACTIVATIONS[config.activation]())
            if config.dropout_ratio > 0:
                self._add(f"drop{i}", Dropout(config.dropout_ratio, config.dropout_mode))
        if config.output_activation != "identity":
            self._add("out_act", ACTIVATIONS[config.output_activation]())  # before the softmax
        # Softmax with cross-entropy on the logits, mean over the batch (see train.loss_fn).
        self.last_layer = nn.CrossEntropyLoss(reduction="mean")
        load_canonical(self, params if params is not None else
                       init_params(config, seed=0, scheme="he", dtype=dtype))

    def _add(self, name: str, layer: nn.Module) -> None:
        setattr(self, name, layer)
        self.layer_names.append(name)

    def forward(self, x: torch.Tensor, train: bool = False, return_activations: bool = False,
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (N, K), or ``(logits, activations)`` with every layer's output by name."""
        # NOTE(framework:train-flag): BatchNorm and Dropout read torch's module-wide train/eval
        # flag; the contract's per-call ``train`` argument sets it.
        if self.training != train:
            self.train(train)
        a: dict[str, torch.Tensor] = activation_store(return_activations)
        # One layer per iteration, in forward order (the course's OrderedDict loop).
        for name in self.layer_names:
            x = a[name] = getattr(self, name)(x)  # (N, size of the layer)
        return (x, a) if return_activations else x
# [/rosetta:mlp]
