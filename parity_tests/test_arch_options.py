"""Architecture options (rosetta/commands/_arch.py) and the honesty of every ``convert --from``
route: what the tensors cannot show comes from metadata or an option, or the command refuses."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from rosetta.cli import main
from rosetta.commands._arch import ArchError, add_architecture_options, config_from_args
from rosetta.configs import DEEP_CONV_PARAMS, make_config
from rosetta.weights import init_params, load_weights, save_weights


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    add_architecture_options(p)
    return p.parse_args(list(argv))


def test_options_build_every_model() -> None:
    mlp = config_from_args(parse("--model", "mlp", "--hidden-sizes", "50", "100", "--activation", "sigmoid",
                                 "--batchnorm", "--dropout", "0.2", "--dropout-mode", "course",
                                 "--weight-decay", "0.1", "--weight-decay-l1", "0.01", "--bn-eps", "1e-6"))
    assert (mlp.hidden_sizes, mlp.activation, mlp.use_batchnorm, mlp.dropout_ratio, mlp.dropout_mode,
            mlp.weight_decay, mlp.weight_decay_l1, mlp.bn_eps) == ((50, 100), "sigmoid", True, 0.2, "course",
                                                                   0.1, 0.01, 1e-6)
    cnn = config_from_args(parse("--model", "cnn", "--filter-num", "16", "--filter-size", "3", "--pad", "1",
                                 "--stride", "1", "--hidden-size", "50"))
    assert (cnn.filter_num, cnn.filter_size, cnn.pad, cnn.hidden_size) == (16, 3, 1, 50)
    deep = config_from_args(parse("--model", "deepcnn", "--pad", "1", "1", "1", "1", "1", "1"))
    assert [p[2] for p in deep.conv_params] == [1] * 6
    assert config_from_args(parse("--preset", "deepconvnet")).conv_params == DEEP_CONV_PARAMS
    two = config_from_args(parse("--preset", "twolayernet", "--hidden-sizes", "20"))
    assert two.hidden_sizes == (20,) and two.activation == "sigmoid"


@pytest.mark.parametrize("argv, match", [
    (("--model", "cnn", "--activation", "relu"), "--activation does not apply to model 'cnn'"),
    (("--model", "deepcnn", "--pad", "1"), "six values"),
    (("--model", "cnn", "--preset", "twolayernet"), "--preset twolayernet is a 'mlp' model"),
    ((), "pass --model or --preset"),
])
def test_bad_combinations(argv: tuple[str, ...], match: str) -> None:
    with pytest.raises(ArchError, match=match) as info:
        config_from_args(parse(*argv))
    assert info.value.status == 2


def test_option_contradicting_the_file_names_both_values() -> None:
    file_config = make_config("mlp", activation="sigmoid")
    expected = "--activation relu contradicts w.safetensors's activation sigmoid"
    with pytest.raises(ArchError, match=expected) as info:
        config_from_args(parse("--activation", "relu"), file_config, file_name="w.safetensors")
    assert info.value.status == 1
    assert config_from_args(parse("--activation", "sigmoid"), file_config) == file_config
    assert config_from_args(parse(), file_config) == file_config  # the file fixes the model: no --model


@pytest.mark.parametrize("value", ["-0.1", "1.0", "nan"])
def test_dropout_validated_when_parsed(value: str) -> None:
    with pytest.raises(SystemExit):
        parse("--dropout", value)


def test_npz_without_metadata_refuses_the_activation_guess(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """The issue's case: a sigmoid MLP as a bare .npz was silently evaluated as ReLU."""
    config = make_config("mlp", hidden_sizes=(20, 30), activation="sigmoid")
    bare = tmp_path / "bare.npz"
    np.savez(bare, **init_params(config))
    out = tmp_path / "o.safetensors"
    assert main(["convert", str(bare), "--from", "npz", "--model", "mlp", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "pass --activation sigmoid or --activation relu" in err and not out.exists()
    assert main(["convert", str(bare), "--from", "npz", "--model", "mlp", "--activation", "sigmoid",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "hidden_sizes=(20, 30)  (fc1.W..fc3.W shapes)" in printed and "activation='sigmoid'" in printed
    assert load_weights(out)[1] == config


def test_cnn_pad_and_stride_inferred_or_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config("cnn", filter_num=4, filter_size=3, pad=1, hidden_size=8)
    bare = tmp_path / "cnn.npz"
    np.savez(bare, **init_params(config))
    out = tmp_path / "o.safetensors"
    assert main(["convert", str(bare), "--from", "npz", "--model", "cnn", "--out", str(out)]) == 0
    assert "pad=1  (the only setting" in capsys.readouterr().out and load_weights(out)[1] == config
    # a 3x3 conv with stride 2: pad 1 (14 -> 7) and pad 2 (14 -> 7) give the same fc1 size
    strided = make_config("cnn", filter_num=2, filter_size=3, pad=1, stride=2, hidden_size=4)
    np.savez(bare, **init_params(strided))
    code = main(["convert", str(bare), "--from", "npz", "--model", "cnn", "--out", str(tmp_path / "t.st")])
    err = capsys.readouterr().err
    assert code == 1 and "several settings" in err and "pass --pad and --stride" in err


def test_native_file_where_canonical_expected_names_the_command(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config("mlp")
    canonical = tmp_path / "w.safetensors"
    save_weights(canonical, init_params(config), config)
    assert main(["convert", str(canonical), "--to", "npz", "--out", str(tmp_path / "w.npz")]) == 0
    (tmp_path / "course.pkl").write_bytes(b"\x80\x04N.")
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    capsys.readouterr()
    for name, command in (("w.npz", "--from npz"), ("course.pkl", "--from dlfs"),
                          ("model.pt", "--from torch")):
        weights = str(tmp_path / name)
        assert main(["eval", "--framework", "numpy", "--model", "mlp", "--weights", weights]) == 1
        err = capsys.readouterr().err
        assert "rosetta convert" in err and command in err and err.count("\n") == 1, err
