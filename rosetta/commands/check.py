"""``rosetta check REF PORT``: check a hand-written port against a course-style network (or a
framework model), layer by layer, and name the porting difference where they part."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rosetta.commands import formatter

EPILOG = """REF and PORT are path/to/file.py:NAME, NAME an object in that file or a zero-argument
factory (given dtype= when it takes one). REF: a course-style NumPy network (params, layers,
lastLayer/last_layer) or a torch/Keras/Chainer model; PORT: a torch.nn.Module, keras.Model or
chainer.Chain. The port's loss is its last_layer/criterion/loss_fn/lossfun attribute, else the
framework's softmax cross-entropy.

examples:
  rosetta check my_course.py:TwoLayerNet my_port.py:make_port
  rosetta check my_course.py:net my_port.py:model --input mnist --data-dir ../shared/mnist
  rosetta check notes_chainer.py:NN my_torch.py:Net --dtype float32 --json check.json
  rosetta check my_course.py:net my_port.py:model --steps 3 --optimizer sgd --lr 0.1

exit status: 0 everything agrees within the tolerance table, 1 something parts (the report says
where and why), 2 usage error (file or name not found, an object the checker cannot drive).
"""


class CheckUsageError(Exception):
    """A REF/PORT or option the checker cannot use (exit 2)."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "check",
        help="check your own port against your course-style network",
        description="Copy REF's weights into PORT, run both layer by layer in eval "
        "and train mode, compare every layer output, the loss, every gradient, the "
        "input gradient (and K optimizer steps), and at the first divergence name "
        "the porting difference that explains it, with its porting-guide section.",
        epilog=EPILOG,
        formatter_class=formatter(),
    )
    p.add_argument("reference", metavar="REF", help="path/to/file.py:NAME of the reference network")
    p.add_argument("port", metavar="PORT", help="path/to/file.py:NAME of the port")
    p.add_argument(
        "--input",
        choices=("random", "mnist"),
        default="random",
        help="random: seeded normals shaped like REF's input (default); mnist: real test "
        "images and labels from --data-dir",
    )
    p.add_argument("--data-dir", help="MNIST folder for --input mnist (default: $MNIST_DIR)")
    p.add_argument("--batch", type=int, default=8, help="examples in the batch (default 8)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="both models in this dtype (default: float64, the strict bounds)")
    p.add_argument("--steps", type=int, default=0, help="also compare K optimizer steps (default: 0, none)")
    p.add_argument("--optimizer", choices=("sgd", "momentum", "adam"), default="sgd",
                   help="the optimizer of the --steps (default: sgd)")
    p.add_argument("--lr", type=float, default=0.01, help="its learning rate (default: 0.01)")
    p.add_argument("--json", metavar="PATH", help="write the whole report as JSON")
    p.add_argument("--verbose", action="store_true", help="list every comparison, not only those that part")
    return p


def load_object(spec: str, role: str) -> Any:
    """The object NAME of ``path/to/file.py:NAME``."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise CheckUsageError(f"{role} must be path/to/file.py:NAME, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise CheckUsageError(f"{role}: no such file: {path}")
    module_name = f"rosetta_check_{role.lower()}_{abs(hash(str(file.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise CheckUsageError(f"{role}: cannot import {path} (not a Python file?)")
    module = importlib.util.module_from_spec(loader_spec)
    sys.path.insert(0, str(file.resolve().parent))  # the file may import its neighbours
    try:
        sys.modules[module_name] = module
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file: one message, no traceback
        raise CheckUsageError(f"{role}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(file.resolve().parent))
    if not hasattr(module, name):
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise CheckUsageError(f"{role}: {path} has no {name!r} (it defines: {', '.join(names[:12])})")
    return getattr(module, name)


def _check_output_path(path: str) -> None:
    target = Path(path)
    if target.is_dir():
        raise CheckUsageError(f"--json {path}: is a folder")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise CheckUsageError(f"--json {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CheckUsageError(f"--json {path}: folder {parent} is not writable")


def _write_atomic(path: str, data: bytes) -> None:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=".check-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _usage(message: str) -> int:
    print(f"rosetta check: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from rosetta.check import CheckError, check

    try:
        if args.batch < 1 or args.steps < 0:
            raise CheckUsageError("--batch must be at least 1 and --steps at least 0")
        if args.json:
            _check_output_path(args.json)
        if args.input == "random" and args.data_dir:
            raise CheckUsageError("--data-dir needs --input mnist")
        reference = load_object(args.reference, "REF")
        port = load_object(args.port, "PORT")
    except CheckUsageError as exc:
        return _usage(str(exc))
    x = t = None
    if args.input == "mnist":
        from rosetta.data import load_mnist

        x, t = load_mnist("test", args.data_dir, layout="NCHW", dtype=args.dtype, limit=args.batch)
    try:
        report = check(
            reference,
            port,
            x,
            t,
            dtype=args.dtype,
            batch=args.batch,
            steps=args.steps,
            optimizer=args.optimizer,
            lr=args.lr,
        )
    except CheckError as exc:
        return _usage(str(exc))
    print(report.format(verbose=args.verbose))
    if args.json:
        _write_atomic(args.json, json.dumps(report.to_dict(), indent=1).encode())
        print(f"wrote {args.json}")
    return 0 if report.ok else 1
