"""Pieces the train/eval/compare subcommands share: options, the recipe, model building, and the
user errors that rosetta.cli turns into one message."""

from __future__ import annotations

import argparse

from reference_numpy.train import DEFAULT_RECIPES
from rosetta.adapters import Adapter, FrameworkNotInstalled, make_adapter
from rosetta.data import MNISTError
from rosetta.weights import INIT_SCHEMES, ModelConfig, WeightFileError, init_params

USER_ERRORS = (FrameworkNotInstalled, MNISTError, WeightFileError)


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DIR, then ~/.cache/mnist-rosetta)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N train and N test examples (quick runs, tests)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--init", choices=INIT_SCHEMES, default=None, help="weight init scheme (default: he)")
    p.add_argument("--seed", type=int, default=None, help="init and batch-order seed (default: 0)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty 0.5*lambda*sum(W^2)")


def recipe(args: argparse.Namespace) -> dict[str, object]:
    """The model's default recipe (reference_numpy/train.py), overridden by the given options."""
    r: dict[str, object] = {"lr_decay": 1.0, **DEFAULT_RECIPES[args.model]}
    for key in ("epochs", "batch_size", "optimizer", "lr", "lr_decay", "init", "seed"):
        if getattr(args, key) is not None:
            r[key] = getattr(args, key)
    return r


def build_adapter(framework: str, config: ModelConfig, dtype: str, init: str, seed: int) -> Adapter:
    return make_adapter(framework, config, init_params(config, seed=seed, scheme=init, dtype=dtype), dtype)
