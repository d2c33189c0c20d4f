"""The rosetta command line: every subcommand on a small MNIST subset, errors included."""

from __future__ import annotations

import json
import os
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
    assert "MALLOC_MMAP_MAX_=0" in out  # rosetta.bench.keep_freed_memory, from main


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


# --- issue: every user mistake gets one clear message, nothing overwritten --------------------------

TRAIN = ["train", "--framework", "numpy", "--model", "mlp", "--limit", "10", "--no-progress"]
COMPARE = ["compare", "--model", "mlp", "--frameworks", "numpy", "--limit", "10"]


@pytest.mark.parametrize("argv,message", [
    ([*TRAIN, "--epochs", "0"], "argument --epochs: must be an integer from 1 to 100000, got 0"),
    ([*TRAIN, "--epochs", "-3"], "argument --epochs: must be an integer from 1 to 100000, got -3"),
    ([*TRAIN, "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    ([*TRAIN, "--batch-size", "-1"], "argument --batch-size: must be an integer >= 1, got -1"),
    ([*TRAIN, "--seed", "-1"], "argument --seed: must be an integer from 0 to"),
    ([*TRAIN, "--lr", "-0.1"], "argument --lr: must be a finite number > 0, got -0.1"),
    ([*TRAIN, "--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
    ([*TRAIN, "--weight-decay", "-5"], "argument --weight-decay: must be a finite number >= 0, got -5"),
    ([*TRAIN, "--lr-decay", "-0.7"], "argument --lr-decay: must be a finite number > 0 and <= 1"),
    ([*TRAIN, "--lr-decay", "1.5"], "argument --lr-decay: must be a finite number > 0 and <= 1"),
    ([*TRAIN, "--limit", "0"], "argument --limit: must be an integer >= 1, got 0"),
    ([*COMPARE, "--epochs", "0"], "argument --epochs: must be an integer from 1 to 100000, got 0"),
    ([*COMPARE, "--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
    (["bench", "--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
])
def test_options_validated_when_parsed(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str],
                                       message: str) -> None:
    code, out, err = run_cli(capsys, *argv, *(["--out", str(tmp_path / "w.safetensors")]
                                              if argv[0] == "train" else []))
    assert code == 2 and message in err and out == ""
    assert list(tmp_path.iterdir()) == []


def _unwritable(tmp_path: Path) -> Path:
    """A folder no one may create files in: a mode-0555 folder for a user; for root (who may write
    into any mode), /proc/sys where it is read-only (in a container)."""
    import os

    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if not os.access("/proc/sys", os.W_OK):  # procfs: nobody creates files there
        return Path("/proc/sys")
    pytest.skip("running as root where /proc/sys is writable: no folder is unwritable here")


@pytest.mark.parametrize("argv,option", [
    (["train", "--framework", "numpy", "--model", "mlp", "--out", "{bad}/w.safetensors"], "--out"),
    (["compare", "--model", "mlp", "--json", "{bad}/h.json"], "--json"),
    (["compare", "--model", "mlp", "--plot", "{bad}/c.png"], "--plot"),
    (["parity", "--framework", "torch", "--json", "{bad}/p.json"], "--json"),
    (["parity", "--framework", "torch", "--plot", "{bad}/h.png"], "--plot"),
    (["bench", "--json", "{bad}/b.json"], "--json"),
    (["bench", "--markdown", "{bad}/b.md"], "--markdown"),
    (["site", "--no-parity", "--out", "{bad}/site"], "--out"),
])
@pytest.mark.parametrize("bad", ["read-only", "under-a-file"])
def test_outputs_checked_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str],
                                         option: str, bad: str) -> None:
    """A read-only or impossible output is refused before anything runs: the data folder does not
    exist, so any work would fail with another message first."""
    folder = _unwritable(tmp_path) if bad == "read-only" else tmp_path / "a-file"
    if bad == "under-a-file":
        folder.write_text("x")
    argv = [a.replace("{bad}", str(folder)) for a in argv]
    if argv[0] in ("train", "compare"):
        argv += ["--data-dir", str(tmp_path / "no-such-folder")]
    code, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1, err
    assert option in lines[0] and str(folder) in lines[0] and ".tmp" not in lines[0]
    assert ("not writable" if bad == "read-only" else "is a file, not a folder") in lines[0]


def test_same_output_twice_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = str(tmp_path / "x")
    code, _, err = run_cli(capsys, "compare", "--model", "mlp", "--json", path, "--plot", path)
    assert code == 2 and "--plot and --json name the same file" in err


def test_compare_divergence_is_one_message(capsys: pytest.CaptureFixture[str], mnist_dir: Path) -> None:
    code, _, err = run_cli(capsys, "compare", "--model", "mlp", "--frameworks", "numpy", "--limit", "200",
                           "--epochs", "1", "--optimizer", "sgd", "--lr", "1e30",
                           "--data-dir", str(mnist_dir))
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "loss became" in lines[0] and "Traceback" not in err


def test_resume_keeps_and_takes_weight_decay(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             mnist_dir: Path) -> None:
    first, second, third = (tmp_path / f"{n}.safetensors" for n in ("a", "b", "c"))
    common = [*TRAIN, "--epochs", "1", "--data-dir", str(mnist_dir)]
    assert run_cli(capsys, *common, "--weight-decay", "0.1", "--out", str(first))[0] == 0
    assert run_cli(capsys, *common, "--resume", str(first), "--out", str(second))[0] == 0
    assert load_weights(second)[1].weight_decay == 0.1  # the file's value, not 0.0
    code, out, _ = run_cli(capsys, *common, "--resume", str(first), "--weight-decay", "0.2",
                           "--out", str(third))
    assert code == 0 and "weight decay 0.2" in out and load_weights(third)[1].weight_decay == 0.2


def test_eval_needs_only_the_test_split(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        mnist_dir: Path) -> None:
    test_only = tmp_path / "test-only"
    test_only.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, test_only)
    weights = tmp_path / "w.safetensors"
    save_weights(weights, init_params(MLPConfig()), MLPConfig())
    code, out, err = run_cli(capsys, "eval", "--framework", "numpy", "--model", "mlp", "--weights",
                             str(weights), "--data-dir", str(test_only), "--limit", "100")
    assert code == 0, err
    assert "test accuracy" in out


def test_parity_trajectories_without_data_fails_first(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_framework("torch")
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, out, err = run_cli(capsys, "parity", "--framework", "torch", "--trajectories")
    assert code == 1 and out == "" and "not found" in err and "rosetta data --download" in err
    assert "checking" not in err  # nothing ran


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_parity_framework_that_fails_to_load_is_one_message(tmp_path: Path, jobs: str) -> None:
    """An install that is found but does not import (Chainer without pkg_resources): one message
    naming the framework and its extra, exit 1, whether this process loads it (--jobs 1) or only
    the worker processes do (--jobs 2: this process looks the framework up without importing)."""
    fake = tmp_path / "chainer"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pkg_resources'\", name='pkg_resources')\n")
    path = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run([sys.executable, "-m", "rosetta.cli", "parity", "--framework", "chainer",
                           "--model", "mlp", "--dtype", "float64", "--jobs", jobs],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "framework 'chainer' is not installed (ModuleNotFoundError: No module named 'pkg_resources')" \
        in proc.stderr and "pip install 'mnist-rosetta[chainer]'" in proc.stderr
    assert "Traceback" not in proc.stderr and "tensors compared" not in proc.stdout


def test_convert_never_replaces_its_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, init_params(MLPConfig()), MLPConfig())
    before = path.read_bytes()
    code, _, err = run_cli(capsys, "convert", str(path), "--to", "npz", "--out", str(path))
    assert code == 2 and "is the input" in err and path.read_bytes() == before
    hparams = tmp_path / "h.safetensors"
    shutil.copy(path, hparams)
    code, _, err = run_cli(capsys, "convert", str(path), "--from", "npz", "--hparams-from", str(hparams),
                           "--out", str(hparams))
    assert code == 2 and "is --hparams-from" in err and hparams.read_bytes() == before


def test_framework_start_up_notices_are_held_back(capfd: pytest.CaptureFixture[str]) -> None:
    """TensorFlow's C++ start-up lines (written to fd 2 whatever TF_CPP_MIN_LOG_LEVEL says) are
    dropped while a framework loads; anything else written meanwhile comes through."""
    from rosetta.registry import quiet_native_start_up

    with quiet_native_start_up():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written "
                    b"to STDERR\n")
        os.write(2, b"I0000 00:00:1796174955.619261   22168 port.cc:153] oneDNN custom operations are on. "
                    b"You may see slightly different numerical results\n")
        os.write(2, b"E0000 something real went wrong\n")
    err = capfd.readouterr().err
    assert err == "E0000 something real went wrong\n"


def test_unknown_option_shows_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--framework", "numpy", "--model", "mlp", "--bogus", "1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith("usage: rosetta train ") and "--framework FRAMEWORK" in err
    assert "rosetta train: error: unrecognized arguments: --bogus 1" in err


def test_every_option_has_help() -> None:
    """Every option of every subcommand says what it does in --help, and its default where it has
    one that is not None (flags, whose default is not being given, aside; hidden aliases too)."""
    import argparse

    from rosetta.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    silent = [f"{name} {a.option_strings[0]}" for name, parser in sub.choices.items()
              for a in parser._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction) and not a.help]
    assert not silent, f"options without help: {silent}"
    no_default = [f"{name} {a.option_strings[0]}" for name, parser in sub.choices.items()
                  for a in parser._actions
                  if a.option_strings and a.default is not None and a.nargs != 0
                  and a.help != argparse.SUPPRESS and "default" not in a.help.lower()]
    assert not no_default, f"options whose help does not state their default: {no_default}"
