"""The MLP (course: MultiLayerNet) as a plain ``chainer.Chain``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chainer_impl.compat import import_chainer
from chainer_impl.layers import Dropout
from chainer_impl.weights import load_canonical
from rosetta.configs import activation_store
from rosetta.weights import MLPConfig, init_params

chainer = import_chainer()

import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402

# [rosetta:activations]
# NOTE(framework:chainer-functions): activations are functions (F.relu), not links.
ACTIVATIONS = {"relu": F.relu, "sigmoid": F.sigmoid}
# [/rosetta:activations]


# [rosetta:mlp]
class MLP(chainer.Chain):
    """``fc1, [bn1], act1, [drop1], fc2, [bn2], act2, [drop2], fc3, [out_act]``; input ``(N, 784)``."""

    def __init__(
        self, config: MLPConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLP needs an MLPConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = np.dtype(dtype)
        sizes = config.sizes
        n_affine = len(sizes) - 1
        self.layer_names: list[str] = []
        # NOTE(framework:model-dtype): links take their dtype from chainer.config.dtype (float32
        # by default): the model dtype is set for the construction only.
        # NOTE(framework:init-defaults): Chainer's default initializer (LeCun normal W) is
        # replaced by rosetta.weights.init_params: links start at 0, load_canonical fills them.
        with chainer.using_config("dtype", self.dtype), self.init_scope():
            for i in range(1, n_affine + 1):
                # [rosetta:dense]
                # NOTE(framework:dense-layout): L.Linear stores W as (out, in) and computes
                # x @ W.T + b; the canonical W is (in, out), so weights.py transposes it.
                self._add(f"fc{i}", L.Linear(sizes[i - 1], sizes[i], initialW=0, initial_bias=0))
                # [/rosetta:dense]
                if i == n_affine:
                    break  # the last affine layer feeds the loss
                # [rosetta:batchnorm]
                if config.use_batchnorm:
                    # NOTE(framework:bn-momentum): Chainer's decay is the contract's momentum
                    # (running = decay * running + (1 - decay) * batch); eps is passed (bn-eps).
                    self._add(f"bn{i}", L.BatchNormalization(
                        sizes[i], decay=config.bn_momentum, eps=config.bn_eps, dtype=self.dtype))
                # [/rosetta:batchnorm]
                # NOTE(framework:chainer-functions): activations are functions (F.relu), not links.
                self._add(f"act{i}", ACTIVATIONS[config.activation])
                if config.dropout_ratio > 0:
                    self._add(f"drop{i}", Dropout(config.dropout_ratio, config.dropout_mode))
        if config.output_activation != "identity":
            self._add("out_act", ACTIVATIONS[config.output_activation])  # before the softmax
        # Softmax with cross-entropy on the logits, mean over the batch (see train.loss_fn).
        self.last_layer = F.softmax_cross_entropy
        load_canonical(self, params if params is not None else
                       init_params(config, seed=0, scheme="he", dtype=self.dtype))

    def _add(self, name: str, layer: object) -> None:
        setattr(self, name, layer)  # a link inside init_scope is registered as a child
        self.layer_names.append(name)

    def forward(
        self, x: np.ndarray | chainer.Variable, train: bool = False, return_activations: bool = False,
    ) -> chainer.Variable | tuple[chainer.Variable, dict[str, chainer.Variable]]:
        """Logits (N, K), or ``(logits, activations)`` with every layer's output by name."""
        # NOTE(framework:train-flag): Chainer reads train/eval (BatchNorm, Dropout) from a global
        # config; the contract's per-call ``train`` argument sets it for this forward only.
        a: dict[str, chainer.Variable] = activation_store(return_activations)
        with chainer.using_config("train", train):
            # One layer per iteration, in forward order (the course's OrderedDict loop).
            for name in self.layer_names:
                x = a[name] = getattr(self, name)(x)  # (N, size of the layer)
        return (x, a) if return_activations else x
# [/rosetta:mlp]
