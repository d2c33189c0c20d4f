"""The TensorFlow/Keras port behind the canonical Adapter interface (arrays cross as canonical NumPy).

The only layout change happens here: the CNN's input and its 4-D activations are NHWC natively,
NCHW canonically. Every computation runs in a tf.function traced once per (mode, model) and
reused for any batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf

from rosetta.adapters.base import Adapter, optimizer_hparams
from rosetta.weights import MLPConfig, ModelConfig, trainable_names
from tf_impl.cnn import CNN
from tf_impl.layers import Dropout
from tf_impl.mlp import MLP
from tf_impl.optimizers import Optimizer, make_optimizer
from tf_impl.train import input_signature, loss_fn, train_step
from tf_impl.weights import conversions, dump_canonical, load_canonical, to_canonical

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


class TFAdapter(Adapter):
    framework = "tf"

    def __init__(self, config: ModelConfig, params: Mapping[str, np.ndarray], dtype: str = "float32"):
        super().__init__(config, params, dtype)
        model_class = MLP if isinstance(config, MLPConfig) else CNN
        self.model = model_class(config, params=self._canonical(params), dtype=self.dtype.name)
        self.optimizer: Optimizer | None = None
        self._trainable = trainable_names(config)
        variables = {name: var for name, var, _ in conversions(self.model)}
        self._variables = [variables[n] for n in self._trainable]
        self._compiled: dict[tuple[str, bool, bool], Callable[..., object]] = {}

    # --- conversions at the boundary ----------------------------------------------------------
    def _input(self, x: np.ndarray) -> tf.Tensor:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim == 4:
            x = np.transpose(x, NCHW_TO_NHWC)  # (N, 1, 28, 28) -> (N, 28, 28, 1)
        return tf.convert_to_tensor(np.ascontiguousarray(x))

    @staticmethod
    def _labels(t: np.ndarray) -> tf.Tensor:
        return tf.convert_to_tensor(np.asarray(t, dtype=np.int64))

    @staticmethod
    def _output(a: tf.Tensor) -> np.ndarray:
        a = a.numpy()
        return np.ascontiguousarray(np.transpose(a, NHWC_TO_NCHW) if a.ndim == 4 else a)

    def _function(self, kind: str, train: bool, input_grad: bool = False) -> Callable[..., object]:
        """The compiled forward or gradient function for this mode (traced on first use)."""
        key = (kind, train, input_grad)
        if key not in self._compiled:
            x_spec, t_spec = input_signature(self.model)
            if kind == "forward":
                def forward(x: tf.Tensor) -> dict[str, tf.Tensor]:
                    return self.model.forward(x, train=train, return_activations=True)[1]
                self._compiled[key] = tf.function(forward, input_signature=[x_spec])
            else:
                def grads(x: tf.Tensor, t: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        loss = loss_fn(self.model, self.model(x, training=train), t)
                    sources = [x, *self._variables] if input_grad else self._variables
                    return loss, tape.gradient(loss, sources)
                self._compiled[key] = tf.function(grads, input_signature=[x_spec, t_spec])
        return self._compiled[key]

    # --- parameters ---------------------------------------------------------------------------
    def load_params(self, params: Mapping[str, np.ndarray]) -> None:
        load_canonical(self.model, self._canonical(params))

    def params(self) -> dict[str, np.ndarray]:
        return dump_canonical(self.model)

    # --- computation --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> dict[str, np.ndarray]:
        activations = self._function("forward", train)(self._input(x))
        # Order of the model's forward; 4-D activations go NHWC -> NCHW.
        return {name: self._output(a) for name, a in activations.items()}

    def loss_and_grads(
        self, x: np.ndarray, t: np.ndarray, train: bool = True, input_grad: bool = False,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray | None]:
        loss, grads = self._function("grads", train, input_grad)(self._input(x), self._labels(t))
        dx = None
        if input_grad:
            dx = self._output(grads[0])
            grads = grads[1:]
        named = {n: to_canonical(n, g.numpy(), self.model)
                 for n, g in zip(self._trainable, grads, strict=True)}
        return float(loss), named, dx

    def set_optimizer(self, name: str, **hparams: float) -> None:
        self.optimizer = make_optimizer(name, self.model, **optimizer_hparams(name, **hparams))
        self.optimizer_name = name

    def set_lr(self, lr: float) -> None:
        if self.optimizer is None:
            raise RuntimeError("call set_optimizer(name, **hparams) before set_lr")
        # A variable of the compiled step: no retrace. Momentum's v is the course's velocity
        # itself, so unlike torch's buffer it needs no rescaling.
        self.optimizer.lr = lr

    def train_step(self, x: np.ndarray, t: np.ndarray) -> float:
        if self.optimizer is None:
            raise RuntimeError("call set_optimizer(name, **hparams) before train_step")
        return train_step(self.model, self.optimizer, self._input(x), self._labels(t))

    def set_dropout_masks(self, masks: Mapping[str, np.ndarray] | None) -> None:
        layers = {n: getattr(self.model, n) for n in getattr(self.model, "layer_names", [])
                  if isinstance(getattr(self.model, n), Dropout)}
        if masks is not None:
            unknown = set(masks) - set(layers)
            if unknown:
                raise KeyError(f"no dropout layer {sorted(unknown)}; the model has {sorted(layers)}")
        for name, layer in layers.items():
            mask = None if masks is None or name not in masks else masks[name]
            layer.keep_mask = None if mask is None else np.array(mask, dtype=bool)
        # A keep-mask is a constant of the traced graphs: trace them again.
        self._compiled.clear()
        if self.optimizer is not None:
            self.optimizer.compiled_step = None
