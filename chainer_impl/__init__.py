"""The Chainer port: the same models as reference_numpy/, built from Chainer links and functions."""

from chainer_impl.deepcnn import DeepCNN

__all__ = ["DeepCNN"]
