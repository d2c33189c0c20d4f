"""``rosetta check``: the gallery of wrong ports (each must be named with the right layer and
cause), correct hand-written ports and the project's own ports (each must pass), the weight
transfer, optimizer steps and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from check_gallery import course
from check_gallery.cases import CASES, CORRECT, WRONG, Case
from conftest import import_framework, require_all

import rosetta
from rosetta.check import CheckError, check
from rosetta.cli import main

GALLERY = Path(__file__).resolve().parent / "check_gallery"
BATCH = 4


def need(framework: str) -> None:
    """Skip without ``framework`` (fail under ROSETTA_REQUIRE_ALL=1)."""
    if framework == "chainer":
        try:
            from chainer_impl.compat import import_chainer

            import_chainer()
        except ImportError as exc:
            if require_all():
                raise
            pytest.skip(f"chainer is not installed: {exc}")
        return
    import_framework({"torch": "torch", "keras": "keras"}[framework])


@pytest.mark.parametrize("case", CORRECT, ids=[c.id for c in CORRECT])
def test_correct_port_passes(case: Case) -> None:
    need(case.framework)
    if case.id.startswith("notes"):
        need("chainer")
    report = check(case.reference, case.port, batch=BATCH)
    assert report.ok, report.format()
    assert report.diagnosis is None
    # every layer output, the loss, every gradient and the input gradient were compared
    train = next(p for p in report.passes if p.mode == "train")
    quantities = {r.quantity for r in train.rows}
    assert {"activation", "logits", "loss", "grad", "grad_input"} <= quantities


@pytest.mark.parametrize("case", WRONG, ids=[c.id for c in WRONG])
def test_wrong_port_is_named(case: Case) -> None:
    need(case.framework)
    if case.id.startswith("notes"):
        need("chainer")
    report = check(case.reference, case.port, batch=BATCH)
    assert not report.ok
    d = report.diagnosis
    assert d is not None, report.format()
    assert d.slug == case.slug, report.format()
    assert case.where.lower() in d.where.lower(), report.format()


def test_gallery_covers_every_difference_and_guide_section() -> None:
    """Every listed difference has a wrong port, and every slug named is a porting-guide section
    that links back to the gallery."""
    differences = {c.difference for c in WRONG}
    for wanted in (
        "weight not transposed",
        "flatten order",
        "activation differs",
        "padding or stride",
        "pooling floor vs ceil / cover_all",
        "BatchNorm eps",
        "BatchNorm momentum convention",
        "biased vs unbiased variance",
        "train/eval mode",
        "dropout scaling",
        "softmax applied twice",
        "log(y + 1e-7) loss",
        "label smoothing",
        "sum instead of mean",
        "float32 layer in a float64 model",
    ):
        assert wanted in differences
    guide = (GALLERY.parent.parent / "docs" / "porting.md").read_text()
    for slug in {c.slug for c in WRONG}:
        assert f"## {slug}: " in guide, slug
    assert "parity_tests/check_gallery/cases.py" in guide
    assert len({c.id for c in CASES}) == len(CASES)


# --- the project's own ports --------------------------------------------------------------------
OWN = [("torch", "torch_impl"), ("keras", "tf_impl"), ("chainer", "chainer_impl")]


@pytest.mark.parametrize(("framework", "package"), OWN, ids=[p for _, p in OWN])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_project_ports_pass(framework: str, package: str, model: str) -> None:
    need(framework)
    import importlib

    from rosetta.configs import CNNConfig, MLPConfig

    config = (
        MLPConfig(hidden_sizes=(20, 20), use_batchnorm=True, dropout_ratio=0.2)
        if model == "mlp"
        else CNNConfig()
    )
    cls = "MLP" if model == "mlp" else "CNN"
    ref = getattr(importlib.import_module(f"reference_numpy.{model}"), cls)(config, dtype="float64")
    port = getattr(importlib.import_module(f"{package}.{model}"), cls)(config, dtype="float64")
    report = check(ref, port, batch=BATCH)
    assert report.ok, report.format()
    if model == "mlp":
        assert any(r.quantity == "batchnorm" for p in report.passes for r in p.rows)


# --- the report, weight transfer, API ----------------------------------------------------------
@pytest.fixture(scope="module")
def cnn_report() -> rosetta.check.CheckReport:
    need("torch")
    from check_gallery.torch_ports import SimpleConvNet

    return check(course.SimpleConvNet(), SimpleConvNet(), batch=2)


def test_mapping_is_printed(cnn_report: rosetta.check.CheckReport) -> None:
    assert "W2 (4320, 100) -> fc1.weight (100, 4320), transposed" in cnn_report.mapping
    assert "W1 (30, 1, 5, 5) -> conv1.weight (30, 1, 5, 5)" in cnn_report.mapping
    text = cnn_report.format()
    assert "W2 (4320, 100) -> fc1.weight (100, 4320), transposed" in text
    assert "agree" in text.splitlines()[-1]
    # the course's log(y + 1e-7) in the reference is named and accepted, not hidden
    assert any("1e-7" in r.note for p in cnn_report.passes for r in p.rows)
    json.dumps(cnn_report.to_dict())


def test_keras_port_layouts_are_converted() -> None:
    need("keras")
    from check_gallery.keras_ports import SimpleConvNet

    report = check(course.SimpleConvNet(), SimpleConvNet(), batch=2)
    assert report.ok, report.format()
    assert any("HWIO" in m for m in report.mapping)
    assert any("rows (H, W, C)" in m for m in report.mapping)  # Keras flattens NHWC


def test_unmatched_shapes_are_reported() -> None:
    need("torch")
    from check_gallery.torch_ports import TwoLayerNet

    report = check(course.TwoLayerNet(784, 50, 10), TwoLayerNet(hidden=40), batch=2)
    assert not report.ok
    assert any("W1 (784, 50)" in p and "(40, 784)" in p and "fc1" in p for p in report.problems), (
        report.problems
    )


def test_unexplained_difference_shows_layer_and_elements() -> None:
    need("torch")
    import torch
    from check_gallery.torch_ports import TwoLayerNet

    class Scaled(TwoLayerNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x) * 1.5))

    report = check(course.TwoLayerNet(784, 50, 10), Scaled(), batch=2)
    d = report.diagnosis
    assert d is not None and d.slug is None and "no known porting difference" in d.cause
    assert "Relu1" in d.where and "port" in d.detail and "ref" in d.detail


def test_optimizer_steps() -> None:
    need("torch")
    import torch
    from check_gallery.torch_ports import TwoLayerNet

    from reference_numpy.optimizers import SGD

    ok = check(course.TwoLayerNet(784, 50, 10), TwoLayerNet(), batch=2, steps=3, optimizer="sgd", lr=0.1)
    assert ok.ok, ok.format()
    assert [p.mode for p in ok.passes] == ["eval", "train", "step 1", "step 2", "step 3"]
    port = TwoLayerNet()
    bad = check(
        course.TwoLayerNet(784, 50, 10),
        port,
        batch=2,
        steps=2,
        optimizers=(SGD(lr=0.1), torch.optim.SGD(port.parameters(), lr=0.01)),
    )
    assert not bad.ok and bad.passes[-1].mode == "step 1"
    assert "step 1" in bad.diagnosis.where


def test_api_and_usage_errors() -> None:
    assert callable(rosetta.check)
    with pytest.raises(CheckError, match="course-style NumPy network"):
        check(course.TwoLayerNet(784, 50, 10), object())
    with pytest.raises(CheckError, match="dtype"):
        check(course.TwoLayerNet(784, 50, 10), object(), dtype="int8")


def test_import_rosetta_stays_light() -> None:
    heavy = "('torch', 'tensorflow', 'chainer', 'rosetta.check')"
    code = f"import sys, rosetta; print(any(m in sys.modules for m in {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_float32_check() -> None:
    need("torch")
    from check_gallery.torch_ports import TwoLayerNet

    ref = course.TwoLayerNet(784, 50, 10)
    for k in ref.params:
        ref.params[k] = ref.params[k].astype(np.float32)
    # the layers hold the float64 arrays: rebuild them on the float32 ones
    ref.layers["Affine1"] = course.Affine(ref.params["W1"], ref.params["b1"])
    ref.layers["Affine2"] = course.Affine(ref.params["W2"], ref.params["b2"])
    report = check(ref, TwoLayerNet(), dtype="float32", batch=2)
    assert report.ok, report.format()
    assert report.dtype == "float32"


# --- command line -------------------------------------------------------------------------------
REF = f"{GALLERY / 'course.py'}:two_layer_net"


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("torch")
    out = tmp_path / "check.json"
    assert (
        main(
            ["check", REF, f"{GALLERY / 'torch_ports.py'}:two_layer_port", "--batch", "2", "--json", str(out)]
        )
        == 0
    )
    assert json.loads(out.read_text())["ok"] is True
    assert main(["check", REF, f"{GALLERY / 'torch_ports.py'}:two_layer_sigmoid_port", "--batch", "2"]) == 1
    text = capsys.readouterr().out
    assert "activation differs" in text and "docs/porting.md#activation-differs" in text
    assert main(["check", REF, f"{GALLERY / 'torch_ports.py'}:nothing"]) == 2
    assert "has no 'nothing'" in capsys.readouterr().err
    assert main(["check", f"{tmp_path / 'missing.py'}:x", REF]) == 2
    assert main(["check", REF, REF]) == 2  # a NumPy network is no port
    assert "torch.nn.Module" in capsys.readouterr().err
    bad_json = tmp_path / "no" / "such" / "dir.json"
    assert main(["check", REF, f"{GALLERY / 'torch_ports.py'}:two_layer_port", "--json", str(bad_json)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_mnist_input(capsys: pytest.CaptureFixture[str]) -> None:
    need("torch")
    from conftest import mnist_dir_or_skip

    data = mnist_dir_or_skip()
    assert (
        main(
            [
                "check",
                REF,
                f"{GALLERY / 'torch_ports.py'}:two_layer_port",
                "--input",
                "mnist",
                "--data-dir",
                str(data),
                "--batch",
                "2",
            ]
        )
        == 0
    )
    assert "input (2, 784)" in capsys.readouterr().out


@pytest.mark.parametrize("port", ["torch", "keras"])
def test_notes_examples(port: str) -> None:
    """docs/examples: the notes' Chainer MLP migrated to PyTorch and to Keras, checked against it."""
    need("chainer")
    need(port)
    examples = GALLERY.parent.parent / "docs" / "examples"
    ref = f"{examples / 'notes_mlp_chainer.py'}:model"
    assert main(["check", ref, f"{examples / f'notes_mlp_{port}.py'}:model", "--batch", "2"]) == 0


def test_walk_through_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """The porting guide's walk-through: the buggy port parts naming softmax-twice, the fix agrees."""
    need("torch")
    examples = GALLERY.parent.parent / "docs" / "examples"
    ref = f"{examples / 'two_layer_net.py'}:TwoLayerNet"
    port = examples / "two_layer_net_torch.py"
    assert main(["check", ref, f"{port}:TwoLayerNet"]) == 1
    assert "docs/porting.md#softmax-twice" in capsys.readouterr().out
    assert main(["check", ref, f"{port}:FixedTwoLayerNet"]) == 0


class PredictGradientNet:
    """A course network that offers only params, predict, loss and gradient (no layers)."""

    def __init__(self, activation: str = "relu") -> None:
        self._net = course.TwoLayerNet(784, 50, 10)
        self.params = self._net.params

    def predict(self, x: np.ndarray) -> np.ndarray:
        for layer in self._net.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        return self._net.lastLayer.forward(self.predict(x), t)

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        self.loss(x, t)
        dout = self._net.lastLayer.backward(1)
        for layer in reversed(list(self._net.layers.values())):
            dout = layer.backward(dout)
        a1, a2 = self._net.layers["Affine1"], self._net.layers["Affine2"]
        return {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}


def test_predict_gradient_network_is_checked_end_to_end() -> None:
    need("torch")
    from check_gallery.torch_ports import TwoLayerNet

    ok = check(PredictGradientNet(), TwoLayerNet(), batch=2)
    assert ok.ok, ok.format()
    assert any("end to end" in n for n in ok.notes)
    assert {r.quantity for p in ok.passes for r in p.rows} == {"logits", "loss", "grad"}
    bad = check(PredictGradientNet(), TwoLayerNet(activation="sigmoid"), batch=2)
    assert not bad.ok and bad.first_failure[1].quantity == "logits"
