"""The TensorFlow/Keras port behind the canonical Adapter interface (arrays cross as canonical NumPy).

The only layout change happens here: image inputs and 4-D activations are NHWC natively, NCHW
canonically. The forward pass runs in a tf.function traced once per (mode, model) and reused for
any batch size; the gradients in tf_impl.train's compiled graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf

from rosetta.adapters.base import Adapter
from tf_impl.train import input_signature, retrace

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


class TFAdapter(Adapter):
    framework = "tf"

    def __init__(self, config: object, params: Mapping[str, np.ndarray], dtype: str = "float32"):
        super().__init__(config, params, dtype)  # type: ignore[arg-type]
        self._compiled: dict[bool, Callable[..., dict[str, tf.Tensor]]] = {}
        self._compiled_logits: Callable[..., tf.Tensor] | None = None

    # NOTE(framework:conv-layout): NCHW canonical, NHWC native, converted here and nowhere else.
    def _input(self, x: np.ndarray) -> tf.Tensor:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim == 4:
            x = np.transpose(x, NCHW_TO_NHWC)  # (N, 1, 28, 28) -> (N, 28, 28, 1)
        return tf.convert_to_tensor(np.ascontiguousarray(x))

    def _labels(self, t: np.ndarray) -> tf.Tensor:
        return tf.convert_to_tensor(np.asarray(t, dtype=np.int64))

    def _output(self, a: tf.Tensor) -> np.ndarray:
        a = a.numpy()
        return np.ascontiguousarray(np.transpose(a, NHWC_TO_NCHW) if a.ndim == 4 else a)

    def _activations(self, x: tf.Tensor, train: bool) -> dict[str, tf.Tensor]:
        if train not in self._compiled:
            def forward(x: tf.Tensor) -> dict[str, tf.Tensor]:
                return self.model.forward(x, train=train, return_activations=True)[1]
            self._compiled[train] = tf.function(forward, input_signature=input_signature(self.model)[:1],
                                                autograph=False)
        return self._compiled[train](x)

    def _logits(self, x: tf.Tensor) -> tf.Tensor:
        if self._compiled_logits is None:
            def logits(x: tf.Tensor) -> tf.Tensor:
                return self.model.forward(x, train=False)
            self._compiled_logits = tf.function(logits, input_signature=input_signature(self.model)[:1],
                                                autograph=False)
        return self._compiled_logits(x)

    def set_dropout_masks(self, masks: Mapping[str, np.ndarray] | None) -> None:
        super().set_dropout_masks(masks)
        # A keep-mask is a constant of the traced graphs: trace them again.
        self._compiled.clear()
        self._compiled_logits = None
        retrace(self.model, self.optimizer)
