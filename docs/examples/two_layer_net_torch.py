"""A hand-written PyTorch port of two_layer_net.py, with one bug: the course's predict() is
followed by a softmax in its accuracy and loss, so the port ends with nn.Softmax too.
FixedTwoLayerNet is the port after `rosetta check` named the bug; the functions below are the
rest of the port (weights, training loop, saving), step by step as in docs/porting.md.

    rosetta check docs/examples/two_layer_net.py:TwoLayerNet \
        docs/examples/two_layer_net_torch.py:FixedTwoLayerNet
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
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


def from_course(params: dict[str, np.ndarray]) -> FixedTwoLayerNet:
    """The course's W1..b2 in a float64 port. nn.Linear keeps weight as (out, in): transpose."""
    net = FixedTwoLayerNet().double()  # float64 like the course's arrays (torch's default: float32)
    with torch.no_grad():
        net.fc1.weight.copy_(torch.from_numpy(params["W1"].T))
        net.fc1.bias.copy_(torch.from_numpy(params["b1"]))
        net.fc2.weight.copy_(torch.from_numpy(params["W2"].T))
        net.fc2.bias.copy_(torch.from_numpy(params["b2"]))
    return net


def to_course(net: nn.Module) -> dict[str, np.ndarray]:
    return {"W1": net.fc1.weight.detach().numpy().T, "b1": net.fc1.bias.detach().numpy(),
            "W2": net.fc2.weight.detach().numpy().T, "b2": net.fc2.bias.detach().numpy()}


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: np.ndarray, t: np.ndarray) -> float:
    """gradient() + update(): autograd replaces the hand-written backward."""
    optimizer.zero_grad(set_to_none=True)  # .grad accumulates across backward calls otherwise
    loss = net.criterion(net(torch.from_numpy(x)), torch.from_numpy(t).long())  # int64 labels
    loss.backward()
    optimizer.step()
    return loss.item()


def train(net: nn.Module, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    """The course's loop, same seeded batches; torch.optim.SGD's lr given (its default differs)."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    return [train_step(net, optimizer, x[idx], t[idx])
            for idx in (rng.choice(len(x), batch_size) for _ in range(iters))]


def save(net: nn.Module, path: str | Path) -> None:
    """The state_dict as safetensors: torch.save would write a pickle."""
    save_file(net.state_dict(), str(path))


def load(path: str | Path) -> FixedTwoLayerNet:
    net = FixedTwoLayerNet().double()
    net.load_state_dict(load_file(str(path)))
    return net
