"""``rosetta.check``: check a hand-written port against a course-style network, layer by layer.

from rosetta.check import check
report = check(TwoLayerNet(784, 50, 10), MyTorchNet())
print(report.format())
"""

from __future__ import annotations

import sys
import types
from typing import Any

from rosetta.check.core import check, detect_framework
from rosetta.check.model import CheckError
from rosetta.check.report import CheckReport

__all__ = ["CheckError", "CheckReport", "check", "detect_framework"]


class _CallableModule(types.ModuleType):
    """``rosetta.check(reference, port)`` calls :func:`check`: the package is callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> CheckReport:
        return check(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
