"""The rosetta command line: every subcommand on a small MNIST subset, errors included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_framework

from rosetta.cli import COMMANDS, main
from rosetta.weights import CNNConfig, MLPConfig, init_params, load_weights, read_metadata, save_weights


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors exit 2
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_help() -> None:
    exe = shutil.which("rosetta", path=str(Path(sys.executable).parent)) or shutil.which("rosetta")
    assert exe, "the console script 'rosetta' is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_examples(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "example" in out and f"rosetta {command}" in out


def test_env_lists_four_frameworks(capsys: pytest.CaptureFixture[str]) -> None:
    for framework in ("torch", "tf", "chainer"):
        require_framework(framework)
    code, out, _ = run_cli(capsys, "env")
    assert code == 0
    for word in ("numpy", "torch", "tensorflow", "chainer", "BLAS", "threads"):
        assert word in out


def test_data_prints_counts(capsys: pytest.CaptureFixture[str], mnist_dir: Path) -> None:
    code, out, _ = run_cli(capsys, "data", "--data-dir", str(mnist_dir))
    assert code == 0
    assert "train count 60000" in out and "test  count 10000" in out and "0:5923" in out


def test_data_missing_says_where(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "nothing").mkdir()
    code, _, err = run_cli(capsys, "data", "--data-dir", str(tmp_path / "nothing"))
    assert code == 1 and "not found" in err and "MNIST_DIR" in err and str(tmp_path / "nothing") in err


@pytest.mark.parametrize("framework", ["numpy", "torch", "tf", "chainer"])
def test_train_eval_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path, mnist_dir: Path,
                               framework: str) -> None:
    if framework != "numpy":
        require_framework(framework)
    out_file = tmp_path / "mlp.safetensors"
    code, out, err = run_cli(capsys, "train", "--framework", framework, "--model", "mlp", "--epochs", "2",
                             "--limit", "1000", "--data-dir", str(mnist_dir), "--out", str(out_file))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1].startswith("test accuracy: 0.") and float(lines[-1].split()[-1]) > 0.7
    assert sum(line.startswith("epoch") for line in lines) == 2
    assert read_metadata(out_file)["epoch"] == "2"
    code, out, _ = run_cli(capsys, "eval", "--framework", framework, "--model", "mlp", "--weights",
                           str(out_file), "--data-dir", str(mnist_dir), "--limit", "1000")
    assert code == 0 and "confusion matrix" in out
    assert out.strip().splitlines()[-1] == lines[-1]


def test_same_seed_same_result_across_frameworks(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 mnist_dir: Path) -> None:
    require_framework("torch")
    weights = {}
    for framework in ("numpy", "torch"):
        path = tmp_path / f"{framework}.safetensors"
        code, _, err = run_cli(capsys, "train", "--framework", framework, "--model", "cnn", "--epochs", "1",
                               "--limit", "300", "--data-dir", str(mnist_dir), "--out", str(path),
                               "--dtype", "float64", "--optimizer", "sgd", "--lr", "0.1")
        assert code == 0, err
        weights[framework] = load_weights(path)[0]
    for name, ref in weights["numpy"].items():
        np.testing.assert_allclose(weights["torch"][name], ref, rtol=0, atol=1e-10 * np.abs(ref).max(),
                                   err_msg=name)


def test_resume_continues_epochs(capsys: pytest.CaptureFixture[str], tmp_path: Path, mnist_dir: Path) -> None:
    path = tmp_path / "w.safetensors"
    common = ["--framework", "numpy", "--model", "mlp", "--limit", "500", "--data-dir", str(mnist_dir)]
    assert run_cli(capsys, "train", *common, "--epochs", "1", "--out", str(path))[0] == 0
    code, out, _ = run_cli(capsys, "train", *common, "--epochs", "1", "--resume", str(path),
                           "--out", str(path))
    assert code == 0 and "epoch   2" in out and read_metadata(path)["epoch"] == "2"


def test_eval_all_agrees(capsys: pytest.CaptureFixture[str], tmp_path: Path, mnist_dir: Path) -> None:
    for framework in ("torch", "tf", "chainer"):
        require_framework(framework)
    path = tmp_path / "cnn.safetensors"
    save_weights(path, init_params(CNNConfig(), seed=2), CNNConfig())
    code, out, err = run_cli(capsys, "eval", "--framework", "all", "--model", "cnn", "--weights", str(path),
                             "--data-dir", str(mnist_dir), "--limit", "500")
    assert code == 0, err
    assert out.count("test accuracy") == 4 and "identical predictions in all four: 100.0000%" in out


def test_compare_plots_four_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  mnist_dir: Path) -> None:
    for framework in ("torch", "tf", "chainer"):
        require_framework(framework)
    png, history = tmp_path / "curves.png", tmp_path / "history.json"
    code, out, err = run_cli(capsys, "compare", "--model", "mlp", "--epochs", "2", "--limit", "500",
                             "--data-dir", str(mnist_dir), "--plot", str(png), "--json", str(history))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(history.read_text())
    assert sorted(data) == ["chainer", "numpy", "tf", "torch"] and all(len(v) == 2 for v in data.values())
    assert max(e["max_param_divergence"] for f in ("torch", "tf", "chainer") for e in data[f]) < 1e-3
    assert "largest param divergence" in out


def test_parity_subset_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    require_framework("torch")
    path = tmp_path / "parity.json"
    code, out, _ = run_cli(capsys, "parity", "--framework", "torch", "--model", "mlp", "--dtype", "float64",
                           "--json", str(path), "--plot", str(tmp_path / "heat.png"))
    assert code == 0, out
    records = json.loads(path.read_text())
    assert {r["quantity"] for r in records} >= {"logits", "loss", "activation", "grad", "grad_input",
                                                 "optimizer", "batchnorm", "dropout"}
    assert set(records[0]) == {"model", "framework", "dtype", "quantity", "tensor", "max_abs_err",
                               "max_rel_err", "tol", "passed"}
    assert " failed" in out and (tmp_path / "heat.png").stat().st_size > 1000


@pytest.mark.parametrize("argv,message", [
    (["train", "--framework", "jax", "--model", "mlp"],
     "unknown framework 'jax'; choose one of: numpy, torch"),
    (["train", "--framework", "torch", "--model", "rnn"], "unknown model 'rnn'; choose one of: mlp, cnn"),
    (["eval", "--framework", "mxnet", "--model", "mlp", "--weights", "w"], "numpy, torch, tf, chainer, all"),
])
def test_unknown_choices_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err


def test_wrong_model_weights_named(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   mnist_dir: Path) -> None:
    path = tmp_path / "mlp.safetensors"
    save_weights(path, init_params(MLPConfig()), MLPConfig())
    code, _, err = run_cli(capsys, "eval", "--framework", "numpy", "--model", "cnn", "--weights", str(path),
                           "--data-dir", str(mnist_dir))
    assert code == 1 and "holds weights for model 'mlp', not 'cnn'" in err and str(path) in err


def test_wrong_shape_named(capsys: pytest.CaptureFixture[str], tmp_path: Path, mnist_dir: Path) -> None:
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "cnn.safetensors"
    save_weights(path, init_params(CNNConfig()), CNNConfig())
    tensors = load_file(path)
    tensors["fc1.W"] = tensors["fc1.W"][:100].copy()
    save_file(tensors, path, metadata=read_metadata(path))
    code, _, err = run_cli(capsys, "train", "--framework", "numpy", "--model", "cnn", "--resume", str(path),
                           "--data-dir", str(mnist_dir), "--limit", "10")
    assert code == 1 and "'fc1.W' has shape (100, 100), expected (4320, 100)" in err


def test_framework_not_installed_names_extra(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from rosetta import registry

    # The framework's module is not installed.
    monkeypatch.setitem(registry.FRAMEWORKS, "torch", dataclasses.replace(
        registry.FRAMEWORKS["torch"], module="torch_is_not_here"))
    code, _, err = run_cli(capsys, "train", "--framework", "torch", "--model", "mlp", "--limit", "10",
                           "--data-dir", str(mnist_dir))
    assert code == 1 and "pip install 'mnist-rosetta[torch]'" in err


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_nan_loss_stops_with_epoch_and_step(capsys: pytest.CaptureFixture[str], mnist_dir: Path) -> None:
    code, _, err = run_cli(capsys, "train", "--framework", "numpy", "--model", "mlp", "--limit", "500",
                           "--data-dir", str(mnist_dir), "--optimizer", "sgd", "--lr", "1e30")
    assert code == 1 and "epoch 1, step" in err and "loss became" in err


def test_ctrl_c_saves_and_stops(capsys: pytest.CaptureFixture[str], tmp_path: Path, mnist_dir: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of an epoch: the weights learned so far are saved, exit 130."""
    from rosetta.adapters.numpy_adapter import NumpyAdapter

    calls = {"n": 0}
    original = NumpyAdapter.train_step

    def interrupted(self, x, t):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, x, t)

    monkeypatch.setattr(NumpyAdapter, "train_step", interrupted)
    path = tmp_path / "w.safetensors"
    code, _, err = run_cli(capsys, "train", "--framework", "numpy", "--model", "mlp", "--limit", "1000",
                           "--data-dir", str(mnist_dir), "--out", str(path))
    assert code == 130 and "interrupted; weights saved to" in err
    meta = read_metadata(path)
    assert meta["interrupted"] == "1" and meta["epoch"] == "0"
    trained, _ = load_weights(path)
    assert not np.array_equal(trained["fc1.W"], init_params(MLPConfig())["fc1.W"])
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
