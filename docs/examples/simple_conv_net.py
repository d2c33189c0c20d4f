"""A course SimpleConvNet (conv 30x5x5, ReLU, 2x2 max-pool, affine 100, ReLU, affine 10), written
as the course does: params W1..b3, an OrderedDict of layers, last_layer,
predict/loss/accuracy/gradient, and the training loop of two_layer_net.py. The layers and SGD are
the course's (reference_numpy); the convolution and the pooling take the course's im2col/col2im
route.

The porting guide's worked example (docs/porting.md, "SimpleConvNet: what changes") ports this
file to simple_conv_net_torch.py, simple_conv_net_keras.py and simple_conv_net_chainer.py.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from reference_numpy.layers import Affine, Convolution, MaxPooling, Relu, SoftmaxWithLoss
from reference_numpy.optimizers import SGD


class SimpleConvNet:
    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28), filter_num: int = 30,
                 filter_size: int = 5, pad: int = 0, stride: int = 1, hidden_size: int = 100,
                 output_size: int = 10, weight_init_std: float = 0.01) -> None:
        conv_output_size = (input_dim[1] - filter_size + 2 * pad) // stride + 1  # 24
        pool_output_size = filter_num * (conv_output_size // 2) ** 2  # 30 * 12 * 12, (C, H, W) rows
        rng = np.random.default_rng(0)
        self.input_dim = input_dim  # (C, H, W): the shape `rosetta check` feeds both networks
        self.params = {
            "W1": weight_init_std * rng.standard_normal((filter_num, input_dim[0], filter_size,
                                                         filter_size)),  # OIHW
            "b1": np.zeros(filter_num),
            "W2": weight_init_std * rng.standard_normal((pool_output_size, hidden_size)),  # (in, out)
            "b2": np.zeros(hidden_size),
            "W3": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b3": np.zeros(output_size),
        }
        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(self.params["W1"], self.params["b1"], stride, pad,
                                           route="course")  # im2col, one GEMM, col2im
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = MaxPooling(pool_h=2, pool_w=2, stride=2,
                                          route="course")  # the course's Pooling: im2col, argmax
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])  # flattens (N, C, H, W)
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The logits of (N, C, H, W) images: no softmax here, SoftmaxWithLoss applies it."""
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        t = t.argmax(axis=1) if t.ndim == 2 else t  # one-hot rows or integer labels
        return float(np.mean(self.predict(x).argmax(axis=1) == t))

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Backpropagation by hand: the layers in reverse, each with parameters keeping dW and db."""
        self.loss(x, t)
        dout = self.last_layer.backward(1.0)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        grads = {}
        for i, name in enumerate(("Conv1", "Affine1", "Affine2"), start=1):
            grads[f"W{i}"], grads[f"b{i}"] = self.layers[name].dW, self.layers[name].db
        return grads


def train(net: SimpleConvNet, x: np.ndarray, t: np.ndarray, iters: int = 100, batch_size: int = 100,
          lr: float = 0.1, seed: int = 0) -> list[float]:
    """two_layer_net.py's loop: the same seeded batches, so every port can draw them too."""
    rng = np.random.default_rng(seed)
    optimizer = SGD(lr=lr)
    losses = []
    for _ in range(iters):
        idx = rng.choice(len(x), batch_size)
        grads = net.gradient(x[idx], t[idx])
        optimizer.update(net.params, grads)  # in place: the layers hold the same arrays
        losses.append(net.last_layer.loss)
    return losses


def save_params(net: SimpleConvNet, path: str | Path) -> None:
    """The params dict as plain arrays (np.savez), where the course pickles it."""
    np.savez(path, **net.params)


def load_params(net: SimpleConvNet, path: str | Path) -> None:
    with np.load(path, allow_pickle=False) as f:
        for key in net.params:
            net.params[key][...] = f[key]  # in place, so the layers see the loaded values
