"""The NumPy reference: the course's MLP, CNN and DeepCNN in plain NumPy (DLFS style), float32 or float64.

It imports no framework; the other three implementations are checked against it.
"""

from reference_numpy.cnn import CNN, config_from_conv_param
from reference_numpy.deepcnn import DeepCNN
from reference_numpy.mlp import MLP
from reference_numpy.optimizers import make_optimizer
from reference_numpy.weights import dump_canonical, load_canonical

__all__ = ["CNN", "MLP", "DeepCNN", "config_from_conv_param", "dump_canonical", "load_canonical",
           "make_optimizer"]
