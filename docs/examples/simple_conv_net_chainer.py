"""simple_conv_net.py ported to Chainer, step by step as in docs/porting.md.

L.Convolution2D takes NCHW input and keeps W as OIHW, as the course; L.Linear keeps W as
(out, in), like torch. ReLU, pooling and the flatten are functions, and max_pooling_2d is told to
floor as the course does.

    rosetta check docs/examples/simple_conv_net.py:SimpleConvNet \
        docs/examples/simple_conv_net_chainer.py:SimpleConvNet
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chainer_impl.compat import import_chainer
from chainer_impl.weights import load_native

chainer = import_chainer()  # the project's import: Chainer 7 on a current NumPy

import chainer.functions as F  # noqa: E402, N812 - Chainer's own short names
import chainer.links as L  # noqa: E402, N812


class SimpleConvNet(chainer.Chain):
    def __init__(self, dtype: str = "float64") -> None:
        super().__init__()
        with chainer.using_config("dtype", np.dtype(dtype)), self.init_scope():  # links: float32 otherwise
            # NOTE(framework:padding-stride): the course's conv_param, pad 0 and stride 1, given explicitly.
            self.conv1 = L.Convolution2D(1, 30, 5, stride=1, pad=0)  # W (30, 1, 5, 5): OIHW, as W1
            self.fc1 = L.Linear(30 * 12 * 12, 100)
            self.fc2 = L.Linear(100, 10)

    def forward(self, x: np.ndarray) -> chainer.Variable:
        h = F.relu(self.conv1(x))  # (N, 30, 24, 24)
        # NOTE(framework:chainer-cover-all): cover_all=True (the default) adds a window on odd sizes;
        # the course floors.
        h = F.max_pooling_2d(h, 2, stride=2, cover_all=False)  # (N, 30, 12, 12)
        h = F.reshape(h, (h.shape[0], -1))  # (N, 4320) in (C, H, W) order, as the course's Affine
        return self.fc2(F.relu(self.fc1(h)))  # the logits

    def loss_fn(self, y: chainer.Variable, t: np.ndarray) -> chainer.Variable:
        return F.softmax_cross_entropy(y, t.astype(np.int32))


def from_course(params: dict[str, np.ndarray]) -> SimpleConvNet:
    net = SimpleConvNet()
    net.conv1.W.array[...] = params["W1"]  # OIHW both: copied as it is
    net.conv1.b.array[...] = params["b1"]
    net.fc1.W.array[...] = params["W2"].T  # (in, out) -> (out, in)
    net.fc1.b.array[...] = params["b2"]
    net.fc2.W.array[...] = params["W3"].T
    net.fc2.b.array[...] = params["b3"]
    return net


def to_course(net: SimpleConvNet) -> dict[str, np.ndarray]:
    return {"W1": net.conv1.W.array, "b1": net.conv1.b.array, "W2": net.fc1.W.array.T,
            "b2": net.fc1.b.array, "W3": net.fc2.W.array.T, "b3": net.fc2.b.array}


def train_step(net: SimpleConvNet, optimizer: chainer.Optimizer, x: np.ndarray, t: np.ndarray) -> float:
    net.cleargrads()  # backward adds into every .grad
    loss = net.loss_fn(net(x), t)
    loss.backward()
    optimizer.update()
    return float(loss.array)


def train(net: SimpleConvNet, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    optimizer = chainer.optimizers.SGD(lr=lr)
    optimizer.setup(net)
    return [train_step(net, optimizer, x[idx], t[idx])
            for idx in (rng.choice(len(x), batch_size) for _ in range(iters))]


def save(net: SimpleConvNet, path: str | Path) -> None:
    chainer.serializers.save_npz(str(path), net)


def load(path: str | Path) -> SimpleConvNet:
    net = SimpleConvNet()
    load_native(net, path)  # chainer.serializers.load_npz would open the file with pickle enabled
    return net
