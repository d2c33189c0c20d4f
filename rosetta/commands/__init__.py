"""Subcommands of ``rosetta``: each module has ``add_parser(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse

from rosetta.configs import MODEL_NAMES
from rosetta.registry import FRAMEWORK_NAMES, PORTS, resolve

FRAMEWORKS = FRAMEWORK_NAMES


class UsageError(Exception):
    """A bad option value found after parsing; rosetta.cli prints it as a usage error (exit 2)."""


def framework_arg(value: str) -> str:
    """argparse type for --framework: an alias resolves (keras -> tf); unknown names exit 2."""
    try:
        return resolve(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port_arg(value: str) -> str:
    """argparse type for a port (a framework other than the NumPy reference)."""
    name = framework_arg(value)
    if name not in PORTS:
        raise argparse.ArgumentTypeError(f"{value!r} is the reference, not a port; choose one of: "
                                         f"{', '.join(PORTS)}")
    return name


def model_arg(value: str) -> str:
    """argparse type for --model."""
    if value not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"unknown model {value!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return value


def formatter() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


__all__ = ["FRAMEWORKS", "UsageError", "framework_arg", "formatter", "model_arg", "port_arg"]
