"""The architecture options and the course presets on every command that builds a model:
train, eval, compare, parity and bench (convert: test_arch_options.py). Each prints the whole
architecture; an option that contradicts a weight file is an error naming both values."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_framework

from rosetta.cli import main
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
