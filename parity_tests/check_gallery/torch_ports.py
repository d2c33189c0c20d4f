"""Hand-written PyTorch ports of the course networks: correct ones, and ones with one porting
difference each (the argument that turns it on says which)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class TwoLayerNet(nn.Module):
    def __init__(
        self,
        hidden: int = 50,
        activation: str = "relu",
        softmax_out: bool = False,
        criterion: nn.Module | None = None,
        square_bug: bool = False,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        # square_bug: a hand-written affine that forgets nn.Linear's (out, in) layout
        self.fc2 = SquareLinear(hidden) if square_bug else nn.Linear(hidden, 10)
        self.act = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid()}[activation]
        self.softmax_out = softmax_out
        self.criterion = criterion or nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(self.act(self.fc1(x)))
        return torch.softmax(y, dim=1) if self.softmax_out else y


class SquareLinear(nn.Module):
    """weight stored (out, in) like nn.Linear, but applied as x @ weight (a square layer hides it)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, n))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def guard_loss(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The course's cross_entropy_error written in torch: -log(softmax + 1e-7)."""
    p = torch.softmax(y, dim=1)
    return -torch.mean(torch.log(p[torch.arange(len(t)), t] + 1e-7))


class SimpleConvNet(nn.Module):
    def __init__(
        self, filter_size: int = 5, padding: int = 0, ceil_mode: bool = False, flatten: str = "chw"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 30, filter_size, padding=padding)
        n = (28 - filter_size + 1) // 2
        self.fc1 = nn.Linear(30 * n * n, 100)
        self.fc2 = nn.Linear(100, 10)
        self.ceil_mode = ceil_mode
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))  # (N, 30, 24, 24)
        x = F.max_pool2d(x, 2, 2, ceil_mode=self.ceil_mode)  # (N, 30, 12, 12)
        if self.flatten == "hwc":
            x = x.permute(0, 2, 3, 1)  # (N, 12, 12, 30): a port of a Keras model
        x = x.reshape(x.shape[0], -1)  # (N, 4320)
        return self.fc2(F.relu(self.fc1(x)))


class MultiLayerNetExtend(nn.Module):
    def __init__(
        self,
        hidden: tuple[int, ...] = (20, 20),
        batchnorm: bool = True,
        dropout: float = 0.0,
        eps: float = 1e-5,
        momentum: float = 0.1,
        functional_dropout: bool = False,
    ) -> None:
        super().__init__()
        sizes = [784, *hidden]
        self.blocks = nn.ModuleList()
        for i in range(len(hidden)):
            layers: list[nn.Module] = [nn.Linear(sizes[i], sizes[i + 1])]
            if batchnorm:
                layers.append(nn.BatchNorm1d(sizes[i + 1], eps=eps, momentum=momentum))
            layers.append(nn.ReLU())
            if dropout and not functional_dropout:
                layers.append(nn.Dropout(dropout))
            self.blocks.append(nn.Sequential(*layers))
        self.out = nn.Linear(sizes[-1], 10)
        self.p = dropout if functional_dropout else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
            if self.p:
                x = F.dropout(x, self.p)  # the bug: no training=self.training
        return self.out(x)


class DeepConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        specs = [(1, 16, 1), (16, 16, 1), (16, 32, 1), (32, 32, 2), (32, 64, 1), (64, 64, 1)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=p) for i, o, p in specs)
        self.fc1 = nn.Linear(64 * 4 * 4, 50)
        self.fc2 = nn.Linear(50, 10)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = self.drop(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.drop(self.fc2(x))


class NotesMLP(nn.Module):
    """The course notes' Chainer MLP in PyTorch: 784-100-100-10, ReLU, ReLU, sigmoid on the output."""

    def __init__(self, output_sigmoid: bool = True) -> None:
        super().__init__()
        self.l1 = nn.Linear(784, 100)
        self.l2 = nn.Linear(100, 100)
        self.l3 = nn.Linear(100, 10)
        self.output_sigmoid = output_sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.l2(F.relu(self.l1(x))))
        y = self.l3(h)
        return torch.sigmoid(y) if self.output_sigmoid else y


def two_layer_port() -> TwoLayerNet:
    """A correct port of the course TwoLayerNet(784, 50, 10) (for the command-line tests)."""
    return TwoLayerNet()


def two_layer_sigmoid_port() -> TwoLayerNet:
    """The same port with sigmoid where the course has ReLU."""
    return TwoLayerNet(activation="sigmoid")
