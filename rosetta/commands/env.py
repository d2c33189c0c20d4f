"""``rosetta env``: versions, imports, BLAS and thread counts of the four frameworks."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys

import numpy as np

from rosetta.commands import formatter

# framework -> (module to import, pip extra)
FRAMEWORK_MODULES = {"torch": ("torch", "torch"), "tensorflow": ("tensorflow", "tf"),
                     "chainer": ("chainer", "chainer")}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser("env", help="versions, imports, BLAS and threads",
                          description="Print Python, NumPy and each framework's version, whether it "
                          "imports, BLAS and thread counts. Exit 0 when all four import.",
                          epilog="example:\n  rosetta env", formatter_class=formatter())


def blas_info() -> str:
    """NumPy's BLAS library name and version, from its build configuration."""
    config = getattr(np.__config__, "CONFIG", {})  # NumPy >= 1.26 keeps its build info here
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()


def _import(name: str) -> tuple[object | None, str]:
    try:
        if name == "chainer":
            from chainer_impl.compat import import_chainer

            return import_chainer(), ""
        if name == "tensorflow":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up log quiet
        return importlib.import_module(name), ""
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
        return None, f"{type(exc).__name__}: {exc}"


def _threads(name: str, module: object) -> str:
    if name == "torch":
        return f"intra-op threads {module.get_num_threads()}"  # type: ignore[attr-defined]
    if name == "tensorflow":
        intra = module.config.threading.get_intra_op_parallelism_threads()  # type: ignore[attr-defined]
        return f"intra-op threads {intra or 'auto'}"
    return "uses NumPy's BLAS"


def run(args: argparse.Namespace) -> int:
    print(f"python      {platform.python_version()} ({sys.executable})")
    print(f"platform    {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"numpy       {np.__version__}  BLAS: {blas_info()}")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            print(f"            {var}={os.environ[var]}")
    missing = []
    for name, (module_name, extra) in FRAMEWORK_MODULES.items():
        module, error = _import(module_name)
        if module is None:
            missing.append(name)
            print(f"{name:<11} NOT IMPORTABLE ({error}); install: pip install 'mnist-rosetta[{extra}]'")
            continue
        print(f"{name:<11} {module.__version__}  imports: yes  {_threads(name, module)}")  # type: ignore[attr-defined]
    if missing:
        print(f"{len(missing)} of 3 frameworks missing: {', '.join(missing)}")
        return 1
    print("all four implementations can run (numpy, torch, tensorflow, chainer)")
    return 0
