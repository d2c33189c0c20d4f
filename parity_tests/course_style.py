"""The course's own networks, inference only, written the way the book writes them: im2col
convolution, ``Pooling`` by im2col and max, ``Affine`` reshaping to ``(N, -1)``, ``Dropout``
scaling by ``1 - dropout_ratio`` at test time, ``BatchNormalization`` with eps ``10e-7``.

The tests check the imported course files against these, never against the project's models:
this is what the book's ``SimpleConvNet``, ``DeepConvNet`` and ``MultiLayerNetExtend`` compute.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def im2col(input_data: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    N, C, H, W = input_data.shape  # noqa: N806 - the book's names
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w), dtype=input_data.dtype)
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


class Convolution:
    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0) -> None:  # noqa: N803
        self.W, self.b, self.stride, self.pad = W, b, stride, pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        FN, C, FH, FW = self.W.shape  # noqa: N806
        N, C, H, W = x.shape  # noqa: N806
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)
        col = im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T  # noqa: N806
        out = np.dot(col, col_W) + self.b
        return out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)


class Pooling:
    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        N, C, H, W = x.shape  # noqa: N806
        out_h = int(1 + (H - self.pool_h) / self.stride)
        out_w = int(1 + (W - self.pool_w) / self.stride)
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)
        out = np.max(col, axis=1)
        return out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)


class Affine:
    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:  # noqa: N803
        self.W, self.b = W, b

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = x.reshape(x.shape[0], -1)
        return np.dot(x, self.W) + self.b


class Relu:
    def forward(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[x <= 0] = 0
        return out


class Sigmoid:
    def forward(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))


class Dropout:
    def __init__(self, dropout_ratio: float = 0.5) -> None:
        self.dropout_ratio = dropout_ratio

    def forward(self, x: np.ndarray, train_flg: bool = False) -> np.ndarray:
        assert not train_flg, "inference only"
        return x * (1.0 - self.dropout_ratio)


class BatchNormalization:
    """Inference with given running statistics (the course's layer keeps them outside params)."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                 running_var: np.ndarray) -> None:
        self.gamma, self.beta = gamma, beta
        self.running_mean, self.running_var = running_mean, running_var

    def forward(self, x: np.ndarray, train_flg: bool = False) -> np.ndarray:
        xc = x - self.running_mean
        xn = xc / np.sqrt(self.running_var + 10e-7)
        return self.gamma * xn + self.beta


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def predict_ch03(network: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """ch03 neuralnet_mnist.py's predict: sigmoid, sigmoid, softmax."""
    a1 = np.dot(x, network["W1"]) + network["b1"]
    z1 = Sigmoid().forward(a1)
    a2 = np.dot(z1, network["W2"]) + network["b2"]
    z2 = Sigmoid().forward(a2)
    a3 = np.dot(z2, network["W3"]) + network["b3"]
    return softmax(a3)


class SimpleConvNet:
    """ch07 simple_convnet.py: Conv1 - Relu1 - Pool1 - Affine1 - Relu2 - Affine2."""

    def __init__(self, params: Mapping[str, np.ndarray], conv_param: Mapping[str, int] | None = None) -> None:
        conv_param = conv_param or {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
        p = params
        self.layers = [Convolution(p["W1"], p["b1"], conv_param["stride"], conv_param["pad"]), Relu(),
                       Pooling(pool_h=2, pool_w=2, stride=2), Affine(p["W2"], p["b2"]), Relu(),
                       Affine(p["W3"], p["b3"])]

    def predict(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x


class DeepConvNet:
    """ch08 deep_convnet.py: conv-relu-conv-relu-pool x3, affine-relu-dropout, affine-dropout."""

    CONV_PARAMS = ({"pad": 1, "stride": 1}, {"pad": 1, "stride": 1}, {"pad": 1, "stride": 1},
                   {"pad": 2, "stride": 1}, {"pad": 1, "stride": 1}, {"pad": 1, "stride": 1})

    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        p = params
        layers: list[object] = []
        for i, cp in enumerate(self.CONV_PARAMS, 1):
            layers += [Convolution(p[f"W{i}"], p[f"b{i}"], cp["stride"], cp["pad"]), Relu()]
            if i % 2 == 0:
                layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        layers += [Affine(p["W7"], p["b7"]), Relu(), Dropout(0.5), Affine(p["W8"], p["b8"]), Dropout(0.5)]
        self.layers = layers

    def predict(self, x: np.ndarray, train_flg: bool = False) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, train_flg) if isinstance(layer, Dropout) else layer.forward(x)
        return x


class MultiLayerNetExtend:
    """ch06 multi_layer_net_extend.py, inference: (Affine, [BatchNorm], activation, [Dropout]) x n."""

    def __init__(self, params: Mapping[str, np.ndarray], activation: str, running: Mapping[str, np.ndarray],
                 dropout_ration: float = 0.0) -> None:
        n = sum(1 for k in params if k.startswith("W"))
        self.layers: list[object] = []
        for i in range(1, n):
            self.layers.append(Affine(params[f"W{i}"], params[f"b{i}"]))
            if f"gamma{i}" in params:
                self.layers.append(BatchNormalization(params[f"gamma{i}"], params[f"beta{i}"],
                                                      running[f"mean{i}"], running[f"var{i}"]))
            self.layers.append(Relu() if activation == "relu" else Sigmoid())
            if dropout_ration > 0:
                self.layers.append(Dropout(dropout_ration))
        self.layers.append(Affine(params[f"W{n}"], params[f"b{n}"]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x


def predict_in_batches(predict, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:  # noqa: ANN001
    """The argmax of ``predict`` over ``x``, as the book's accuracy() does (batches of 100+)."""
    return np.concatenate([np.argmax(predict(x[i:i + batch_size]), axis=1)
                           for i in range(0, len(x), batch_size)])
