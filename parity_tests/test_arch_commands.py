"""The architecture options and the course presets on every command that builds a model:
train, eval, compare, parity and bench (convert: test_arch_options.py). Each prints the whole
architecture; an option that contradicts a weight file is an error naming both values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import require_framework

from rosetta.adapters import make_adapter
from rosetta.cli import main
from rosetta.tolerances import tolerance
from rosetta.weights import load_weights


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_a_course_preset_then_eval_it(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            mnist_dir: Path) -> None:
    out = tmp_path / "two.safetensors"
    code, text, err = run_cli(capsys, "train", "--framework", "numpy", "--preset", "twolayernet",
                              "--epochs", "1", "--limit", "300", "--data-dir", str(mnist_dir),
                              "--out", str(out), "--no-progress")
    assert code == 0, err
    assert "model mlp (MultiLayerNetExtend): input_size=784, hidden_sizes=[50]" in text
    assert "activation=sigmoid" in text
    _, config = load_weights(out)
    assert config.hidden_sizes == (50,) and config.activation == "sigmoid"
    # The file fixes the model: no --model needed; a contradicting option names both values.
    code, text, err = run_cli(capsys, "eval", "--framework", "numpy", "--weights", str(out),
                              "--limit", "300", "--data-dir", str(mnist_dir))
    assert code == 0 and "hidden_sizes=[50]" in text, err
    code, _, err = run_cli(capsys, "eval", "--framework", "numpy", "--weights", str(out),
                           "--activation", "relu", "--data-dir", str(mnist_dir))
    assert code == 1 and "--activation relu contradicts" in err and "activation sigmoid" in err
    assert "Traceback" not in err


def test_compare_with_architecture_options(capsys: pytest.CaptureFixture[str], mnist_dir: Path) -> None:
    require_framework("torch")
    code, text, err = run_cli(capsys, "compare", "--model", "mlp", "--hidden-sizes", "20", "--batchnorm",
                              "--dropout", "0.2", "--dropout-mode", "course",
                              "--frameworks", "numpy", "torch",
                              "--epochs", "1", "--limit", "200", "--data-dir", str(mnist_dir))
    assert code == 0, err
    assert "hidden_sizes=[20]" in text and "use_batchnorm=True" in text and "dropout_mode=course" in text


def test_parity_checks_the_configuration_given(capsys: pytest.CaptureFixture[str]) -> None:
    require_framework("torch")
    code, text, err = run_cli(capsys, "parity", "--framework", "torch", "--model", "cnn",
                              "--filter-num", "3", "--filter-size", "4", "--pad", "1", "--stride", "2",
                              "--dtype", "float64")
    assert code == 0, err
    assert "filter_num=3" in text and "cnn:custom torch    float64" in text
    code, _, err = run_cli(capsys, "parity", "--model", "mlp", "--filter-num", "3")
    assert code == 2 and "--filter-num does not apply to model 'mlp'" in err


def test_bench_times_the_configuration_given(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, err = run_cli(capsys, "bench", "--model", "mlp", "--hidden-sizes", "16", "--impl", "numpy",
                              "--repeat", "1", "--steps", "1", "--inference-size", "50", "--no-memory",
                              "--threads", "0")
    assert code == 0, err
    assert "hidden_sizes=[16]" in text and "numpy" in text


# --- the course notes' Chainer program: --preset chainer-notes ------------------------------------

NOTES_LINE = re.compile(r"^(\w+) +Epoch (\d+) loss\(train\) = (\d+\.\d{6}), accuracy\(train\) = "
                        r"(\d\.\d{6}), accuracy\(test\) = (\d\.\d{6})$", re.M)


def notes_reference(mnist_dir: Path, epochs: int, limit: int, shuffle: bool = False,
                    eps: float = 1e-8) -> list[tuple[str, str, str]]:
    """The notes' program written out with the reference directly (not through the command):
    LeCun init, Adam(lr 1e-3, eps), batches of 100 in order, the notes' numbers after each epoch."""
    from rosetta.data import batch_order, load_mnist
    from rosetta.weights import MLPConfig, init_params

    config = MLPConfig(hidden_sizes=(100, 100), output_activation="sigmoid")
    adapter = make_adapter("numpy", config, init_params(config, seed=0, scheme="lecun", dtype="float64"),
                           "float64")
    adapter.set_optimizer("adam", lr=1e-3, eps=eps)
    xs, ts = load_mnist("train", mnist_dir, layout="flat", dtype="float64", limit=limit)
    txs, tts = load_mnist("test", mnist_dir, layout="flat", dtype="float64", limit=limit)
    lines = []
    for epoch in range(epochs):
        if shuffle:
            batches = list(batch_order(len(xs), 100, 0, epoch))
        else:
            batches = [np.arange(j * 100, (j + 1) * 100) for j in range(len(xs) // 100)]
        for idx in batches:
            adapter.train_step(xs[idx], ts[idx])
        lines.append((f"{adapter.loss(xs, ts):f}", f"{adapter.accuracy(xs, ts):f}",
                      f"{adapter.accuracy(txs, tts):f}"))
    return lines


def test_chainer_notes_preset_trains_the_notes_program_in_all_four(capsys: pytest.CaptureFixture[str],
                                                                   mnist_dir: Path) -> None:
    for framework in ("torch", "tf", "chainer"):
        require_framework(framework)
    code, text, err = run_cli(capsys, "compare", "--preset", "chainer-notes", "--epochs", "2",
                              "--limit", "1000", "--dtype", "float64", "--data-dir", str(mnist_dir))
    assert code == 0, err
    assert "hidden_sizes=[100, 100], output_size=10, activation=relu, output_activation=sigmoid" in text
    assert "adam lr 0.001 eps 1e-08, batch 100 (in-order), 2 epoch(s), init lecun, seed 0" in text
    lines = NOTES_LINE.findall(text)
    four = ("numpy", "torch", "tf", "chainer")
    assert [(f, e) for f, e, *_ in lines] == [(f, e) for e in "12" for f in four]
    # The same numbers in all four, and the notes' program written out with the reference.
    want = notes_reference(mnist_dir, 2, 1000)
    for framework, epoch, *numbers in lines:
        assert tuple(numbers) == want[int(epoch) - 1], framework
    # Parameters within the float64 trajectory bound of the tolerance table after every epoch.
    divergences = [float(v) for v in re.findall(r"largest param divergence vs numpy: \w+ \S+ (\S+)", text)]
    assert len(divergences) == 2 and max(divergences) <= tolerance("float64", "trajectory")
    # Each part of the recipe changes the result: shuffled batches, the course's eps.
    assert notes_reference(mnist_dir, 1, 1000, shuffle=True)[0] != want[0]
    assert notes_reference(mnist_dir, 1, 1000, eps=1e-7)[0][0] != want[0][0]


def test_chainer_notes_preset_in_train_and_its_options(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       mnist_dir: Path) -> None:
    require_framework("chainer")
    out = tmp_path / "notes.safetensors"
    code, text, err = run_cli(capsys, "train", "--framework", "chainer", "--preset", "chainer-notes",
                              "--limit", "1000", "--dtype", "float64", "--data-dir", str(mnist_dir),
                              "--out", str(out), "--no-progress")
    assert code == 0, err
    (line,) = [m for m in NOTES_LINE.finditer("chainer  " + text.split("\n", 2)[2])]
    assert line.group(3, 4, 5) == notes_reference(mnist_dir, 1, 1000)[0]
    _, config = load_weights(out)
    assert config.output_activation == "sigmoid" and config.hidden_sizes == (100, 100)
    # An option overrides the preset's recipe; eps does not apply to SGD (one message, no file).
    code, text, err = run_cli(capsys, "train", "--framework", "numpy", "--preset", "chainer-notes",
                              "--batch-order", "shuffled", "--eps", "1e-7", "--limit", "300",
                              "--data-dir", str(mnist_dir), "--no-progress")
    assert code == 0 and "eps 1e-07, batch 100 (shuffled)" in text, err
    code, _, err = run_cli(capsys, "train", "--framework", "numpy", "--preset", "chainer-notes",
                           "--optimizer", "sgd", "--limit", "300", "--data-dir", str(mnist_dir),
                           "--out", str(tmp_path / "sgd.safetensors"))
    assert code == 2, err
    assert "--preset chainer-notes's eps applies to adagrad, rmsprop, adam, not --optimizer sgd" in err
    assert "Traceback" not in err and not (tmp_path / "sgd.safetensors").exists()
