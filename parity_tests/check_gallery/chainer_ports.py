"""Hand-written Chainer ports of the course networks, and the course notes' MLP as written."""

from __future__ import annotations

import numpy as np

from chainer_impl.compat import import_chainer

chainer = import_chainer()

import chainer.functions as F  # noqa: E402, N812
import chainer.links as L  # noqa: E402, N812


class NotesNN(chainer.Chain):
    """The notes' program's network: lazily sized L.Linear layers, ReLU, ReLU, sigmoid output."""

    def __init__(self, n_units: int = 100, n_out: int = 10) -> None:
        super().__init__()
        with self.init_scope():
            self.l1 = L.Linear(None, n_units)
            self.l2 = L.Linear(None, n_units)
            self.l3 = L.Linear(None, n_out)

    def __call__(self, x):  # noqa: ANN001, ANN204 - the notes override __call__
        h1 = F.relu(self.l1(x))
        h2 = F.relu(self.l2(h1))
        return F.sigmoid(self.l3(h2))


class SquareLinear(chainer.Link):
    """W stored (out, in) like L.Linear, but applied as x @ W (a square layer hides it)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        with self.init_scope():
            self.W = chainer.Parameter(np.zeros((n, n)))
            self.b = chainer.Parameter(np.zeros(n))

    def forward(self, x):  # noqa: ANN001, ANN201
        return F.matmul(x, self.W) + F.broadcast_to(self.b, (x.shape[0], self.b.shape[0]))


class TwoLayerNet(chainer.Chain):
    def __init__(
        self,
        hidden: int = 50,
        activation: str = "relu",
        softmax_out: bool = False,
        lossfun: object = None,
        square_bug: bool = False,
    ) -> None:
        super().__init__()
        with self.init_scope():
            self.fc1 = L.Linear(784, hidden)
            self.fc2 = SquareLinear(hidden) if square_bug else L.Linear(hidden, 10)
        self.act = activation
        self.softmax_out = softmax_out
        if lossfun is not None:
            self.lossfun = lossfun

    def forward(self, x):  # noqa: ANN001, ANN201
        h = self.fc1(x)
        h = F.relu(h) if self.act == "relu" else F.sigmoid(h)
        y = self.fc2(h)
        return F.softmax(y) if self.softmax_out else y


def sum_loss(y, t):  # noqa: ANN001, ANN201
    return F.sum(F.softmax_cross_entropy(y, t, reduce="no"))


def guard_loss(y, t):  # noqa: ANN001, ANN201
    p = F.softmax(y)
    return -F.mean(F.log(F.select_item(p, t) + 1e-7))


class SimpleConvNet(chainer.Chain):
    def __init__(
        self, filter_size: int = 5, pad: int = 0, cover_all: bool = False, flatten: str = "chw"
    ) -> None:
        super().__init__()
        with self.init_scope():
            self.conv1 = L.Convolution2D(1, 30, filter_size, pad=pad)
            self.fc1 = L.Linear(None, 100)
            self.fc2 = L.Linear(100, 10)
        self.cover_all = cover_all
        self.flatten = flatten

    def forward(self, x):  # noqa: ANN001, ANN201
        h = F.relu(self.conv1(x))  # (N, 30, 24, 24)
        h = F.max_pooling_2d(h, 2, stride=2, cover_all=self.cover_all)  # (N, 30, 12, 12)
        if self.flatten == "hwc":
            h = F.transpose(h, (0, 2, 3, 1))  # (N, 12, 12, 30)
        h = F.reshape(h, (h.shape[0], -1))
        return self.fc2(F.relu(self.fc1(h)))


class MultiLayerNetExtend(chainer.Chain):
    def __init__(
        self,
        hidden: tuple[int, ...] = (20, 20),
        batchnorm: bool = True,
        dropout: float = 0.0,
        eps: float = 1e-5,
        decay: float = 0.9,
    ) -> None:
        super().__init__()
        sizes = [784, *hidden]
        self.n = len(hidden)
        with self.init_scope():
            for i in range(self.n):
                setattr(self, f"fc{i + 1}", L.Linear(sizes[i], sizes[i + 1]))
                if batchnorm:
                    setattr(self, f"bn{i + 1}", L.BatchNormalization(sizes[i + 1], decay=decay, eps=eps))
            self.out = L.Linear(sizes[-1], 10)
        self.batchnorm = batchnorm
        self.dropout = dropout

    def forward(self, x):  # noqa: ANN001, ANN201
        h = x
        for i in range(1, self.n + 1):
            h = self[f"fc{i}"](h)
            if self.batchnorm:
                h = self[f"bn{i}"](h)
            h = F.relu(h)
            if self.dropout:
                h = F.dropout(h, self.dropout)
        return self.out(h)
