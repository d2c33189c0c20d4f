"""``rosetta env``: versions, imports, BLAS and thread counts of the four frameworks."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys

import numpy as np

from rosetta.bench import MALLOC_SETTINGS
from rosetta.commands import add_framework_option, formatter
from rosetta.registry import FRAMEWORKS, PORTS, quiet_native_start_up


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("env", help="versions, imports, BLAS and threads",
                       description="Print Python, NumPy and each framework's version, whether it "
                       "imports, BLAS and thread counts, each framework under its one name with its "
                       "Python module in parentheses. Exit 0 when all of them import.",
                       epilog="examples:\n  rosetta env\n  rosetta env --framework tf     # only TensorFlow",
                       formatter_class=formatter())
    add_framework_option(p, "framework(s) to report", "all")
    return p


def blas_info() -> str:
    """NumPy's BLAS library name and version, from its build configuration."""
    config = getattr(np.__config__, "CONFIG", {})  # NumPy >= 1.26 keeps its build info here
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()


def _import(framework: str) -> tuple[object | None, str]:
    """The framework's module, imported through its implementation package (Chainer's NumPy 2
    shim included), or None and why not."""
    entry = FRAMEWORKS[framework]
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up log quiet
        with quiet_native_start_up():  # TensorFlow's C++ start-up lines are not the report
            importlib.import_module(entry.package)
        return importlib.import_module(entry.module), ""
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
        return None, f"{type(exc).__name__}: {exc}"


def _threads(framework: str, module: object) -> str:
    if framework == "torch":
        return f"intra-op threads {module.get_num_threads()}"  # type: ignore[attr-defined]
    if framework == "tf":
        intra = module.config.threading.get_intra_op_parallelism_threads()  # type: ignore[attr-defined]
        return f"intra-op threads {intra or 'auto'}"
    return "uses NumPy's BLAS"


def run(args: argparse.Namespace) -> int:
    print(f"python      {platform.python_version()} ({sys.executable})")
    print(f"platform    {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"numpy       {np.__version__}  BLAS: {blas_info()}")
    malloc = tuple(name for _, _, name in MALLOC_SETTINGS.values())  # set by rosetta's main
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", *malloc):
        if os.environ.get(var):
            print(f"            {var}={os.environ[var]}")
    missing = []
    chosen = args.framework or list(FRAMEWORKS)
    ports = [name for name in PORTS if name in chosen]
    for name in ports:
        entry = FRAMEWORKS[name]
        module, error = _import(name)
        if module is None:
            missing.append(name)
            print(f"{name:<11} ({entry.module}) NOT IMPORTABLE ({error}); install: "
                  f"pip install 'mnist-rosetta[{entry.extra}]'")
            continue
        version = module.__version__  # type: ignore[attr-defined]
        print(f"{name:<11} {version} ({entry.module})  imports: yes  {_threads(name, module)}")
    if missing:
        print(f"{len(missing)} of {len(ports)} frameworks missing: {', '.join(missing)}")
        return 1
    if len(chosen) == len(FRAMEWORKS):
        print(f"all {len(FRAMEWORKS)} implementations can run ({', '.join(FRAMEWORKS)})")
    else:
        print(f"{', '.join(n for n in FRAMEWORKS if n in chosen)} can run")
    return 0
