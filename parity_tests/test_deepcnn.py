"""The deep CNN (course: DeepConvNet) in the reference: its numerical gradient check, its layers
and shapes, and the two dropout conventions.

The ports are compared with the reference by the parity matrix (rosetta/parity.py CASES
``deepcnn`` and ``deepcnn:odd``: logits, every activation, every gradient and the input gradient,
optimizer steps, dropout with shared masks in both conventions, the MNIST trajectory), run by
parity_tests/test_parity.py like every model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reference_numpy import DeepCNN as RefDeepCNN
from reference_numpy import set_dropout_masks
from reference_numpy.gradient_check import assert_gradients_close, check_model
from rosetta.parity import kink_distance
from rosetta.weights import DeepCNNConfig, init_params, trainable_names

MODES = ("inverted", "course")


SMALL = DeepCNNConfig(input_dim=(1, 12, 12), conv_params=((2, 3, 1, 1), (2, 3, 1, 1), (3, 3, 1, 1),
                                                          (3, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1)),
                      hidden_size=5, output_size=4, weight_decay=0.1, weight_decay_l1=0.02)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("train", [True, False])
def test_reference_gradcheck(mode: str, train: bool) -> None:
    """Central differences against backward for every tensor and the input, float64, fixed
    masks, L2 and L1 on."""
    cfg = dataclasses.replace(SMALL, dropout_mode=mode)
    base = init_params(cfg, seed=3, scheme="he", dtype="float64")
    rng = np.random.default_rng(4)
    model = RefDeepCNN(cfg, params={n: v + 0.1 * rng.standard_normal(v.shape) if n.endswith(".b") else v
                                    for n, v in base.items()}, dtype="float64")
    rng = np.random.default_rng(1)
    set_dropout_masks(model, {"drop1": rng.random((2, 5)) >= 0.5, "drop2": rng.random((2, 4)) >= 0.5})
    for seed in range(20):
        x = np.random.default_rng([seed, 9]).standard_normal((2, 1, 12, 12))
        if kink_distance(model, x) > 1e-4:  # 10 h from every kink, in units of the layer's std
            break
    else:
        raise AssertionError("no seed in range(20) gives a kink-free batch")
    t = np.array([1, 3])
    # 30 sampled entries per tensor (of up to 144) keep the check under a second.
    result = check_model(model, x, t, train=train, input_grad=True, max_entries=30)
    assert set(result) == {*trainable_names(cfg), "input"}
    assert_gradients_close(result)


def test_reference_layers_and_shapes() -> None:
    model = RefDeepCNN(dtype="float64")
    logits, acts = model.forward(np.zeros((2, 1, 28, 28)), return_activations=True)
    assert list(acts) == DeepCNNConfig().layer_names() == list(model.layers)
    assert acts["conv4"].shape == (2, 32, 16, 16) and acts["pool3"].shape == (2, 64, 4, 4)
    assert acts["flatten"].shape == (2, 1024) and acts["drop2"] is logits
    no_dropout = RefDeepCNN(DeepCNNConfig(dropout_ratio=0.0))
    assert "drop1" not in no_dropout.layers and "drop2" not in no_dropout.layers


@pytest.mark.parametrize("mode", MODES)
def test_reference_dropout_convention(mode: str) -> None:
    """Eval scales by 1 - ratio in the course's convention only; train keeps the masked units
    unscaled there and scales them by 1 / (1 - ratio) in the inverted one."""
    model = RefDeepCNN(DeepCNNConfig(dropout_mode=mode), dtype="float64")
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28))
    rng = np.random.default_rng(7)
    masks = {"drop1": rng.random((4, 50)) >= 0.5, "drop2": rng.random((4, 10)) >= 0.5}
    set_dropout_masks(model, masks)
    _, train_acts = model.forward(x, train=True, return_activations=True)
    _, eval_acts = model.forward(x, train=False, return_activations=True)
    scale_train, scale_eval = (2.0, 1.0) if mode == "inverted" else (1.0, 0.5)
    np.testing.assert_array_equal(train_acts["drop1"], train_acts["relu7"] * masks["drop1"] * scale_train)
    np.testing.assert_array_equal(train_acts["drop2"], train_acts["fc2"] * masks["drop2"] * scale_train)
    np.testing.assert_array_equal(eval_acts["drop1"], eval_acts["relu7"] * scale_eval)
    np.testing.assert_array_equal(eval_acts["drop2"], eval_acts["fc2"] * scale_eval)
