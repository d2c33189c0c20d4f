"""Subcommands of ``rosetta``: each module has ``add_parser(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rosetta.configs import MODEL_NAMES
from rosetta.registry import FRAMEWORK_NAMES, REFERENCE, describe_names, resolve_framework

FRAMEWORKS = FRAMEWORK_NAMES


class UsageError(Exception):
    """A bad option value found after parsing; rosetta.cli prints it as a usage error (exit 2)."""


ALL = "all"  # every framework the option allows


def framework_names(value: str, allowed: Sequence[str] = FRAMEWORK_NAMES,
                    allow_all: bool = True) -> list[str]:
    """The canonical names in one option value: comma-separated names or aliases, or ``all``
    (every name of ``allowed``). ValueError naming the bad value and what is accepted."""
    names: list[str] = []
    for part in value.split(","):
        key = part.strip()
        if allow_all and key.lower() == ALL:
            names.extend(allowed)
            continue
        extra = (ALL,) if allow_all else ()
        try:
            name = resolve_framework(key)
        except ValueError:
            raise ValueError(f"unknown framework {key!r}; choose one of: "
                             f"{describe_names(tuple(allowed), extra)}") from None
        if name not in allowed:
            why = "the reference, not a port" if name == REFERENCE else "not one this command runs"
            raise ValueError(f"{key!r} is {why}; choose one of: {describe_names(tuple(allowed), extra)}")
        names.append(name)
    return names


class FrameworkAction(argparse.Action):
    """``--framework NAME``: repeatable, comma-separated values, aliases resolved to the one name,
    ``all`` where the command takes several. With ``several=False`` a second, different framework
    is refused; the stored value is then the one name, else the list in order, without repeats."""

    def __init__(self, option_strings: Sequence[str], dest: str, allowed: Sequence[str] = FRAMEWORK_NAMES,
                 several: bool = True, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.allowed = tuple(allowed)
        self.several = several

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[str] | None, option_string: str | None = None) -> None:
        given = getattr(namespace, self.dest, None)
        names = list(given) if isinstance(given, list) else [] if given is None else [given]
        for value in [values] if isinstance(values, str) else list(values or ()):
            try:
                found = framework_names(value, self.allowed, allow_all=self.several)
            except ValueError as exc:
                raise argparse.ArgumentError(self, str(exc)) from None
            names.extend(n for n in found if n not in names)
        if not self.several:
            if len(names) > 1:
                raise argparse.ArgumentError(self, f"takes one framework, got {len(names)}: "
                                             f"{', '.join(names)} (this command runs in one framework)")
            setattr(namespace, self.dest, names[0])
            return
        setattr(namespace, self.dest, names)


def add_framework_option(p: argparse.ArgumentParser, what: str, default: str | None = None, *,
                         several: bool = True, allowed: Sequence[str] = FRAMEWORK_NAMES) -> None:
    """The one shape of every framework option: ``--framework NAME`` (``dest`` framework), each
    value a name, an alias, a comma-separated list or ``all``; repeatable where ``several``, which
    also adds compare's older ``--frameworks A B ...`` as a hidden spelling of the same option (so
    that existing scripts keep working, in every command alike). ``default`` None: required."""
    extra = (ALL,) if several else ()
    shape = "repeatable or comma-separated" if several else "exactly one"
    required = default is None
    # Required with a hidden spelling: either one satisfies it (a required group of the two).
    where = p.add_mutually_exclusive_group(required=True) if required and several else p
    where.add_argument("--framework", action=FrameworkAction, allowed=allowed, several=several,
                       required=required and not several, default=None, metavar="FRAMEWORK",
                       help=f"{what}: {describe_names(tuple(allowed), extra)}; {shape} "
                       + ("(required)" if required else f"(default: {default})"))
    if several:
        where.add_argument("--frameworks", action=FrameworkAction, allowed=allowed, several=several,
                           nargs="+", dest="framework", default=None, metavar="FRAMEWORK",
                           help=argparse.SUPPRESS)


def model_arg(value: str) -> str:
    """argparse type for --model."""
    if value not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"unknown model {value!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return value


def formatter() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


__all__ = ["ALL", "FRAMEWORKS", "FrameworkAction", "UsageError", "add_framework_option", "framework_names",
           "formatter", "model_arg"]
