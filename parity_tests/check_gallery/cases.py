"""The gallery: (reference, port) pairs, each with the cause ``rosetta check`` must name (its
porting-guide slug) and the reference layer where it must find it, or None for a correct port.

Ports are built lazily (the frameworks import on first use), so one case's test imports only its
framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from check_gallery import course
from reference_numpy.layers import SoftmaxWithLoss


@dataclass(frozen=True)
class Case:
    id: str
    difference: str  # the gallery table's row
    framework: str  # torch | keras | chainer
    reference: Callable[[], Any]
    port: Callable[[], Any]
    slug: str | None  # None: a correct port, the check must pass
    where: str = ""  # a substring of the diagnosis' 'where'


def two(hidden: int = 50, exact_loss: bool = False) -> course.TwoLayerNet:
    net = course.TwoLayerNet(784, hidden, 10)
    if exact_loss:
        net.lastLayer = SoftmaxWithLoss()  # log-sum-exp, no +1e-7
    return net


def two_exact() -> course.TwoLayerNet:
    return two(exact_loss=True)


def cnn(filter_size: int = 5) -> course.SimpleConvNet:
    return course.SimpleConvNet(
        conv_param={"filter_num": 30, "filter_size": filter_size, "pad": 0, "stride": 1}
    )


def mlp_ext(**kw: Any) -> Callable[[], course.MultiLayerNetExtend]:
    return lambda: course.MultiLayerNetExtend(784, [20, 20], 10, **kw)


def notes_reference() -> Any:
    from check_gallery.chainer_ports import NotesNN

    return NotesNN()


def tp(name: str, **kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        from torch import nn

        from check_gallery import torch_ports

        if kw.get("criterion") == "sum":
            kw["criterion"] = nn.CrossEntropyLoss(reduction="sum")
        elif kw.get("criterion") == "smooth":
            kw["criterion"] = nn.CrossEntropyLoss(label_smoothing=0.1)
        elif kw.get("criterion") == "guard":
            kw["criterion"] = torch_ports.guard_loss
        return getattr(torch_ports, name)(**kw)

    return make


def kp(name: str, **kw: Any) -> Callable[[], Any]:
    def make(dtype: str = "float64") -> Any:
        import keras

        from check_gallery import keras_ports

        if kw.get("loss") == "sum":
            kw["loss"] = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="sum", dtype=dtype
            )
        elif kw.get("loss") == "smooth":
            kw["loss"] = keras_ports.smoothed_loss
        elif kw.get("loss") == "guard":
            kw["loss"] = keras_ports.guard_loss
        return getattr(keras_ports, name)(dtype=dtype, **kw)

    return make


def cp(name: str, **kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        from check_gallery import chainer_ports

        if kw.get("lossfun") == "sum":
            kw["lossfun"] = chainer_ports.sum_loss
        elif kw.get("lossfun") == "guard":
            kw["lossfun"] = chainer_ports.guard_loss
        return getattr(chainer_ports, name)(**kw)

    return make


BN_BIASED = mlp_ext(use_batchnorm=True, bn_unbiased=False)
BN = mlp_ext(use_batchnorm=True)
DROP = mlp_ext(use_dropout=True, dropout_ration=0.5)
DROP_COURSE = mlp_ext(use_dropout=True, dropout_ration=0.5, dropout_inverted=False)
BN_DROP = mlp_ext(use_batchnorm=True, use_dropout=True, dropout_ration=0.3)
BN_DROP_BIASED = mlp_ext(use_batchnorm=True, use_dropout=True, dropout_ration=0.3, bn_unbiased=False)

CORRECT = [
    Case("two-torch", "correct", "torch", two, tp("TwoLayerNet"), None),
    Case("two-keras", "correct", "keras", two, kp("two_layer_net"), None),
    Case("two-chainer", "correct", "chainer", two, cp("TwoLayerNet"), None),
    Case("cnn-torch", "correct", "torch", cnn, tp("SimpleConvNet"), None),
    Case("cnn-keras", "correct", "keras", cnn, kp("SimpleConvNet"), None),
    Case("cnn-chainer", "correct", "chainer", cnn, cp("SimpleConvNet"), None),
    Case("bn-drop-torch", "correct", "torch", BN_DROP, tp("MultiLayerNetExtend", dropout=0.3), None),
    Case("bn-drop-keras", "correct", "keras", BN_DROP_BIASED, kp("MultiLayerNetExtend", dropout=0.3), None),
    Case("bn-drop-chainer", "correct", "chainer", BN_DROP, cp("MultiLayerNetExtend", dropout=0.3), None),
    Case("deepconv-torch", "correct", "torch", course.DeepConvNet, tp("DeepConvNet"), None),
    Case("notes-torch", "correct", "torch", notes_reference, tp("NotesMLP"), None),
    Case("notes-keras", "correct", "keras", notes_reference, kp("NotesMLP"), None),
]

WRONG = [
    # weight not transposed (a square layer: no shape error)
    Case(
        "transposed-torch",
        "weight not transposed",
        "torch",
        lambda: two(10),
        tp("TwoLayerNet", hidden=10, square_bug=True),
        "dense-layout",
        "Affine2",
    ),
    Case(
        "transposed-keras",
        "weight not transposed",
        "keras",
        lambda: two(10),
        kp("two_layer_net", hidden=10, square_bug=True),
        "dense-layout",
        "Affine2",
    ),
    Case(
        "transposed-chainer",
        "weight not transposed",
        "chainer",
        lambda: two(10),
        cp("TwoLayerNet", hidden=10, square_bug=True),
        "dense-layout",
        "Affine2",
    ),
    # flatten order
    Case(
        "flatten-torch",
        "flatten order",
        "torch",
        cnn,
        tp("SimpleConvNet", flatten="hwc"),
        "flatten-order",
        "Affine1",
    ),
    Case(
        "flatten-keras",
        "flatten order",
        "keras",
        cnn,
        kp("SimpleConvNet", flatten="cwh"),
        "flatten-order",
        "Affine1",
    ),
    Case(
        "flatten-chainer",
        "flatten order",
        "chainer",
        cnn,
        cp("SimpleConvNet", flatten="hwc"),
        "flatten-order",
        "Affine1",
    ),
    # activation differs
    Case(
        "activation-torch",
        "activation differs",
        "torch",
        two,
        tp("TwoLayerNet", activation="sigmoid"),
        "activation-differs",
        "Relu1",
    ),
    Case(
        "activation-keras",
        "activation differs",
        "keras",
        two,
        kp("two_layer_net", activation="sigmoid"),
        "activation-differs",
        "Relu1",
    ),
    Case(
        "activation-chainer",
        "activation differs",
        "chainer",
        two,
        cp("TwoLayerNet", activation="sigmoid"),
        "activation-differs",
        "Relu1",
    ),
    Case(
        "notes-no-sigmoid-torch",
        "activation differs (output sigmoid dropped)",
        "torch",
        notes_reference,
        tp("NotesMLP", output_sigmoid=False),
        "activation-differs",
        "sigmoid",
    ),
    Case("notes-keras-loss", "activation differs (output sigmoid dropped)", "keras", notes_reference,
         kp("NotesMLP", keras_loss=True), "activation-differs", "loss"),
    # padding or stride
    Case(
        "padding-torch",
        "padding or stride",
        "torch",
        cnn,
        tp("SimpleConvNet", padding=1),
        "padding-stride",
        "Conv1",
    ),
    Case(
        "padding-keras",
        "padding or stride",
        "keras",
        cnn,
        kp("SimpleConvNet", padding="same"),
        "padding-stride",
        "Conv1",
    ),
    Case(
        "padding-chainer",
        "padding or stride",
        "chainer",
        cnn,
        cp("SimpleConvNet", pad=1),
        "padding-stride",
        "Conv1",
    ),
    # pooling floor against ceil (odd size: 4x4 filters give 25x25)
    Case(
        "ceil-torch",
        "pooling floor vs ceil / cover_all",
        "torch",
        lambda: cnn(4),
        tp("SimpleConvNet", filter_size=4, ceil_mode=True),
        "pool-ceil",
        "Pool1",
    ),
    Case(
        "ceil-keras",
        "pooling floor vs ceil / cover_all",
        "keras",
        lambda: cnn(4),
        kp("SimpleConvNet", filter_size=4, pool_padding="same"),
        "pool-ceil",
        "Pool1",
    ),
    Case(
        "ceil-chainer",
        "pooling floor vs ceil / cover_all",
        "chainer",
        lambda: cnn(4),
        cp("SimpleConvNet", filter_size=4, cover_all=True),
        "chainer-cover-all",
        "Pool1",
    ),
    # BatchNorm eps
    Case(
        "bn-eps-torch",
        "BatchNorm eps",
        "torch",
        BN,
        tp("MultiLayerNetExtend", eps=1e-3),
        "bn-eps",
        "BatchNorm1",
    ),
    Case(
        "bn-eps-keras",
        "BatchNorm eps",
        "keras",
        BN_BIASED,
        kp("MultiLayerNetExtend", epsilon=1e-3),
        "bn-eps",
        "BatchNorm1",
    ),
    Case(
        "bn-eps-chainer",
        "BatchNorm eps",
        "chainer",
        BN,
        cp("MultiLayerNetExtend", eps=2e-5),
        "bn-eps",
        "BatchNorm1",
    ),
    # momentum convention
    Case(
        "bn-momentum-torch",
        "BatchNorm momentum convention",
        "torch",
        BN,
        tp("MultiLayerNetExtend", momentum=0.9),
        "bn-momentum",
        "BatchNorm1",
    ),
    Case(
        "bn-momentum-keras",
        "BatchNorm momentum convention",
        "keras",
        BN_BIASED,
        kp("MultiLayerNetExtend", momentum=0.1),
        "bn-momentum",
        "BatchNorm1",
    ),
    Case(
        "bn-momentum-chainer",
        "BatchNorm momentum convention",
        "chainer",
        BN,
        cp("MultiLayerNetExtend", decay=0.1),
        "bn-momentum",
        "BatchNorm1",
    ),
    # biased or unbiased running variance
    Case(
        "bn-var-torch",
        "biased vs unbiased variance",
        "torch",
        BN_BIASED,
        tp("MultiLayerNetExtend"),
        "bn-running-var",
        "BatchNorm1",
    ),
    Case(
        "bn-var-keras",
        "biased vs unbiased variance",
        "keras",
        BN,
        kp("MultiLayerNetExtend"),
        "bn-running-var",
        "BatchNorm1",
    ),
    Case(
        "bn-var-chainer",
        "biased vs unbiased variance",
        "chainer",
        BN_BIASED,
        cp("MultiLayerNetExtend"),
        "bn-running-var",
        "BatchNorm1",
    ),
    # train/eval mode
    Case(
        "mode-torch",
        "train/eval mode",
        "torch",
        DROP,
        tp("MultiLayerNetExtend", batchnorm=False, dropout=0.5, functional_dropout=True),
        "train-flag",
        "Dropout1",
    ),
    Case(
        "mode-keras",
        "train/eval mode",
        "keras",
        BN_BIASED,
        kp("MultiLayerNetExtend", frozen_bn=True),
        "keras-training-flag",
        "BatchNorm1",
    ),
    # dropout scaling convention
    Case(
        "dropout-torch",
        "dropout scaling",
        "torch",
        DROP_COURSE,
        tp("MultiLayerNetExtend", batchnorm=False, dropout=0.5),
        "dropout-scaling",
        "Dropout1",
    ),
    Case(
        "dropout-keras",
        "dropout scaling",
        "keras",
        DROP_COURSE,
        kp("MultiLayerNetExtend", batchnorm=False, dropout=0.5),
        "dropout-scaling",
        "Dropout1",
    ),
    Case(
        "dropout-chainer",
        "dropout scaling",
        "chainer",
        DROP_COURSE,
        cp("MultiLayerNetExtend", batchnorm=False, dropout=0.5),
        "dropout-scaling",
        "Dropout1",
    ),
    # softmax applied twice
    Case(
        "softmax-torch",
        "softmax applied twice",
        "torch",
        two,
        tp("TwoLayerNet", softmax_out=True),
        "softmax-twice",
        "softmax",
    ),
    Case(
        "softmax-keras",
        "softmax applied twice",
        "keras",
        two,
        kp("two_layer_net", output_activation="softmax"),
        "softmax-twice",
        "softmax",
    ),
    Case(
        "softmax-chainer",
        "softmax applied twice",
        "chainer",
        two,
        cp("TwoLayerNet", softmax_out=True),
        "softmax-twice",
        "softmax",
    ),
    # the course's log(y + 1e-7) in the port's loss
    Case(
        "guard-torch",
        "log(y + 1e-7) loss",
        "torch",
        two_exact,
        tp("TwoLayerNet", criterion="guard"),
        "softmax-ce",
        "loss",
    ),
    Case(
        "guard-keras",
        "log(y + 1e-7) loss",
        "keras",
        two_exact,
        kp("two_layer_net", loss="guard"),
        "softmax-ce",
        "loss",
    ),
    Case(
        "guard-chainer",
        "log(y + 1e-7) loss",
        "chainer",
        two_exact,
        cp("TwoLayerNet", lossfun="guard"),
        "softmax-ce",
        "loss",
    ),
    # label smoothing
    Case(
        "smoothing-torch",
        "label smoothing",
        "torch",
        two_exact,
        tp("TwoLayerNet", criterion="smooth"),
        "label-smoothing",
        "loss",
    ),
    Case(
        "smoothing-keras",
        "label smoothing",
        "keras",
        two_exact,
        kp("two_layer_net", loss="smooth"),
        "label-smoothing",
        "loss",
    ),
    # sum instead of mean
    Case(
        "sum-torch",
        "sum instead of mean",
        "torch",
        two_exact,
        tp("TwoLayerNet", criterion="sum"),
        "loss-reduction",
        "loss",
    ),
    Case(
        "sum-keras",
        "sum instead of mean",
        "keras",
        two_exact,
        kp("two_layer_net", loss="sum"),
        "loss-reduction",
        "loss",
    ),
    Case(
        "sum-chainer",
        "sum instead of mean",
        "chainer",
        two_exact,
        cp("TwoLayerNet", lossfun="sum"),
        "loss-reduction",
        "loss",
    ),
    # a float32 layer inside a float64 model
    Case(
        "float32-keras",
        "float32 layer in a float64 model",
        "keras",
        two,
        kp("two_layer_net", float32_layer=True),
        "keras-dtype",
        "Affine2",
    ),
]

CASES = CORRECT + WRONG
