"""The deep CNN (course: DeepConvNet) as a torch.nn.Module; input NCHW ``(N, 1, 28, 28)``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rosetta.configs import activation_store
from rosetta.weights import DeepCNNConfig, init_params
from torch_impl.layers import Dropout
from torch_impl.mlp import TORCH_DTYPES
from torch_impl.weights import load_canonical


# [rosetta:deepcnn]
class DeepCNN(nn.Module):
    """``conv1, relu1, conv2, relu2, pool1, conv3, relu3, conv4, relu4, pool2, conv5, relu5, conv6,
    relu6, pool3, flatten, fc1, relu7, [drop1], fc2, [drop2]``; shapes below for the defaults."""

    def __init__(self, config: DeepCNNConfig | None = None, params: dict[str, np.ndarray] | None = None,
                 dtype: str = "float32") -> None:
        super().__init__()
        config = DeepCNNConfig() if config is None else config
        if not isinstance(config, DeepCNNConfig):
            raise TypeError(f"DeepCNN needs a DeepCNNConfig, got {type(config).__name__}")
        self.config = config
        # NOTE(framework:model-dtype): the dtype per module, nothing global.
        torch_dtype = TORCH_DTYPES[np.dtype(dtype).name]
        c_in = config.input_dim[0]
        for i, (fn, k, pad, stride) in enumerate(config.conv_params, 1):
            # Cross-correlation with zero padding; torch's weight is OIHW like the canonical conv*.W.
            setattr(self, f"conv{i}", nn.Conv2d(c_in, fn, k, stride=stride, padding=pad, dtype=torch_dtype))
            setattr(self, f"relu{i}", nn.ReLU())
            if i % 2 == 0:
                # 2x2 max-pool, stride 2, no padding, floor (ceil_mode=False).
                setattr(self, f"pool{i // 2}", nn.MaxPool2d(kernel_size=2, stride=2))
            c_in = fn
        # NCHW flattens in (C, H, W) order, the canonical row order of fc1.W: no permutation.
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(config.pool_output_size, config.hidden_size, dtype=torch_dtype)
        self.relu7 = nn.ReLU()
        if config.dropout_ratio > 0:
            # NOTE(framework:dropout-scaling): nn.Dropout is inverted only; the port's Dropout
            # also computes the course's form (config.dropout_mode).
            self.drop1 = Dropout(config.dropout_ratio, config.dropout_mode)
        self.fc2 = nn.Linear(config.hidden_size, config.output_size, dtype=torch_dtype)
        if config.dropout_ratio > 0:
            self.drop2 = Dropout(config.dropout_ratio, config.dropout_mode)
        # Softmax with cross-entropy on the logits, mean over the batch (see train.loss_fn).
        self.last_layer = nn.CrossEntropyLoss(reduction="mean")
        if params is None:
            params = init_params(config, seed=0, scheme="he", dtype=dtype)
        load_canonical(self, params)

    def forward(self, x: torch.Tensor, train: bool = False, return_activations: bool = False,
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # NOTE(framework:train-flag): Dropout reads torch's module-wide train/eval flag; ``train`` sets it.
        if self.training != train:
            self.train(train)
        a: dict[str, torch.Tensor] = activation_store(return_activations)
        x = a["conv1"] = self.conv1(x)  # (N, 16, 28, 28)
        x = a["relu1"] = self.relu1(x)  # (N, 16, 28, 28)
        x = a["conv2"] = self.conv2(x)  # (N, 16, 28, 28)
        x = a["relu2"] = self.relu2(x)  # (N, 16, 28, 28)
        x = a["pool1"] = self.pool1(x)  # (N, 16, 14, 14)
        x = a["conv3"] = self.conv3(x)  # (N, 32, 14, 14)
        x = a["relu3"] = self.relu3(x)  # (N, 32, 14, 14)
        x = a["conv4"] = self.conv4(x)  # (N, 32, 16, 16), pad 2
        x = a["relu4"] = self.relu4(x)  # (N, 32, 16, 16)
        x = a["pool2"] = self.pool2(x)  # (N, 32, 8, 8)
        x = a["conv5"] = self.conv5(x)  # (N, 64, 8, 8)
        x = a["relu5"] = self.relu5(x)  # (N, 64, 8, 8)
        x = a["conv6"] = self.conv6(x)  # (N, 64, 8, 8)
        x = a["relu6"] = self.relu6(x)  # (N, 64, 8, 8)
        x = a["pool3"] = self.pool3(x)  # (N, 64, 4, 4)
        x = a["flatten"] = self.flatten(x)  # (N, 1024) in (C, H, W) order
        x = a["fc1"] = self.fc1(x)  # (N, 50)
        x = a["relu7"] = self.relu7(x)  # (N, 50)
        if self.config.dropout_ratio > 0:
            x = a["drop1"] = self.drop1(x)  # (N, 50)
        x = a["fc2"] = self.fc2(x)  # (N, 10)
        if self.config.dropout_ratio > 0:
            x = a["drop2"] = self.drop2(x)  # (N, 10), dropout on the logits (the book's)
        return (x, a) if return_activations else x
# [/rosetta:deepcnn]
