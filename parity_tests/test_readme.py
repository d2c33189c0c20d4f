"""The README runs as written: every command it shows parses with the CLI it documents, writes
only into the git-ignored ``out/`` folder, comes after the line that puts ``rosetta`` on the PATH,
and its tolerance table is the one in rosetta/tolerances.py.

(That each command also prints what the README shows is checked by running the walk-through:
``python .ci/check_readme.py``, minutes of training, not part of the suite.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from rosetta.cli import build_parser
from rosetta.tolerances import MIN_ARGMAX_AGREEMENT, tolerance

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OUTPUT_OPTIONS = ("--out", "--json", "--plot", "--markdown")


def console_commands(text: str = README) -> list[str]:
    """The ``$ ...`` lines of every console block, in order."""
    commands = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        commands += [line[2:].strip() for line in block.splitlines() if line.startswith("$ ")]
    return commands


ROSETTA = [c for c in console_commands() if c.startswith("rosetta ")]


def test_the_walk_through_has_commands() -> None:
    assert len(ROSETTA) >= 10, ROSETTA
    assert console_commands()[0] == "source .venv/bin/activate"


@pytest.mark.parametrize("command", ROSETTA)
def test_every_command_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    try:
        args, unknown = build_parser().parse_known_args(argv)
    except SystemExit as exc:  # argparse's error exit
        pytest.fail(f"README command does not parse (exit {exc.code}): {command}")
    assert not unknown, f"unknown arguments {unknown} in: {command}"
    assert callable(args.run)


@pytest.mark.parametrize("command", ROSETTA)
def test_outputs_go_to_the_ignored_folder(command: str) -> None:
    argv = shlex.split(command)
    for option, value in zip(argv, argv[1:], strict=False):
        if option in OUTPUT_OPTIONS:
            assert value.startswith("out/"), f"{option} {value} writes outside out/: {command}"
    assert "/out/" in (ROOT / ".gitignore").read_text().split()


# The README's tolerance table: row label -> the tolerance table's quantities it summarises.
TOLERANCE_ROWS = {
    "logits, loss, activations, gradients, BatchNorm, Dropout (one pass)":
        ("logits", "loss", "activation", "grad", "grad_input", "batchnorm", "dropout"),
    "optimizer steps, eps = lr (10 steps; the strict check)": ("optimizer",),
    "optimizer steps, the course's eps 1e-7 (round-off amplified by up to lr / eps)": ("optimizer_defaults",),
    "SGD trajectory on MNIST": ("trajectory",),
    "Adam trajectory on MNIST": ("trajectory_adam",),
}


def test_tolerance_table_is_the_code_s() -> None:
    rows = dict(re.findall(r"^\| (.+?) \| (.+? \| .+?) \|$", README, re.M))
    for label, quantities in TOLERANCE_ROWS.items():
        assert label in rows, f"README tolerance row {label!r} is missing"
        float64, float32 = (float(v) for v in rows[label].split(" | "))
        for q in quantities:
            assert tolerance("float64", q) == float64, (label, q)
            assert tolerance("float32", q) == float32, (label, q)
    agreement = rows["argmax agreement after a trajectory"].split(" | ")
    assert agreement == [f">= {MIN_ARGMAX_AGREEMENT:.1%}"] * 2
