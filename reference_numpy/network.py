"""What MLP and CNN share: the loss with weight decay, backpropagation through ``self.layers``,
gradients by canonical name, accuracy, dropout masks. The model files keep only their layers
and their ``forward``, so they read like the other three implementations.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference_numpy.layers import BatchNormalization, SoftmaxWithLoss
from reference_numpy.weights import load_canonical
from rosetta.weights import DTYPES, ModelConfig, init_params, trainable_names

# Canonical tensor suffix -> the attribute of the layer's gradient.
GRAD_ATTRS = {"W": "dW", "b": "db", "gamma": "dgamma", "beta": "dbeta"}
# Images per forward in eval-mode predict: small enough that the CNN's activations stay in cache.
EVAL_CHUNK = 100


class Network:
    """Base of :class:`~reference_numpy.mlp.MLP` and :class:`~reference_numpy.cnn.CNN`.

    ``self.layers`` holds every layer by canonical name in forward order (each is also an
    attribute, ``model.fc1``); ``self.params`` the trainable arrays by canonical name, shared with
    the layers; ``self.last_layer`` the softmax-with-loss. ``weight_decay`` (L2, from the config)
    adds ``0.5 * wd * sum(W^2)`` to the loss; ``weight_decay_l1`` (L1, from the config) adds
    ``l1 * sum(|W|)``.
    """

    config: ModelConfig

    def __init__(self, config: ModelConfig, dtype: str | type = "float32") -> None:
        if np.dtype(dtype).name not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
        self.config = config
        self.dtype = np.dtype(dtype)
        self.weight_decay = float(config.weight_decay)
        self.weight_decay_l1 = float(config.weight_decay_l1)
        self.layers: dict[str, object] = {}
        self.params: dict[str, np.ndarray] = {}
        self.last_layer = SoftmaxWithLoss()

    # --- construction -------------------------------------------------------------------------
    def _add(self, name: str, layer: object) -> None:
        self.layers[name] = layer
        setattr(self, name, layer)

    def _zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=self.dtype)

    def _init_or_load(self, params: Mapping[str, np.ndarray] | None) -> None:
        if params is None:
            params = init_params(self.config, seed=0, scheme="he", dtype=self.dtype)
        load_canonical(self, params)

    # --- forward ------------------------------------------------------------------------------
    def forward(
        self, x: np.ndarray, train: bool = False, return_activations: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def _check_input(self, x: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != tuple(expected):
            dims = ", ".join(map(str, expected))
            raise ValueError(f"{type(self).__name__} expects input of shape (N, {dims}), got {x.shape}")
        # The one conversion: input to the model's dtype (uint8 images, or a float64 batch fed to a
        # float32 model), so nothing downstream mixes dtypes.
        return x.astype(self.dtype, copy=False)

    def predict(self, x: np.ndarray, train_flg: bool = False, batch_size: int = EVAL_CHUNK) -> np.ndarray:
        """Logits (the course's name). In eval mode ``batch_size`` images at a time: each image's
        computation is its own in eval mode, and chunks keep every intermediate in cache (the CNN's
        conv output for 1000 images is 69 MB; by 100, inference is 1.6x faster here). Train mode
        (batch statistics) runs the whole batch at once."""
        if train_flg or len(x) <= batch_size:
            return self.forward(x, train=train_flg)
        return np.concatenate([self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    # --- loss and gradient --------------------------------------------------------------------
    def decay_loss(self) -> float:
        penalty = 0.0
        for name, value in self.params.items():
            if not name.endswith(".W"):
                continue
            if self.weight_decay:
                penalty += 0.5 * self.weight_decay * float(np.sum(value * value))
            if self.weight_decay_l1:
                penalty += self.weight_decay_l1 * float(np.sum(np.abs(value)))
        return penalty

    def loss(self, x: np.ndarray, t: np.ndarray, train: bool = False) -> float:
        """Mean cross-entropy from logits plus the weight-decay penalties."""
        logits = self.forward(x, train=train)
        return self.last_layer.forward(logits, np.asarray(t)) + self.decay_loss()

    def loss_and_gradient(
        self, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray | None]:
        """Loss, gradients by canonical name (forward order), and d loss / d x if ``input_grad``."""
        loss = self.loss(x, t, train=train)
        dout = self.last_layer.backward(1.0)
        names = list(self.layers)
        for name in reversed(names[1:]):
            dout = self.layers[name].backward(dout)
        # The first layer's dx (a col2im for the CNN) is computed only when someone asked for it.
        dx = self.layers[names[0]].backward(dout, need_dx=input_grad)
        return loss, self.collect_grads(), dx

    def collect_grads(self) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        for name in trainable_names(self.config):
            layer_name, tensor = name.split(".")
            grad = getattr(self.layers[layer_name], GRAD_ATTRS[tensor])
            if tensor == "W" and self.weight_decay:
                grad = grad + self.weight_decay * self.params[name]  # d/dW of 0.5 * wd * W^2
            if tensor == "W" and self.weight_decay_l1:
                grad = grad + self.weight_decay_l1 * np.sign(self.params[name])  # d/dW of l1 * |W|
            grads[name] = grad
        return grads

    def gradient(
        self, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
    ) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], np.ndarray]:
        """The course's API: gradients by name, or ``(grads, dx)`` when ``input_grad``."""
        _, grads, dx = self.loss_and_gradient(x, t, train=train, input_grad=input_grad)
        return (grads, dx) if input_grad else grads

    def accuracy(self, x: np.ndarray, t: np.ndarray, batch_size: int = 1000) -> float:
        """Share of correct eval-mode predictions; ``t`` as labels or one-hot."""
        t = np.asarray(t)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        correct = 0
        for i in range(0, x.shape[0], batch_size):
            y = self.predict(x[i:i + batch_size])
            correct += int(np.sum(np.argmax(y, axis=1) == t[i:i + batch_size]))
        return correct / x.shape[0]

    # --- dropout and BatchNorm ----------------------------------------------------------------
    def batchnorm_layers(self) -> dict[str, BatchNormalization]:
        return {n: layer for n, layer in self.layers.items() if isinstance(layer, BatchNormalization)}
