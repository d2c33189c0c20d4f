"""One name per framework on the command line: every framework option takes the canonical names and
the aliases of the framework table (rosetta/registry.py) and resolves them there; every command
that takes several frameworks takes them in one shape; help states defaults and has no RST.

Cheap on purpose: the options are parsed (rosetta.cli.build_parser), no command runs except the
one ``env`` call, restricted to numpy (no framework is imported).
"""

from __future__ import annotations

import argparse
import functools
import types
from pathlib import Path

import pytest

from rosetta.cli import COMMANDS, build_parser, main
from rosetta.commands import FrameworkAction
from rosetta.commands._common import INIT_ALIASES, INIT_NAMES, init_arg
from rosetta.commands.bench import impl_name
from rosetta.registry import FRAMEWORKS, NATIVE_FORMATS, PORTS, resolve_format, resolve_framework
from rosetta.weights import INIT_SCHEMES

# Every name a user may type for each framework: the name itself, its aliases, and one case variant.
SPELLINGS = [(spelling, f.name) for f in FRAMEWORKS.values()
             for spelling in (f.name, *f.aliases, (f.aliases or (f.name,))[0].upper())]

# Each command's framework option: the arguments around it that make the parse succeed, and what
# it allows. "several": the option takes several frameworks (comma-separated, repeatable, all).
WEIGHTS = ["--weights", "w.safetensors"]
OPTIONS = {
    "train": (["--model", "mlp"], tuple(FRAMEWORKS), False),
    "eval": (WEIGHTS, tuple(FRAMEWORKS), True),
    "compare": (["--model", "mlp"], tuple(FRAMEWORKS), True),
    "parity": ([], PORTS, True),
    "env": ([], tuple(FRAMEWORKS), True),
}


@functools.cache
def parser() -> argparse.ArgumentParser:
    """Built once: parsing leaves a parser as it was, and building one imports every command."""
    return build_parser()


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The stderr of a parse that must fail as a usage error (exit 2, nothing on stdout)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    assert info.value.code == 2 and out == "" and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def subparsers() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_table_resolves_every_alias() -> None:
    assert {n: resolve_framework(n) for n in ("keras", "tensorflow", "pytorch", "reference", "TF")} == {
        "keras": "tf", "tensorflow": "tf", "pytorch": "torch", "reference": "numpy", "TF": "tf"}
    with pytest.raises(ValueError, match=r"unknown framework 'jax'; choose one of: numpy, torch, tf, chainer "
                       r"\(aliases: .*keras, tensorflow = tf"):
        resolve_framework("jax")


@pytest.mark.parametrize("command,spelling,name", [
    (command, spelling, name) for command, (_, allowed, _) in OPTIONS.items() for spelling, name in SPELLINGS
    if name in allowed])
def test_every_command_takes_every_alias(command: str, spelling: str, name: str) -> None:
    rest, _, several = OPTIONS[command]
    args = parse(command, "--framework", spelling, *rest)
    assert args.framework == ([name] if several else name)


@pytest.mark.parametrize("command", [c for c, (_, _, several) in OPTIONS.items() if several])
def test_one_shape_for_several_frameworks(command: str) -> None:
    """Comma-separated, repeated, mixed with aliases, ``all`` and compare's old ``--frameworks A B``
    spelling: one list of canonical names, in order, without repeats."""
    rest, allowed, _ = OPTIONS[command]
    a, b = allowed[-1], allowed[-2]
    alias_of_b = (FRAMEWORKS[b].aliases or (b,))[0]
    assert parse(command, "--framework", f"{a},{alias_of_b}", *rest).framework == [a, b]
    assert parse(command, "--framework", a, "--framework", alias_of_b, *rest).framework == [a, b]
    assert parse(command, "--framework", f"{a}, {b}", "--framework", a, *rest).framework == [a, b]
    assert parse(command, "--framework", "all", *rest).framework == list(allowed)
    if command != "eval":  # eval's is required
        assert parse(command, *rest).framework is None  # the command's default: all it allows
    assert parse(command, "--frameworks", a, alias_of_b, *rest).framework == [a, b]


def test_every_multi_framework_option_has_the_one_shape() -> None:
    """No command grows a framework option of another shape: each is the FrameworkAction, and
    --frameworks is only ever its hidden alias."""
    for name, parser in subparsers().items():
        for action in parser._actions:
            if {"--framework", "--frameworks"} & set(action.option_strings):
                assert isinstance(action, FrameworkAction), f"{name} {action.option_strings}"
                if "--frameworks" in action.option_strings:
                    assert action.help == argparse.SUPPRESS and action.dest == "framework"
    assert {n for n, p in subparsers().items()
            if any("--framework" in a.option_strings for a in p._actions)} == set(OPTIONS)


@pytest.mark.parametrize("argv", [["--framework", "torch,tf"],
                                  ["--framework", "torch", "--framework", "keras"], ["--framework", "all"]])
def test_a_one_framework_command_refuses_a_second(capsys: pytest.CaptureFixture[str],
                                                   argv: list[str]) -> None:
    line = usage_error(capsys, "train", *argv, "--model", "mlp")
    if argv[-1] == "all":
        assert line.startswith("rosetta train: error: argument --framework: unknown framework 'all'")
    else:
        assert line == ("rosetta train: error: argument --framework: takes one framework, got 2: torch, tf "
                        "(this command runs in one framework)")
    same_twice = parse("train", "--framework", "torch", "--framework", "pytorch", "--model", "mlp")
    assert same_twice.framework == "torch"


@pytest.mark.parametrize("command", OPTIONS)
def test_a_bad_name_is_one_line_naming_option_value_and_aliases(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    rest, allowed, several = OPTIONS[command]
    line = usage_error(capsys, command, "--framework", f"{allowed[0]},jax", *rest)
    assert line.startswith(f"rosetta {command}: error: argument --framework: unknown framework 'jax'; "
                           f"choose one of: {', '.join(allowed)}{', all' if several else ''} (aliases: ")
    assert "keras, tensorflow = tf" in line and "pytorch = torch" in line
    if command == "parity":
        assert "is the reference, not a port" in usage_error(capsys, command, "--framework", "reference")
    if several:  # compare's older spelling, hidden, in every command that takes several
        assert "argument --frameworks: unknown framework 'jax'" in usage_error(
            capsys, command, "--frameworks", "jax", *rest)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spelling,name", SPELLINGS)
def test_convert_formats_take_every_framework_name(spelling: str, name: str) -> None:
    native = FRAMEWORKS[name].native_format
    assert parse("convert", "w.safetensors", "--to", spelling, "--out", "x").to == native
    assert parse("convert", "x", "--from", spelling, "--out", "w.safetensors").from_ == native
    assert resolve_format(native) == native  # the format names of the files stay accepted (keras, npz)


def test_convert_help_names_tf_and_keras_as_its_alias(capsys: pytest.CaptureFixture[str]) -> None:
    help_text = subparsers()["convert"].format_help()
    assert "tf (*.weights.h5; also keras, tensorflow)" in " ".join(help_text.split())
    assert "--to keras is the same" in help_text
    assert set(NATIVE_FORMATS) == {"npz", "torch", "keras", "chainer"}  # what the files record
    line = usage_error(capsys, "convert", "w.safetensors", "--to", "onnx", "--out", "x")
    assert "argument --to: unknown format 'onnx'; choose one of: numpy" in line and "tf (*.weights.h5" in line


@pytest.mark.parametrize("spelling,name", SPELLINGS)
def test_bench_impls_take_framework_aliases(spelling: str, name: str) -> None:
    assert impl_name(spelling) == name
    assert impl_name(f"{spelling}-adapter") == f"{name}-adapter"


def test_bench_impl_has_the_one_shape() -> None:
    assert parse("bench", "--impl", "pytorch,keras-fit", "--impl", "keras-adapter").impl == [
        "torch", "keras-fit", "tf-adapter"]
    assert len(parse("bench", "--impl", "all").impl) == 11 and parse("bench").impl is None
    with pytest.raises(ValueError, match="unknown implementation 'jax'"):
        impl_name("jax")


def test_env_prints_the_one_name(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """env shows a framework by its one name, its module in parentheses, whatever alias chose it
    (the import is stubbed: the line is under test, not TensorFlow)."""
    from rosetta.commands import env

    threading = types.SimpleNamespace(get_intra_op_parallelism_threads=lambda: 0)
    fake_tf = types.SimpleNamespace(__version__="9.9.9", config=types.SimpleNamespace(threading=threading))
    monkeypatch.setattr(env, "_import", lambda name: (fake_tf, "") if name == "tf" else (None, "stub"))
    assert main(["env", "--framework", "tensorflow,reference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "tf          9.9.9 (tensorflow)  imports: yes  intra-op threads auto" in lines
    assert lines[-1] == "numpy, tf can run"
    assert main(["env", "--framework", "keras", "--framework", "pytorch"]) == 1  # torch is stubbed out
    assert "torch       (torch) NOT IMPORTABLE (stub)" in capsys.readouterr().out


def test_init_names_are_unambiguous(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(INIT_NAMES.values()) == set(INIT_SCHEMES)  # every scheme has one command-line name
    assert {a: init_arg(a) for a in ("he", "glorot", "xavier-glorot", "lecun", "xavier-fanin", "std")} == {
        "he": "he", "glorot": "xavier", "xavier-glorot": "xavier", "lecun": "lecun", "xavier-fanin": "lecun",
        "std": "std"}
    assert set(INIT_ALIASES.values()) <= set(INIT_NAMES)
    line = usage_error(capsys, "train", "--framework", "numpy", "--model", "mlp", "--init", "xavier")
    assert "argument --init: 'xavier' is ambiguous" in line and "lecun" in line and "glorot" in line
    help_text = " ".join(subparsers()["train"].format_help().split())
    assert "what the course calls Xavier (alias xavier-fanin)" in help_text


def test_eval_limit_speaks_of_test_images() -> None:
    help_text = " ".join(subparsers()["eval"].format_help().split())
    assert "--limit LIMIT use only the first N test images" in help_text and "train" not in help_text.split(
        "--limit LIMIT")[1].split("--")[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_rst_markup(command: str) -> None:
    parser = subparsers()[command]
    assert "``" not in parser.format_help() and "``" not in (parser.description or "")

