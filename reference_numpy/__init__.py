"""The NumPy reference: the course's MLP, CNN and DeepCNN in plain NumPy (DLFS style), float32 or float64.

It imports no framework; the other three implementations are checked against it.

The package surface, the same names in all four implementations (docs/conventions.md).
"""

from reference_numpy.cnn import CNN, config_from_conv_param
from reference_numpy.deepcnn import DeepCNN
from reference_numpy.layers import set_dropout_masks
from reference_numpy.mlp import MLP
from reference_numpy.optimizers import OPTIMIZERS, make_optimizer, set_lr
from reference_numpy.train import loss_and_grads, loss_fn, train_step
from reference_numpy.weights import dump_canonical, load_canonical, load_native, save_native

__all__ = ["CNN", "MLP", "DeepCNN", "OPTIMIZERS", "config_from_conv_param", "dump_canonical",
           "load_canonical", "load_native", "loss_and_grads", "loss_fn", "make_optimizer", "save_native",
           "set_dropout_masks", "set_lr", "train_step"]
