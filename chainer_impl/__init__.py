"""

The package surface, the same names in all four implementations (docs/conventions.md).
"""

from chainer_impl.cnn import CNN
from chainer_impl.deepcnn import DeepCNN
from chainer_impl.layers import set_dropout_masks
from chainer_impl.mlp import MLP
from chainer_impl.optimizers import OPTIMIZERS, make_optimizer, set_lr
from chainer_impl.train import loss_and_grads, loss_fn, train_step
from chainer_impl.weights import dump_canonical, load_canonical, load_native, save_native

__all__ = ["CNN", "MLP", "DeepCNN", "OPTIMIZERS", "dump_canonical", "load_canonical", "load_native",
           "loss_and_grads", "loss_fn", "make_optimizer", "save_native", "set_dropout_masks", "set_lr",
           "train_step"]
