"""The PyTorch port: the same MLP, CNN and DeepCNN as reference_numpy/, built from torch.nn layers.

Files and names follow docs/conventions.md; ``grep -rn "NOTE(framework)"`` lists every place where
PyTorch's defaults or conventions differ from the NumPy reference and how this port bridges it.
"""

from torch_impl.deepcnn import DeepCNN

__all__ = ["DeepCNN"]
