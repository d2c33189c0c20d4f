"""The PyTorch port: the same MLP and CNN as reference_numpy/, built from torch.nn layers.

Files and names follow docs/conventions.md; ``grep -rn "NOTE(framework:SLUG)"`` lists every place where
PyTorch's defaults or conventions differ from the NumPy reference and how this port bridges it.

The package surface, the same names in all four implementations (docs/conventions.md).
"""

from torch_impl.cnn import CNN
from torch_impl.deepcnn import DeepCNN
from torch_impl.layers import set_dropout_masks
from torch_impl.mlp import MLP
from torch_impl.optimizers import OPTIMIZERS, make_optimizer, set_lr
from torch_impl.train import loss_and_grads, loss_fn, train_step
from torch_impl.weights import dump_canonical, load_canonical, load_native, save_native

__all__ = ["CNN", "MLP", "DeepCNN", "OPTIMIZERS", "dump_canonical", "load_canonical", "load_native",
           "loss_and_grads", "loss_fn", "make_optimizer", "save_native", "set_dropout_masks", "set_lr",
           "train_step"]
