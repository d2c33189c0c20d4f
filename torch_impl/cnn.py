"""The CNN (course: SimpleConvNet) as a torch.nn.Module; input NCHW ``(N, 1, 28, 28)``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rosetta.configs import activation_store
from rosetta.weights import CNNConfig, init_params
from torch_impl.mlp import TORCH_DTYPES
from torch_impl.weights import load_canonical


# [rosetta:cnn]
class CNN(nn.Module):
    """``conv1, [bn1], relu1, pool1, flatten, fc1, relu2, fc2``; shapes below for the defaults."""

    def __init__(self, config: CNNConfig | None = None, params: dict[str, np.ndarray] | None = None,
                 dtype: str = "float32") -> None:
        super().__init__()
        config = CNNConfig() if config is None else config
        if not isinstance(config, CNNConfig):
            raise TypeError(f"CNN needs a CNNConfig, got {type(config).__name__}")
        self.config = config
        # NOTE(framework:model-dtype): the dtype per module, nothing global.
        torch_dtype = TORCH_DTYPES[np.dtype(dtype).name]
        c_in = config.input_dim[0]
        # [rosetta:conv]
        # Cross-correlation with zero padding; torch's weight is OIHW like the canonical conv1.W.
        self.conv1 = nn.Conv2d(c_in, config.filter_num, config.filter_size, stride=config.stride,
                               padding=config.pad, dtype=torch_dtype)
        # [/rosetta:conv]
        self.use_batchnorm = config.use_batchnorm
        if config.use_batchnorm:
            # NOTE(framework:bn-momentum): torch momentum = 1 - bn_momentum (it weights the batch statistic);
            # running_var gets the unbiased batch variance, as in the contract.
            self.bn1 = nn.BatchNorm2d(config.filter_num, eps=config.bn_eps,
                                      momentum=1.0 - config.bn_momentum, dtype=torch_dtype)
        self.relu1 = nn.ReLU()
        # [rosetta:pool]
        # 2x2 max-pool, stride 2, no padding, floor (ceil_mode=False); ties go to the first maximum.
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        # [/rosetta:pool]
        # NCHW flattens in (C, H, W) order, the canonical row order of fc1.W: no permutation.
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(config.pool_output_size, config.hidden_size, dtype=torch_dtype)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(config.hidden_size, config.output_size, dtype=torch_dtype)
        # Softmax with cross-entropy on the logits, mean over the batch (see train.loss_fn).
        self.last_layer = nn.CrossEntropyLoss(reduction="mean")
        # [rosetta:init]
        # NOTE(framework:init-defaults): nn.Conv2d / nn.Linear draw Kaiming-uniform (a=sqrt(5));
        # that draw is overwritten by the contract's He-normal weights, identical in all four.
        if params is None:
            params = init_params(config, seed=0, scheme="he", dtype=dtype)
        load_canonical(self, params)
        # [/rosetta:init]

    def forward(self, x: torch.Tensor, train: bool = False, return_activations: bool = False,
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # NOTE(framework:train-flag): BatchNorm reads torch's module-wide train/eval flag; ``train`` sets it.
        if self.training != train:
            self.train(train)
        a: dict[str, torch.Tensor] = activation_store(return_activations)
        # ``x = a[name] = layer(x)`` keeps every output only when return_activations asks for them
        # (no layer works in place, so a stored output is never overwritten).
        # [rosetta:im2col]
        # No im2col in user code: nn.Conv2d's CPU kernel does the lowering (im2col + GEMM, or oneDNN).
        x = a["conv1"] = self.conv1(x)  # (N, 30, 24, 24)
        # [/rosetta:im2col]
        if self.use_batchnorm:
            x = a["bn1"] = self.bn1(x)  # (N, 30, 24, 24), per-channel statistics over (N, H, W)
        x = a["relu1"] = self.relu1(x)  # (N, 30, 24, 24)
        x = a["pool1"] = self.pool1(x)  # (N, 30, 12, 12)
        x = a["flatten"] = self.flatten(x)  # (N, 4320) in (C, H, W) order
        x = a["fc1"] = self.fc1(x)  # (N, 100)
        x = a["relu2"] = self.relu2(x)  # (N, 100)
        x = a["fc2"] = self.fc2(x)  # (N, 10)
        return (x, a) if return_activations else x
# [/rosetta:cnn]
