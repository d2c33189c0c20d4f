"""A hand-written PyTorch port of two_layer_net.py, with one bug: the course's predict() is
followed by a softmax in its accuracy and loss, so the port ends with nn.Softmax too."""

from __future__ import annotations

import torch
from torch import nn


class TwoLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 50)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(50, 10)
        self.softmax = nn.Softmax(dim=1)  # the bug: CrossEntropyLoss applies softmax itself
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.fc2(self.relu(self.fc1(x))))


class FixedTwoLayerNet(TwoLayerNet):
    """The port after the report: the logits go straight into CrossEntropyLoss."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))
