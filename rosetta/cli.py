"""The ``rosetta`` command line: one subcommand per module in :mod:`rosetta.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from rosetta.commands import UsageError
from rosetta.commands._arch import ArchError
from rosetta.commands._common import USER_ERRORS

# Each module defines add_parser(subparsers) and run(args) -> int (the exit status).
COMMANDS = ("env", "data", "parity", "train", "eval", "compare", "convert", "bench", "site", "check")

EPILOG = """examples:
  rosetta env                          # versions, imports, BLAS and threads
  rosetta data --data-dir ../shared/mnist
  rosetta parity                       # the four implementations agree? (the main report)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rosetta", description="mnist-rosetta: one MNIST MLP and CNN in NumPy, PyTorch, "
        "TensorFlow/Keras and Chainer, proven to agree.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"rosetta.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"rosetta.commands.{name}":
                raise
            continue
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(run=module.run, parser=sub_parser)
    return parser


def check_outputs(args: argparse.Namespace) -> None:
    """Every output a command will write (its ``outputs``: option dests), checked before any work
    starts: not the same path twice, each writable (OSError naming the option and the path)."""
    from rosetta.weights import check_writable

    given = [(dest, getattr(args, dest)) for dest in getattr(args, "outputs", ()) if getattr(args, dest)]
    seen: dict[str, str] = {}
    for dest, value in given:
        option = "--" + dest.replace("_", "-")
        key = os.path.realpath(value)
        if key in seen:
            raise UsageError(f"{option} and {seen[key]} name the same file {value}")
        seen[key] = option
        check_writable(value, option)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up log
    # The parity matrix builds one compiled TF step per model on purpose: no retracing warnings.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from rosetta.bench import keep_freed_memory

    # Training, parity and bench loops allocate afresh every step: freed memory stays in this
    # process and its workers (rosetta.bench.MALLOC_SETTINGS: why).
    keep_freed_memory(os.environ)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top level's: it lists the options that exist
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        check_outputs(args)
        return int(args.run(args) or 0)
    except UsageError as exc:
        parser.exit(2, f"rosetta {args.command}: error: {exc}\n")
    except ArchError as exc:  # options that do not fit together (2) or contradict a file (1)
        print(f"rosetta {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except USER_ERRORS as exc:
        print(f"rosetta {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path the user gave: unwritable, a folder, missing parent, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rosetta {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
