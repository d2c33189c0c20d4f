"""The MLP (course: MultiLayerNet) as a plain ``chainer.Chain``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chainer_impl.compat import import_chainer
from chainer_impl.layers import Dropout
from chainer_impl.weights import load_canonical
from rosetta.weights import MLPConfig, init_params

chainer = import_chainer()

import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402


# [rosetta:mlp]
class MLP(chainer.Chain):
    """``fc1, [bn1], act1, [drop1], fc2, [bn2], act2, [drop2], fc3``; input (N, 784)."""

    def __init__(
        self, config: MLPConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        self.config = config or MLPConfig()
        if not isinstance(self.config, MLPConfig):
            raise TypeError(f"MLP needs a MLPConfig, got {type(self.config).__name__}")
        self.dtype = np.dtype(dtype)
        cfg = self.config
        sizes = [cfg.input_size, *cfg.hidden_sizes, cfg.output_size]
        self.n_layers = len(sizes) - 1
        self.activation = F.relu if cfg.activation == "relu" else F.sigmoid
        # NOTE(framework): links take their dtype from chainer.config.dtype (float32 by default).
        # NOTE(framework): init-defaults: Chainer's default initializer (LeCun normal W) is replaced by
        # rosetta.weights.init_params: links start at 0 (no random draw), load_canonical fills them.
        with chainer.using_config("dtype", self.dtype), self.init_scope():
            for i in range(1, len(sizes)):
                # [rosetta:dense]
                # NOTE(framework): L.Linear stores W as (out, in) and computes x @ W.T + b;
                # the canonical W is (in, out), so weights.py transposes it.
                setattr(self, f"fc{i}", L.Linear(sizes[i - 1], sizes[i], initialW=0, initial_bias=0))
                # [/rosetta:dense]
                if i == self.n_layers:
                    break
                if cfg.use_batchnorm:
                    # NOTE(framework): Chainer's decay is the contract's momentum (running = decay
                    # * running + (1 - decay) * batch, var unbiased by m / (m - 1)); its eps
                    # default is 2e-5, so it is passed explicitly.
                    setattr(self, f"bn{i}", L.BatchNormalization(
                        sizes[i], decay=cfg.bn_momentum, eps=cfg.bn_eps, dtype=self.dtype))
                if cfg.dropout_ratio > 0:
                    setattr(self, f"drop{i}", Dropout(cfg.dropout_ratio))
        # The loss layer: softmax with cross-entropy (see train.loss_fn).
        self.last_layer = F.softmax_cross_entropy
        load_canonical(self, params if params is not None else
                       init_params(cfg, seed=0, scheme="he", dtype=self.dtype))

    def forward(
        self, x: np.ndarray | chainer.Variable, train: bool = False, return_activations: bool = False,
    ) -> chainer.Variable | tuple[chainer.Variable, dict[str, chainer.Variable]]:
        cfg = self.config
        acts: dict[str, chainer.Variable] = {}
        # NOTE(framework): Chainer reads train/eval (BatchNorm, Dropout) from a global config.
        with chainer.using_config("train", train):
            h = x  # (N, 784)
            for i in range(1, self.n_layers):
                acts[f"fc{i}"] = h = self[f"fc{i}"](h)  # (N, hidden)
                if cfg.use_batchnorm:
                    acts[f"bn{i}"] = h = self[f"bn{i}"](h)
                acts[f"act{i}"] = h = self.activation(h)
                if cfg.dropout_ratio > 0:
                    acts[f"drop{i}"] = h = self[f"drop{i}"](h)
            last = f"fc{self.n_layers}"
            acts[last] = h = self[last](h)  # (N, 10)
        return (h, acts) if return_activations else h
# [/rosetta:mlp]
