"""The suite can fail: for each quantity the parity matrix checks, a deliberate bug of that kind
makes the check fail and names the tensor; the weight contract refuses every wrong shape by name;
a write that fails halfway leaves the old file as it was.

These are the tests behind docs/conventions.md, "How the suite can fail".
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import require_framework

from rosetta import parity
from rosetta.adapters.torch_adapter import TorchAdapter
from rosetta.configs import MODELS, make_config
from rosetta.tolerances import QUANTITIES, TOLERANCES, errors, tolerance
from rosetta.weights import WeightFileError, init_params, param_spec, save_weights, validate_params

PORT = "torch"  # the cheapest port to break on purpose


# --- the comparison and the tolerance lookup ----------------------------------------------------

def test_errors_sees_one_element_and_scales_by_the_reference() -> None:
    ref = np.zeros((50, 40))
    ref[7, 9] = 4.0
    bad = ref.copy()
    bad[49, 39] = 1e-9
    assert errors(bad, ref) == (1e-9, 1e-9 / 4.0)
    assert errors(ref, ref) == (0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        errors(ref.T, ref)


def test_tolerance_lookup_is_exact() -> None:
    assert tolerance("float64", "grad") == 1e-12 and tolerance(np.float32, "grad") == 1e-5
    with pytest.raises(KeyError, match="no tolerance for dtype 'float16'"):
        tolerance("float16", "grad")
    with pytest.raises(KeyError, match="quantity 'gradient'"):
        tolerance("float64", "gradient")
    for (dtype, quantity), bound in TOLERANCES.items():
        assert quantity in QUANTITIES and 0 < bound < 1, (dtype, quantity)
        if ("float32", quantity) in TOLERANCES and dtype == "float64":
            assert bound <= TOLERANCES[("float32", quantity)], quantity  # float64 is the strict pass


def test_compare_dicts_fails_a_missing_tensor() -> None:
    ref = {"a": np.ones(3), "b": np.ones(2)}
    records = parity.compare_dicts("mlp", PORT, "float64", "grad", {"a": np.ones(3)}, ref)
    assert [r.passed for r in records] == [True, False] and records[1].tensor == "b (missing)"


# --- each quantity of the matrix fails when it is wrong ------------------------------------------

def _patch_port(monkeypatch: pytest.MonkeyPatch, method: str, wrap) -> None:
    original = getattr(TorchAdapter, method)
    monkeypatch.setattr(TorchAdapter, method, lambda self, *a, **k: wrap(self, original(self, *a, **k)))


def test_a_wrong_gradient_fails_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    require_framework(PORT)

    def scale(self, result):
        loss, grads, dx = result
        grads = {**grads, "fc1.b": grads["fc1.b"] * (1 + 1e-6)}
        return loss, grads, dx

    _patch_port(monkeypatch, "loss_and_grads", scale)
    failed = [r for r in parity.check_grads("mlp:odd", PORT, "float64") if not r.passed]
    assert [r.tensor for r in failed] == ["fc1.b"]


def test_a_wrong_optimizer_step_fails_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    require_framework(PORT)
    original = TorchAdapter.set_optimizer

    def set_optimizer(self, name, **hparams):
        hparams["lr"] = hparams.get("lr", 0.001) * (1 + 1e-6)  # lr off by one part in a million
        original(self, name, **hparams)

    monkeypatch.setattr(TorchAdapter, "set_optimizer", set_optimizer)
    records = parity.check_optimizer("mlp", PORT, "float64", "sgd", steps=2)
    failed = {r.tensor for r in records if not r.passed}
    assert "sgd step 1: fc1.W" in failed and "sgd step 2: fc3.b" in failed


def test_a_wrong_running_statistic_fails_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    require_framework(PORT)

    def nudge(self, params):
        return {**params, "bn1.running_var": params["bn1.running_var"] * (1 + 1e-6)}

    _patch_port(monkeypatch, "params", nudge)
    failed = {r.tensor for r in parity.check_batchnorm("mlp:bn", PORT, "float64") if not r.passed}
    assert "running stats after 1 forward: bn1.running_var" in failed
    assert "after 3 SGD steps: bn1.running_var" in failed


def test_a_wrong_dropout_mask_fails_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    require_framework(PORT)
    original = TorchAdapter.set_dropout_masks

    def flip_one(self, masks):
        if masks:
            masks = dict(masks)
            masks["drop2"] = masks["drop2"].copy()
            masks["drop2"][0] = ~masks["drop2"][0]  # one example's mask inverted
        original(self, masks)

    monkeypatch.setattr(TorchAdapter, "set_dropout_masks", flip_one)
    failed = {r.tensor for r in parity.check_dropout("mlp:dropout", PORT, "float64") if not r.passed}
    assert "train forward: drop2" in failed and "train forward: drop1" not in failed


def test_a_wrong_eval_scaling_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The course's dropout convention scales at eval time: a port that forgets it fails there."""
    require_framework(PORT)

    def inverted_eval(self, acts):
        return {n: (a / (1 - 0.3) if n.startswith("drop") else a) for n, a in acts.items()}

    original = TorchAdapter.forward
    monkeypatch.setattr(TorchAdapter, "forward",
                        lambda self, x, train=False: (original(self, x, train) if train
                                                      else inverted_eval(self, original(self, x, train))))
    failed = {r.tensor for r in parity.check_dropout("mlp:dropout-course", PORT, "float64") if not r.passed}
    assert "eval forward: drop1" in failed and not any(t.startswith("train") for t in failed)


# --- the weight contract: every wrong shape is refused by name -----------------------------------

SPEC_CASES = [pytest.param(c.config, id=c.label) for c in parity.CASES]


@pytest.mark.parametrize("config", SPEC_CASES)
def test_every_tensor_with_a_wrong_shape_is_named(config) -> None:
    params = init_params(config, seed=0, dtype="float32")
    for name, shape in param_spec(config).items():
        for wrong in ((*shape, 1), shape[:-1] + (shape[-1] + 1,)):
            bad = {**params, name: np.zeros(wrong, np.float32)}
            with pytest.raises(WeightFileError, match=rf"tensor '{name}' has shape"):
                validate_params(bad, config)


@pytest.mark.parametrize("model", MODELS)
def test_every_default_tensor_is_checked(model: str) -> None:
    config = make_config(model)
    spec = param_spec(config)
    assert len(spec) == len(set(spec)) and spec == config.param_spec()


def test_a_write_that_fails_halfway_leaves_the_old_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config("mlp", hidden_sizes=(5,))
    path = tmp_path / "w.safetensors"
    save_weights(path, init_params(config, seed=1), config)
    before = path.read_bytes()
    real_write = Path.write_bytes

    def half_then_enospc(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", half_then_enospc)
    with pytest.raises(OSError, match="No space left"):
        save_weights(path, init_params(config, seed=2), config)
    monkeypatch.setattr(Path, "write_bytes", real_write)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temporary file left
