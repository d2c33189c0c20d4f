"""The TensorFlow/Keras port: the same models as reference_numpy/, built from Keras layers."""

from tf_impl.deepcnn import DeepCNN

__all__ = ["DeepCNN"]
