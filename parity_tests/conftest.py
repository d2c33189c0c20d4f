"""Shared fixtures: framework availability (skip, or fail under ROSETTA_REQUIRE_ALL=1) and MNIST."""

from __future__ import annotations

import importlib
import os
import types
from pathlib import Path

import pytest

from rosetta.adapters import FrameworkNotInstalled, adapter_class

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require_all() -> bool:
    """CI sets ROSETTA_REQUIRE_ALL=1: then a missing framework or data set fails, never skips."""
    return os.environ.get("ROSETTA_REQUIRE_ALL") == "1"


def require_framework(framework: str) -> None:
    """Skip the calling test when ``framework`` is not installed, or fail under REQUIRE_ALL."""
    try:
        adapter_class(framework)
    except FrameworkNotInstalled as exc:
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {exc}")
        pytest.skip(str(exc))


def import_framework(module: str) -> types.ModuleType:
    """``pytest.importorskip`` for a framework module, except under ROSETTA_REQUIRE_ALL=1, where a
    missing framework raises (a collection error fails CI)."""
    if require_all():
        return importlib.import_module(module)
    return pytest.importorskip(module)


def mnist_dir_or_skip() -> Path:
    """The real MNIST folder from $MNIST_DIR; skip without it (fail under REQUIRE_ALL)."""
    value = os.environ.get("MNIST_DIR")
    if not value or not Path(value).is_dir():
        message = "MNIST_DIR is not set to a folder with the MNIST IDX files"
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {message}")
        pytest.skip(message)
    return Path(value)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return mnist_dir_or_skip()
