"""The deep CNN (course: DeepConvNet) as a plain ``chainer.Chain``; input NCHW (N, 1, 28, 28)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chainer_impl.compat import import_chainer
from chainer_impl.layers import Dropout
from chainer_impl.weights import load_canonical
from rosetta.configs import activation_store
from rosetta.weights import DeepCNNConfig, init_params

chainer = import_chainer()

import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402


# [rosetta:deepcnn]
class DeepCNN(chainer.Chain):
    """``conv1, relu1, conv2, relu2, pool1, conv3, relu3, conv4, relu4, pool2, conv5, relu5, conv6,
    relu6, pool3, flatten, fc1, relu7, [drop1], fc2, [drop2]``; shapes for the default config."""

    def __init__(
        self, config: DeepCNNConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        self.config = config or DeepCNNConfig()
        if not isinstance(self.config, DeepCNNConfig):
            raise TypeError(f"DeepCNN needs a DeepCNNConfig, got {type(self.config).__name__}")
        self.dtype = np.dtype(dtype)
        cfg = self.config
        # NOTE(framework:model-dtype): links take their dtype from chainer.config.dtype (float32 by default).
        # NOTE(framework:init-defaults): Chainer's default initializer (LeCun normal W) is replaced by
        # rosetta.weights.init_params: links start at 0 (no random draw), load_canonical fills them.
        with chainer.using_config("dtype", self.dtype), self.init_scope():
            c_in = cfg.input_dim[0]
            for i, (fn, k, pad, stride) in enumerate(cfg.conv_params, 1):
                # Chainer's W is OIHW, the canonical layout: loaded as is.
                setattr(self, f"conv{i}", L.Convolution2D(c_in, fn, k, stride=stride, pad=pad,
                                                          initialW=0, initial_bias=0))
                c_in = fn
            # NOTE(framework:dense-layout): L.Linear stores W as (out, in); weights.py transposes it.
            self.fc1 = L.Linear(cfg.pool_output_size, cfg.hidden_size, initialW=0, initial_bias=0)
            self.fc2 = L.Linear(cfg.hidden_size, cfg.output_size, initialW=0, initial_bias=0)
            if cfg.dropout_ratio > 0:
                # NOTE(framework:dropout-scaling): F.dropout is inverted only; the port's Dropout
                # also computes the course's form (config.dropout_mode).
                self.drop1 = Dropout(cfg.dropout_ratio, cfg.dropout_mode)
                self.drop2 = Dropout(cfg.dropout_ratio, cfg.dropout_mode)
        # The loss layer: softmax with cross-entropy (see train.loss_fn).
        self.last_layer = F.softmax_cross_entropy
        load_canonical(self, params if params is not None else
                       init_params(cfg, seed=0, scheme="he", dtype=self.dtype))

    def forward(
        self, x: np.ndarray | chainer.Variable, train: bool = False, return_activations: bool = False,
    ) -> chainer.Variable | tuple[chainer.Variable, dict[str, chainer.Variable]]:
        a: dict[str, chainer.Variable] = activation_store(return_activations)
        # NOTE(framework:train-flag): Chainer reads train/eval (Dropout) from a global config.
        with chainer.using_config("train", train):
            # NOTE(framework:chainer-functions): ReLU, reshape and pooling are functions in Chainer
            # (F.*), not links, so relu*, pool* and flatten are names of activations here.
            x = a["conv1"] = self.conv1(x)  # (N, 16, 28, 28)
            x = a["relu1"] = F.relu(x)  # (N, 16, 28, 28)
            x = a["conv2"] = self.conv2(x)  # (N, 16, 28, 28)
            x = a["relu2"] = F.relu(x)  # (N, 16, 28, 28)
            # NOTE(framework:chainer-cover-all): cover_all=False floors like the reference;
            # Chainer's default (True) would add a row and a column for odd sizes.
            x = a["pool1"] = F.max_pooling_2d(x, 2, stride=2, cover_all=False)  # (N, 16, 14, 14)
            x = a["conv3"] = self.conv3(x)  # (N, 32, 14, 14)
            x = a["relu3"] = F.relu(x)  # (N, 32, 14, 14)
            x = a["conv4"] = self.conv4(x)  # (N, 32, 16, 16), pad 2
            x = a["relu4"] = F.relu(x)  # (N, 32, 16, 16)
            x = a["pool2"] = F.max_pooling_2d(x, 2, stride=2, cover_all=False)  # (N, 32, 8, 8)
            x = a["conv5"] = self.conv5(x)  # (N, 64, 8, 8)
            x = a["relu5"] = F.relu(x)  # (N, 64, 8, 8)
            x = a["conv6"] = self.conv6(x)  # (N, 64, 8, 8)
            x = a["relu6"] = F.relu(x)  # (N, 64, 8, 8)
            x = a["pool3"] = F.max_pooling_2d(x, 2, stride=2, cover_all=False)  # (N, 64, 4, 4)
            x = a["flatten"] = F.reshape(x, (x.shape[0], -1))  # (N, 1024) in (C, H, W) order
            x = a["fc1"] = self.fc1(x)  # (N, 50)
            x = a["relu7"] = F.relu(x)  # (N, 50)
            if self.config.dropout_ratio > 0:
                x = a["drop1"] = self.drop1(x)  # (N, 50)
            x = a["fc2"] = self.fc2(x)  # (N, 10)
            if self.config.dropout_ratio > 0:
                x = a["drop2"] = self.drop2(x)  # (N, 10), dropout on the logits (the book's)
        return (x, a) if return_activations else x
# [/rosetta:deepcnn]
