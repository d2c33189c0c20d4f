"""reference_numpy.train: batch order, train_step, the Trainer loop and the recipes."""

from __future__ import annotations

import numpy as np
import pytest

from reference_numpy import MLP, make_optimizer
from reference_numpy.train import DEFAULT_RECIPES, Trainer, train_step
from rosetta.weights import MLPConfig

SMALL = MLPConfig(input_size=12, hidden_sizes=(8,), output_size=3)


def test_train_step_returns_loss_before_update_and_updates() -> None:
    model = MLP(SMALL, dtype="float64")
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 12)), rng.integers(0, 3, 6)
    loss_before = model.loss(x, t, train=True)
    opt = make_optimizer("sgd", model, lr=0.5)
    assert train_step(model, opt, x, t) == pytest.approx(loss_before, rel=1e-12)
    assert model.loss(x, t) < loss_before


def test_trainer_history_and_lr_decay() -> None:
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((3, 12)) * 3
    t = rng.integers(0, 3, 90)
    x = (centers[t] + rng.standard_normal((90, 12))).astype(np.float32)
    trainer = Trainer(MLP(SMALL), x, t, x[:30], t[:30], epochs=3, batch_size=20, optimizer="adam",
                      optimizer_param={"lr": 0.05}, lr_decay=0.5, verbose=False)
    history = trainer.train()
    assert len(history["train_loss"]) == 3 * 5 and len(history["test_acc"]) == 3
    assert trainer.optimizer.lr == pytest.approx(0.05 * 0.5 ** 2)
    assert history["train_acc"][-1] > 0.9


def test_recipes_name_every_field() -> None:
    for recipe in DEFAULT_RECIPES.values():
        assert {"optimizer", "lr", "batch_size", "epochs", "init", "seed"} <= set(recipe)
