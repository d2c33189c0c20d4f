"""Course-style networks as a reader of the course writes them: an OrderedDict of layers, params
W1, b1, ..., ``lastLayer`` / ``last_layer``, ``predict``/``loss``/``gradient``. The layers are the
course's (forward caches, backward returns dx and sets dW/db), written out here so the checker is
tested on code it has never seen.

Knobs the gallery turns on the reference side: BatchNorm ``eps`` and ``unbiased`` running
variance, Dropout ``inverted`` scaling, the loss's ``+1e-7`` guard (the course's
``cross_entropy_error``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from reference_numpy.util import col2im, im2col


def softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout = dout.copy()
        dout[self.mask] = 0
        return dout


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class Affine:
    def __init__(self, W, b):  # noqa: N803
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SoftmaxWithLoss:
    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx / batch_size


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):  # noqa: N803
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.x = None
        self.col = None
        self.col_W = None
        self.dW = None
        self.db = None

    def forward(self, x):
        FN, C, FH, FW = self.W.shape  # noqa: N806
        N, C, H, W = x.shape  # noqa: N806
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)
        col = im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T  # noqa: N806
        out = np.dot(col, col_W) + self.b
        out = out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)
        self.x, self.col, self.col_W = x, col, col_W
        return out

    def backward(self, dout):
        FN, C, FH, FW = self.W.shape  # noqa: N806
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout).transpose(1, 0).reshape(FN, C, FH, FW)
        dcol = np.dot(dout, self.col_W.T)
        return col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)


class Pooling:
    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x = None
        self.arg_max = None

    def forward(self, x):
        N, C, H, W = x.shape  # noqa: N806
        out_h = int(1 + (H - self.pool_h) / self.stride)
        out_w = int(1 + (W - self.pool_w) / self.stride)
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)
        self.arg_max = np.argmax(col, axis=1)
        out = np.max(col, axis=1)
        self.x = x
        return out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape(dout.shape + (pool_size,))
        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


class Dropout:
    """The course's Dropout (``inverted=False``: train x * mask, test x * (1 - ratio)), or the
    frameworks' inverted form."""

    def __init__(self, dropout_ratio=0.5, inverted=True):
        self.dropout_ratio = dropout_ratio
        self.inverted = inverted
        self.mask = None

    def forward(self, x, train_flg=True):
        scale = 1.0 / (1.0 - self.dropout_ratio) if self.inverted else 1.0
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask * scale
        return x if self.inverted else x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        scale = 1.0 / (1.0 - self.dropout_ratio) if self.inverted else 1.0
        return dout * self.mask * scale


class BatchNormalization:
    """The course's BatchNorm on (N, D); ``unbiased`` stores var * m / (m - 1) in running_var as
    the frameworks do (the course stores the biased one); running_var starts at 1 (course: 0)."""

    def __init__(
        self, gamma, beta, momentum=0.9, running_mean=None, running_var=None, eps=1e-5, unbiased=True
    ):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.eps = eps
        self.unbiased = unbiased
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xc = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def forward(self, x, train_flg=True):
        if self.running_mean is None:
            N, D = x.shape  # noqa: N806
            self.running_mean = np.zeros(D)
            self.running_var = np.ones(D)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + self.eps)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc, self.xn, self.std = xc, xn, std
            stored = var * x.shape[0] / (x.shape[0] - 1) if self.unbiased else var
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * stored
        else:
            xc = x - self.running_mean
            xn = xc / np.sqrt(self.running_var + self.eps)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / self.batch_size


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, seed=0):
        rng = np.random.RandomState(seed)
        self.params = {}
        self.params["W1"] = weight_init_std * rng.randn(input_size, hidden_size)
        self.params["b1"] = 0.1 * rng.randn(hidden_size)
        self.params["W2"] = weight_init_std * 30 * rng.randn(hidden_size, output_size)
        self.params["b2"] = 0.1 * rng.randn(output_size)
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x


class SimpleConvNet:
    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},  # noqa: B006
        hidden_size=100,
        output_size=10,
        weight_init_std=0.01,
        seed=0,
    ):
        filter_num = conv_param["filter_num"]
        filter_size = conv_param["filter_size"]
        filter_pad = conv_param["pad"]
        filter_stride = conv_param["stride"]
        input_size = input_dim[1]
        conv_output_size = (input_size - filter_size + 2 * filter_pad) / filter_stride + 1
        # floor of conv_output_size / 2: the course's int(...) of a float, for odd sizes too
        pool_output_size = int(filter_num * (conv_output_size // 2) * (conv_output_size // 2))
        rng = np.random.RandomState(seed)
        self.input_dim = tuple(input_dim)
        self.params = {}
        self.params["W1"] = (
            weight_init_std * 10 * rng.randn(filter_num, input_dim[0], filter_size, filter_size)
        )
        self.params["b1"] = 0.1 * rng.randn(filter_num)
        self.params["W2"] = weight_init_std * rng.randn(pool_output_size, hidden_size)
        self.params["b2"] = 0.1 * rng.randn(hidden_size)
        self.params["W3"] = weight_init_std * 10 * rng.randn(hidden_size, output_size)
        self.params["b3"] = 0.1 * rng.randn(output_size)
        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(
            self.params["W1"], self.params["b1"], conv_param["stride"], conv_param["pad"]
        )
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.last_layer = SoftmaxWithLoss()


class MultiLayerNetExtend:
    def __init__(
        self,
        input_size,
        hidden_size_list,
        output_size,
        activation="relu",
        use_dropout=False,
        dropout_ration=0.5,
        use_batchnorm=False,
        bn_eps=1e-5,
        bn_momentum=0.9,
        bn_unbiased=True,
        dropout_inverted=True,
        seed=0,
    ):
        rng = np.random.RandomState(seed)
        self.hidden_layer_num = len(hidden_size_list)
        self.params = {}
        sizes = [input_size] + list(hidden_size_list) + [output_size]
        for idx in range(1, len(sizes)):
            self.params["W" + str(idx)] = np.sqrt(2.0 / sizes[idx - 1]) * rng.randn(
                sizes[idx - 1], sizes[idx]
            )
            self.params["b" + str(idx)] = 0.1 * rng.randn(sizes[idx])
        activation_layer = {"sigmoid": Sigmoid, "relu": Relu}
        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(
                self.params["W" + str(idx)], self.params["b" + str(idx)]
            )
            if use_batchnorm:
                self.params["gamma" + str(idx)] = 1.0 + 0.1 * rng.randn(hidden_size_list[idx - 1])
                self.params["beta" + str(idx)] = 0.1 * rng.randn(hidden_size_list[idx - 1])
                self.layers["BatchNorm" + str(idx)] = BatchNormalization(
                    self.params["gamma" + str(idx)],
                    self.params["beta" + str(idx)],
                    bn_momentum,
                    eps=bn_eps,
                    unbiased=bn_unbiased,
                )
            self.layers["Activation_function" + str(idx)] = activation_layer[activation]()
            if use_dropout:
                self.layers["Dropout" + str(idx)] = Dropout(dropout_ration, inverted=dropout_inverted)
        idx = self.hidden_layer_num + 1
        self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)], self.params["b" + str(idx)])
        self.last_layer = SoftmaxWithLoss()


class DeepConvNet:
    """conv-relu-conv-relu-pool x3, affine-relu-dropout, affine-dropout (course ch. 8)."""

    def __init__(self, input_dim=(1, 28, 28), hidden_size=50, output_size=10, seed=0):
        specs = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]  # (filter_num, pad), 3x3
        pre_node_nums = np.array(
            [1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3, 64 * 4 * 4, hidden_size]
        )
        scales = np.sqrt(2.0 / pre_node_nums)
        rng = np.random.RandomState(seed)
        self.input_dim = tuple(input_dim)
        self.params = {}
        channels = input_dim[0]
        for idx, (fn, _) in enumerate(specs):
            self.params["W" + str(idx + 1)] = scales[idx] * rng.randn(fn, channels, 3, 3)
            self.params["b" + str(idx + 1)] = 0.1 * rng.randn(fn)
            channels = fn
        self.params["W7"] = scales[6] * rng.randn(64 * 4 * 4, hidden_size)
        self.params["b7"] = 0.1 * rng.randn(hidden_size)
        self.params["W8"] = scales[7] * rng.randn(hidden_size, output_size)
        self.params["b8"] = 0.1 * rng.randn(output_size)
        self.layers = []
        for idx, (_, pad) in enumerate(specs):
            self.layers.append(
                Convolution(self.params["W" + str(idx + 1)], self.params["b" + str(idx + 1)], 1, pad)
            )
            self.layers.append(Relu())
            if idx % 2 == 1:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        self.layers.append(Affine(self.params["W7"], self.params["b7"]))
        self.layers.append(Relu())
        self.layers.append(Dropout(0.5))
        self.layers.append(Affine(self.params["W8"], self.params["b8"]))
        self.layers.append(Dropout(0.5))
        self.last_layer = SoftmaxWithLoss()


def two_layer_net() -> TwoLayerNet:
    """The course TwoLayerNet(784, 50, 10) (for the command-line tests)."""
    return TwoLayerNet(784, 50, 10)
