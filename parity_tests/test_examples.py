"""docs/examples: the porting guide's worked example runs, and each port is the course network.

For every port of two_layer_net.py (torch, Keras, Chainer): ``rosetta check`` finds every layer,
the loss and every gradient within the float64 bounds of rosetta/tolerances.py; the port's own
training loop, started from the course network's weights, ends where the course's loop ends after
the same SGD steps on the same batches; and its save/load round trip is bit-exact.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import require_framework

from rosetta.tolerances import errors, tolerance

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
PORTS = {"torch": ("two_layer_net_torch", "FixedTwoLayerNet", "net.safetensors"),
         "tf": ("two_layer_net_keras", "TwoLayerNet", "net.weights.h5"),
         "chainer": ("two_layer_net_chainer", "TwoLayerNet", "net.npz")}


def example(name: str) -> ModuleType:
    """docs/examples/NAME.py as a module (the folder is not a package, as a learner's is not)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # registered first: dataclasses and pickling look it up
        spec.loader.exec_module(module)
    return sys.modules[name]


def batches(n: int = 60, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)), rng.integers(0, 10, n)  # MNIST-like values in [0, 1)


@pytest.mark.parametrize("framework", sorted(PORTS))
def test_port_checks_against_the_course(framework: str) -> None:
    require_framework(framework)
    from rosetta.check import check

    module, factory, _ = PORTS[framework]
    report = check(example("two_layer_net").TwoLayerNet, getattr(example(module), factory))
    assert report.ok, report.format()


@pytest.mark.parametrize("framework", sorted(PORTS))
def test_port_trains_like_the_course(framework: str) -> None:
    require_framework(framework)
    course, port = example("two_layer_net"), example(PORTS[framework][0])
    x, t = batches()
    ref = course.TwoLayerNet()
    net = port.from_course({k: v.copy() for k, v in ref.params.items()})
    ref_losses = course.train(ref, x, t, iters=3, batch_size=20, lr=0.1)
    port_losses = port.train(net, x, t, iters=3, batch_size=20, lr=0.1)
    for a, r in zip(port_losses, ref_losses, strict=True):
        assert errors(np.array(a), np.array(r))[1] < tolerance("float64", "loss")
    got = port.to_course(net)
    for key, value in ref.params.items():
        assert errors(got[key], value)[1] < tolerance("float64", "trajectory"), key
    assert errors(got["W1"], course.TwoLayerNet().params["W1"])[1] > 1e-6  # it did train


@pytest.mark.parametrize("framework", sorted(PORTS))
def test_port_save_load_round_trip(framework: str, tmp_path: Path) -> None:
    require_framework(framework)
    course, port = example("two_layer_net"), example(PORTS[framework][0])
    params = course.TwoLayerNet().params
    params = {k: v + np.arange(v.size).reshape(v.shape) * 1e-3 for k, v in params.items()}
    path = tmp_path / PORTS[framework][2]
    port.save(port.from_course(params), path)
    loaded = port.to_course(port.load(path))
    for key, value in params.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_course_save_load_round_trip(tmp_path: Path) -> None:
    course = example("two_layer_net")
    net, other = course.TwoLayerNet(), course.TwoLayerNet(weight_init_std=1.0)
    x, t = batches()
    course.train(net, x, t, iters=2, batch_size=20)
    course.save_params(net, tmp_path / "params.npz")
    course.load_params(other, tmp_path / "params.npz")
    np.testing.assert_array_equal(other.predict(x), net.predict(x))  # the layers see the loaded arrays


def test_the_check_can_fail() -> None:
    """The walk-through's buggy port (softmax after the logits) does not pass the same check."""
    require_framework("torch")
    from rosetta.check import check

    report = check(example("two_layer_net").TwoLayerNet, example("two_layer_net_torch").TwoLayerNet)
    assert not report.ok and report.diagnosis is not None


def test_guide_quotes_the_examples() -> None:
    """Every python excerpt of the guide's worked example is in the file its paragraph links."""
    text = (EXAMPLES.parent / "porting.md").read_text(encoding="utf-8")
    start = text.index("\n## Worked example")
    worked = text[start:text.index("\n## ", start + 1)]
    blocks = re.findall(r"(\n)```python\n(.*?)```", worked, flags=re.S)
    assert len(blocks) >= 10
    sources = {name: (EXAMPLES / f"{name}.py").read_text(encoding="utf-8") for name in
               ("two_layer_net", *(module for module, _, _ in PORTS.values()))}
    for _, code in blocks:
        assert any(code in source for source in sources.values()), f"not in docs/examples: {code}"
