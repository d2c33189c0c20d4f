"""Subcommands of ``rosetta``: each module has ``add_parser(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse

from rosetta.adapters import FRAMEWORKS, check_framework
from rosetta.weights import MODEL_NAMES


def framework_arg(value: str) -> str:
    """argparse type for --framework: unknown names exit 2 listing the choices."""
    try:
        check_framework(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def model_arg(value: str) -> str:
    """argparse type for --model."""
    if value not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"unknown model {value!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return value


def formatter() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


__all__ = ["FRAMEWORKS", "framework_arg", "formatter", "model_arg"]
