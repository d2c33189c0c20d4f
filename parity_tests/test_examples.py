"""docs/examples: the porting guide's worked example runs, and each port is the course network.

For every port of two_layer_net.py and of simple_conv_net.py (torch, Keras, Chainer):
``rosetta check`` finds every layer, the loss and every gradient within the float64 bounds of
rosetta/tolerances.py; the port's own training loop, started from the course network's weights,
ends where the course's loop ends after the same SGD steps on the same batches; and its save/load
round trip is bit-exact.
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
CNN_PORTS = {"torch": ("simple_conv_net_torch", "SimpleConvNet", "net.safetensors"),
             "tf": ("simple_conv_net_keras", "SimpleConvNet", "net.weights.h5"),
             "chainer": ("simple_conv_net_chainer", "SimpleConvNet", "net.npz")}
# (course module, its network class, the ports, the shape of one input row)
NETS = {"two_layer_net": ("two_layer_net", "TwoLayerNet", PORTS, (784,)),
        "simple_conv_net": ("simple_conv_net", "SimpleConvNet", CNN_PORTS, (1, 28, 28))}
CASES = [(net, framework) for net in NETS for framework in sorted(PORTS)]


def example(name: str) -> ModuleType:
    """docs/examples/NAME.py as a module (the folder is not a package, as a learner's is not)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # registered first: dataclasses and pickling look it up
        spec.loader.exec_module(module)
    return sys.modules[name]


def batches(n: int = 60, seed: int = 1, shape: tuple[int, ...] = (784,)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)), rng.integers(0, 10, n)  # MNIST-like values in [0, 1)


def course_net(net: str, **kwargs: float) -> object:
    module, name, _, _ = NETS[net]
    return getattr(example(module), name)(**kwargs)


@pytest.mark.parametrize(("net", "framework"), CASES)
def test_port_checks_against_the_course(net: str, framework: str) -> None:
    require_framework(framework)
    from rosetta.check import check

    course, name, ports, _ = NETS[net]
    module, factory, _ = ports[framework]
    report = check(getattr(example(course), name), getattr(example(module), factory))
    assert report.ok, report.format()


@pytest.mark.parametrize(("net", "framework"), CASES)
def test_port_trains_like_the_course(net: str, framework: str) -> None:
    """Three SGD steps; the CNN on batches of 8 images (a few hundred ms per framework)."""
    require_framework(framework)
    course_module, _, ports, shape = NETS[net]
    course, port = example(course_module), example(ports[framework][0])
    n, batch_size = (60, 20) if shape == (784,) else (16, 8)
    x, t = batches(n, shape=shape)
    ref = course_net(net)
    model = port.from_course({k: v.copy() for k, v in ref.params.items()})
    ref_losses = course.train(ref, x, t, iters=3, batch_size=batch_size, lr=0.1)
    port_losses = port.train(model, x, t, iters=3, batch_size=batch_size, lr=0.1)
    for a, r in zip(port_losses, ref_losses, strict=True):
        assert errors(np.array(a), np.array(r))[1] < tolerance("float64", "loss")
    got = port.to_course(model)
    for key, value in ref.params.items():
        assert errors(got[key], value)[1] < tolerance("float64", "trajectory"), key
    assert errors(got["W1"], course_net(net).params["W1"])[1] > 1e-6  # it did train


@pytest.mark.parametrize(("net", "framework"), CASES)
def test_port_save_load_round_trip(net: str, framework: str, tmp_path: Path) -> None:
    require_framework(framework)
    _, _, ports, _ = NETS[net]
    port = example(ports[framework][0])
    params = course_net(net).params
    params = {k: v + np.arange(v.size).reshape(v.shape) * 1e-3 for k, v in params.items()}
    path = tmp_path / ports[framework][2]
    port.save(port.from_course(params), path)
    loaded = port.to_course(port.load(path))
    for key, value in params.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


@pytest.mark.parametrize("net", sorted(NETS))
def test_course_save_load_round_trip(net: str, tmp_path: Path) -> None:
    course_module, _, _, shape = NETS[net]
    course = example(course_module)
    model, other = course_net(net), course_net(net, weight_init_std=1.0)
    x, t = batches(16, shape=shape)
    course.train(model, x, t, iters=2, batch_size=8)
    course.save_params(model, tmp_path / "params.npz")
    course.load_params(other, tmp_path / "params.npz")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))  # the layers see the loaded arrays


def test_keras_cnn_port_permutes_the_flatten_rows() -> None:
    """The permutation of W2's rows is what makes the Keras CNN agree: without it, Keras's
    (H, W, C) flatten meets rows in the course's (C, H, W) order and the logits part."""
    require_framework("tf")
    course, port = example("simple_conv_net"), example("simple_conv_net_keras")
    ref = course.SimpleConvNet(weight_init_std=0.1)
    x, _ = batches(4, shape=(1, 28, 28))
    model = port.from_course(ref.params)
    assert errors(np.asarray(model(port.to_nhwc(x))), ref.predict(x))[1] < tolerance("float64", "logits")
    model.fc1.set_weights([ref.params["W2"], ref.params["b2"]])  # the rows as the course has them
    assert errors(np.asarray(model(port.to_nhwc(x))), ref.predict(x))[1] > 1e-3


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
               (*NETS, *(module for _, _, ports, _ in NETS.values() for module, _, _ in ports.values()))}
    for _, code in blocks:
        assert any(code in source for source in sources.values()), f"not in docs/examples: {code}"
    cnn_start = worked.index("\n### SimpleConvNet: what changes\n")
    cnn = worked[cnn_start:worked.index("\n### ", cnn_start + 1)]
    cnn_sources = {name: source for name, source in sources.items() if name.startswith("simple_conv_net")}
    for code in re.findall(r"\n```python\n(.*?)```", cnn, flags=re.S):
        assert any(code in source for source in cnn_sources.values()), f"not a SimpleConvNet file: {code}"
    for name, source in cnn_sources.items():  # each of the four files quoted at least once
        assert any(code in source for code in re.findall(r"\n```python\n(.*?)```", cnn, flags=re.S)), name


def test_example_tags_name_sections() -> None:
    """docs/examples is outside parity_tests/test_porting_notes.py's folders: its
    NOTE(framework:SLUG) tags are held to the same rule here, each naming a section of the guide."""
    guide = (EXAMPLES.parent / "porting.md").read_text(encoding="utf-8")
    slugs = set(re.findall(r"^### ([a-z0-9-]+): ", guide, flags=re.M))
    tag = re.compile(r"NOTE\((?:framework|course):([a-z0-9-]+)\)")
    tags = [(path.name, slug) for path in sorted(EXAMPLES.glob("*.py"))
            for slug in tag.findall(path.read_text(encoding="utf-8"))]
    assert tags, "no NOTE tags in docs/examples"
    unknown = [f"{name}: {slug}" for name, slug in tags if slug not in slugs]
    assert not unknown, f"tags naming no section of docs/porting.md: {unknown}"
