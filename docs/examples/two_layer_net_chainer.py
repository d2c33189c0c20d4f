"""two_layer_net.py ported to Chainer, step by step as in docs/porting.md.

L.Linear keeps W as (out, in), like torch. Chainer's softmax_cross_entropy takes the logits and
int32 labels; loss.backward() adds into every .grad, so the step clears them first.

    rosetta check docs/examples/two_layer_net.py:TwoLayerNet \
        docs/examples/two_layer_net_chainer.py:TwoLayerNet
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chainer_impl.compat import import_chainer
from chainer_impl.weights import load_native

chainer = import_chainer()  # the project's import: Chainer 7 on a current NumPy

import chainer.functions as F  # noqa: E402, N812 - Chainer's own short names
import chainer.links as L  # noqa: E402, N812


class TwoLayerNet(chainer.Chain):
    def __init__(self, dtype: str = "float64") -> None:
        super().__init__()
        with chainer.using_config("dtype", np.dtype(dtype)), self.init_scope():  # links: float32 otherwise
            self.fc1 = L.Linear(784, 50)
            self.fc2 = L.Linear(50, 10)

    def forward(self, x: np.ndarray) -> chainer.Variable:
        return self.fc2(F.relu(self.fc1(x)))  # the logits

    def loss_fn(self, y: chainer.Variable, t: np.ndarray) -> chainer.Variable:
        return F.softmax_cross_entropy(y, t.astype(np.int32))


def from_course(params: dict[str, np.ndarray]) -> TwoLayerNet:
    net = TwoLayerNet()
    net.fc1.W.array[...] = params["W1"].T  # (in, out) -> (out, in)
    net.fc1.b.array[...] = params["b1"]
    net.fc2.W.array[...] = params["W2"].T
    net.fc2.b.array[...] = params["b2"]
    return net


def to_course(net: TwoLayerNet) -> dict[str, np.ndarray]:
    return {"W1": net.fc1.W.array.T, "b1": net.fc1.b.array, "W2": net.fc2.W.array.T, "b2": net.fc2.b.array}


def train_step(net: TwoLayerNet, optimizer: chainer.Optimizer, x: np.ndarray, t: np.ndarray) -> float:
    net.cleargrads()
    loss = net.loss_fn(net(x), t)
    loss.backward()
    optimizer.update()
    return float(loss.array)


def train(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    optimizer = chainer.optimizers.SGD(lr=lr)
    optimizer.setup(net)
    return [train_step(net, optimizer, x[idx], t[idx])
            for idx in (rng.choice(len(x), batch_size) for _ in range(iters))]


def save(net: TwoLayerNet, path: str | Path) -> None:
    chainer.serializers.save_npz(str(path), net)


def load(path: str | Path) -> TwoLayerNet:
    net = TwoLayerNet()
    load_native(net, path)  # chainer.serializers.load_npz would open the file with pickle enabled
    return net
