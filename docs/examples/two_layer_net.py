"""A course TwoLayerNet (784-50-10), written as the course does: params W1..b2, an OrderedDict of
layers, lastLayer, predict/loss/accuracy/gradient, and a training loop of random mini-batches.
The layers and SGD are the course's (reference_numpy).

The porting guide's worked example (docs/porting.md) ports this file step by step to
two_layer_net_torch.py, two_layer_net_keras.py and two_layer_net_chainer.py.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from reference_numpy.layers import Affine, Relu, SoftmaxWithLoss
from reference_numpy.optimizers import SGD


class TwoLayerNet:
    def __init__(self, input_size: int = 784, hidden_size: int = 50, output_size: int = 10,
                 weight_init_std: float = 0.01) -> None:
        rng = np.random.default_rng(0)
        self.params = {
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),  # (in, out)
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The logits: no softmax here, SoftmaxWithLoss applies it."""
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        return self.lastLayer.forward(self.predict(x), t)

    def accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        t = t.argmax(axis=1) if t.ndim == 2 else t  # one-hot rows or integer labels
        return float(np.mean(self.predict(x).argmax(axis=1) == t))

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Backpropagation by hand: the layers in reverse, each keeping its dW and db."""
        self.loss(x, t)
        dout = self.lastLayer.backward(1.0)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        return {"W1": self.layers["Affine1"].dW, "b1": self.layers["Affine1"].db,
                "W2": self.layers["Affine2"].dW, "b2": self.layers["Affine2"].db}


def train(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    """The course's loop: a random mini-batch, the gradient, one SGD update. The batch indices come
    from a seeded generator so that every port can draw the same batches."""
    rng = np.random.default_rng(seed)
    optimizer = SGD(lr=lr)
    losses = []
    for _ in range(iters):
        idx = rng.choice(len(x), batch_size)
        grads = net.gradient(x[idx], t[idx])
        optimizer.update(net.params, grads)  # in place: the Affine layers hold the same arrays
        losses.append(net.lastLayer.loss)
    return losses


def save_params(net: TwoLayerNet, path: str | Path) -> None:
    """The params dict as plain arrays (np.savez), where the course pickles it: an .npz loads
    without running code, and `rosetta convert --from dlfs` reads either."""
    np.savez(path, **net.params)


def load_params(net: TwoLayerNet, path: str | Path) -> None:
    with np.load(path, allow_pickle=False) as f:
        for key in net.params:
            net.params[key][...] = f[key]  # in place, so the layers see the loaded values
