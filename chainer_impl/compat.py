"""NumPy 2 compatibility for Chainer 7.8.1 (its last release, 2022).

Chainer reads ``numpy.sctypes`` at import time; NumPy 2.0 removed that attribute (NEP 52).
This module restores it, with the NumPy 1.x contents, before ``import chainer``. It changes
nothing else. Every module of ``chainer_impl`` imports ``chainer`` through :func:`import_chainer`.
Chainer also imports ``pkg_resources`` at run time, which setuptools >= 81 no longer ships:
the project constrains ``setuptools<81``.
"""

from __future__ import annotations

import types

import numpy as np


def restore_sctypes() -> None:
    """Put back ``np.sctypes`` (removed in NumPy 2.0) if it is missing."""
    if "sctypes" in np.__dict__:
        return
    np.sctypes = {  # type: ignore[attr-defined]
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64],
        "complex": [np.complex64, np.complex128],
        "others": [bool, object, bytes, str, np.void],
    }


def import_chainer() -> types.ModuleType:
    """Import Chainer after applying the NumPy 2 shim; returns the ``chainer`` module."""
    restore_sctypes()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pkg_resources deprecation notice
        import chainer
    return chainer
