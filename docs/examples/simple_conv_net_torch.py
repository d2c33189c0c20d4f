"""simple_conv_net.py ported to PyTorch, step by step as in docs/porting.md.

nn.Conv2d takes NCHW input and keeps its weight OIHW, as the course's Convolution: the kernel
copies as it is. Flattening the pooled (N, C, H, W) map lists it in (C, H, W) order, the row order
of the course's W2, so only the nn.Linear weights are transposed.

    rosetta check docs/examples/simple_conv_net.py:SimpleConvNet \
        docs/examples/simple_conv_net_torch.py:SimpleConvNet
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


class SimpleConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # NOTE(framework:padding-stride): the course's conv_param, pad 0 and stride 1, given explicitly.
        self.conv1 = nn.Conv2d(1, 30, 5, stride=1, padding=0)  # weight (30, 1, 5, 5): OIHW, as W1
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, stride=2)  # ceil_mode=False: floor, as the course
        self.flatten = nn.Flatten()  # (N, 30, 12, 12) -> (N, 4320) in (C, H, W) order
        self.fc1 = nn.Linear(30 * 12 * 12, 100)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(100, 10)
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))  # (N, 30, 12, 12)
        return self.fc2(self.relu2(self.fc1(self.flatten(x))))  # the logits


def from_course(params: dict[str, np.ndarray]) -> SimpleConvNet:
    """The course's W1..b3 in a float64 port."""
    net = SimpleConvNet().double()  # float64 like the course's arrays (torch's default: float32)
    with torch.no_grad():
        # NOTE(framework:conv-layout): both OIHW, the kernel is copied as it is.
        net.conv1.weight.copy_(torch.from_numpy(params["W1"]))
        net.conv1.bias.copy_(torch.from_numpy(params["b1"]))
        # NOTE(framework:dense-layout): nn.Linear keeps weight as (out, in): transpose.
        net.fc1.weight.copy_(torch.from_numpy(params["W2"].T))
        net.fc1.bias.copy_(torch.from_numpy(params["b2"]))
        net.fc2.weight.copy_(torch.from_numpy(params["W3"].T))
        net.fc2.bias.copy_(torch.from_numpy(params["b3"]))
    return net


def to_course(net: SimpleConvNet) -> dict[str, np.ndarray]:
    return {"W1": net.conv1.weight.detach().numpy(), "b1": net.conv1.bias.detach().numpy(),
            "W2": net.fc1.weight.detach().numpy().T, "b2": net.fc1.bias.detach().numpy(),
            "W3": net.fc2.weight.detach().numpy().T, "b3": net.fc2.bias.detach().numpy()}


def train_step(net: SimpleConvNet, optimizer: torch.optim.Optimizer, x: np.ndarray,
               t: np.ndarray) -> float:
    """gradient() + update(): autograd replaces the hand-written backward (and col2im)."""
    optimizer.zero_grad(set_to_none=True)  # .grad accumulates across backward calls otherwise
    loss = net.criterion(net(torch.from_numpy(x)), torch.from_numpy(t).long())  # int64 labels
    loss.backward()
    optimizer.step()
    return loss.item()


def train(net: SimpleConvNet, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    """The course's loop, same seeded batches of (N, 1, 28, 28) images; lr given (torch's SGD
    default differs)."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    return [train_step(net, optimizer, x[idx], t[idx])
            for idx in (rng.choice(len(x), batch_size) for _ in range(iters))]


def save(net: SimpleConvNet, path: str | Path) -> None:
    """The state_dict as safetensors: torch.save would write a pickle."""
    save_file(net.state_dict(), str(path))


def load(path: str | Path) -> SimpleConvNet:
    net = SimpleConvNet().double()
    net.load_state_dict(load_file(str(path)))
    return net
