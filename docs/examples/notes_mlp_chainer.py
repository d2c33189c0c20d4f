"""The course notes' Chainer program (the MLP part): 784-100-100-10 with lazily sized layers,
ReLU, ReLU and a sigmoid on the output before F.softmax_cross_entropy; Adam with Chainer's
defaults; batches of 100 in order, no shuffling.

Check a migration against it: ``rosetta check docs/examples/notes_mlp_chainer.py:model
docs/examples/notes_mlp_torch.py:model`` (see README.md here).
"""

from __future__ import annotations

import numpy as np

from chainer_impl.compat import import_chainer

chainer = import_chainer()

import chainer.functions as F  # noqa: E402, N812
import chainer.links as L  # noqa: E402, N812


class NN(chainer.Chain):
    def __init__(self, n_units: int, n_out: int) -> None:
        super().__init__()
        with self.init_scope():
            self.l1 = L.Linear(None, n_units)
            self.l2 = L.Linear(None, n_units)
            self.l3 = L.Linear(None, n_out)

    def __call__(self, x):  # noqa: ANN001, ANN204 - the notes override __call__
        h1 = F.relu(self.l1(x))
        h2 = F.relu(self.l2(h1))
        return F.sigmoid(self.l3(h2))


def model() -> NN:
    return NN(100, 10)


def train(x: np.ndarray, t: np.ndarray, epochs: int = 1, batch: int = 100) -> NN:
    """The notes' loop: Adam (Chainer's defaults), batches in order, softmax cross-entropy."""
    net = model()
    optimizer = chainer.optimizers.Adam()
    optimizer.setup(net)
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            y = net(x[i:i + batch])
            loss = F.softmax_cross_entropy(y, t[i:i + batch].astype(np.int32))
            net.cleargrads()
            loss.backward()
            optimizer.update()
    return net
