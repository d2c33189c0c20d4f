"""The CNN (course: SimpleConvNet) as a plain ``chainer.Chain``; input NCHW (N, 1, 28, 28)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from chainer_impl.compat import import_chainer
from chainer_impl.layers import contiguous
from chainer_impl.weights import load_canonical
from rosetta.configs import activation_store
from rosetta.weights import CNNConfig, init_params

chainer = import_chainer()

import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402


# [rosetta:cnn]
class CNN(chainer.Chain):
    """``conv1, [bn1], relu1, pool1, flatten, fc1, relu2, fc2``; shapes for the default config."""

    def __init__(
        self, config: CNNConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        self.config = config or CNNConfig()
        if not isinstance(self.config, CNNConfig):
            raise TypeError(f"CNN needs a CNNConfig, got {type(self.config).__name__}")
        self.dtype = np.dtype(dtype)
        cfg = self.config
        # NOTE(framework:model-dtype): links take their dtype from chainer.config.dtype (float32 by default).
        # NOTE(framework:init-defaults): Chainer's default initializer (LeCun normal W) is replaced by
        # rosetta.weights.init_params: links start at 0 (no random draw), load_canonical fills them.
        with chainer.using_config("dtype", self.dtype), self.init_scope():
            # [rosetta:conv]
            # Chainer's W is OIHW, the canonical layout: loaded as is.
            self.conv1 = L.Convolution2D(cfg.input_dim[0], cfg.filter_num, cfg.filter_size,
                                         stride=cfg.stride, pad=cfg.pad, initialW=0, initial_bias=0)
            # [/rosetta:conv]
            if cfg.use_batchnorm:
                # NOTE(framework:bn-momentum): decay is the contract's momentum; eps default 2e-5 -> passed.
                self.bn1 = L.BatchNormalization(cfg.filter_num, decay=cfg.bn_momentum,
                                                eps=cfg.bn_eps, dtype=self.dtype)
            # NOTE(framework:dense-layout): L.Linear stores W as (out, in); weights.py transposes it.
            self.fc1 = L.Linear(cfg.pool_output_size, cfg.hidden_size, initialW=0, initial_bias=0)
            self.fc2 = L.Linear(cfg.hidden_size, cfg.output_size, initialW=0, initial_bias=0)
        # The loss layer: softmax with cross-entropy (see train.loss_fn).
        self.last_layer = F.softmax_cross_entropy
        # [rosetta:init]
        # NOTE(framework:init-defaults): the links were built with W = 0 (no LeCun-normal draw);
        # load_canonical fills in the contract's He-normal weights, identical in all four.
        load_canonical(self, params if params is not None else
                       init_params(cfg, seed=0, scheme="he", dtype=self.dtype))
        # [/rosetta:init]

    def forward(
        self, x: np.ndarray | chainer.Variable, train: bool = False, return_activations: bool = False,
    ) -> chainer.Variable | tuple[chainer.Variable, dict[str, chainer.Variable]]:
        a: dict[str, chainer.Variable] = activation_store(return_activations)
        # NOTE(framework:train-flag): Chainer reads train/eval (BatchNorm) from a global config.
        with chainer.using_config("train", train):
            # [rosetta:im2col]
            # No im2col in user code: the link calls F.convolution_2d, which runs Chainer's own
            # im2col_cpu and a tensordot on the CPU, the course's algorithm.
            x = a["conv1"] = self.conv1(x)  # (N, 30, 24, 24)
            # [/rosetta:im2col]
            # NOTE(framework:chainer-bn-contiguous): conv1's output is an NHWC-strided view; on a
            # contiguous copy BatchNorm's float32 statistics are as accurate as the reference's,
            # and F.relu and F.max_pooling_2d run faster (the whole float32 step 95 -> 64 ms).
            x = contiguous(x)  # (N, 30, 24, 24), C-contiguous
            if self.config.use_batchnorm:
                x = a["bn1"] = self.bn1(x)  # (N, 30, 24, 24), per channel over (N, H, W)
            # NOTE(framework:chainer-functions): ReLU, reshape and pooling are functions in Chainer
            # (F.*), not links, so relu1, pool1, flatten and relu2 are names of activations here.
            x = a["relu1"] = F.relu(x)  # (N, 30, 24, 24)
            # [rosetta:pool]
            # NOTE(framework:chainer-cover-all): cover_all=False floors like the reference;
            # Chainer's default (True) would add a row and a column for odd sizes.
            x = a["pool1"] = F.max_pooling_2d(x, 2, stride=2, cover_all=False)  # (N, 30, 12, 12)
            # [/rosetta:pool]
            x = a["flatten"] = F.reshape(x, (x.shape[0], -1))  # (N, 4320) in (C, H, W) order
            x = a["fc1"] = self.fc1(x)  # (N, 100)
            x = a["relu2"] = F.relu(x)  # (N, 100)
            x = a["fc2"] = self.fc2(x)  # (N, 10)
        return (x, a) if return_activations else x
# [/rosetta:cnn]
