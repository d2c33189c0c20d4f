"""The course notes' Chainer MLP migrated to PyTorch (``notes_mlp_chainer.py``).

What the migration has to keep: the sigmoid on the output (F.sigmoid before
F.softmax_cross_entropy), Chainer's Adam defaults (alpha 1e-3, betas 0.9/0.999, eps 1e-8: torch's
defaults are the same), batches in order. ``L.Linear(None, n)`` infers its input size; nn.Linear
needs it (784, then 100).

    rosetta check docs/examples/notes_mlp_chainer.py:model docs/examples/notes_mlp_torch.py:model
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class Net(nn.Module):
    def __init__(self, n_units: int = 100, n_out: int = 10) -> None:
        super().__init__()
        self.l1 = nn.Linear(784, n_units)
        self.l2 = nn.Linear(n_units, n_units)
        self.l3 = nn.Linear(n_units, n_out)
        self.criterion = nn.CrossEntropyLoss()  # from logits, mean: F.softmax_cross_entropy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = F.relu(self.l1(x))
        h2 = F.relu(self.l2(h1))
        return torch.sigmoid(self.l3(h2))


def model() -> Net:
    return Net()


def train(x: np.ndarray, t: np.ndarray, epochs: int = 1, batch: int = 100) -> Net:
    net = model()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    xs, ts = torch.from_numpy(x), torch.from_numpy(t).long()
    for _ in range(epochs):
        for i in range(0, len(xs), batch):
            loss = net.criterion(net(xs[i:i + batch]), ts[i:i + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net
