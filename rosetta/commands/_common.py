"""Pieces the train/eval/compare subcommands share: options, the recipe, model building, and the
user errors that rosetta.cli turns into one message."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from reference_numpy.train import DEFAULT_RECIPES
from rosetta.adapters import Adapter, FrameworkNotInstalled, make_adapter
from rosetta.commands._arch import PRESET_RECIPES, ArchError
from rosetta.convert import ConvertError
from rosetta.data import MNISTError
from rosetta.training import TrainingDiverged
from rosetta.weights import ModelConfig, WeightFileError, init_params

USER_ERRORS = (FrameworkNotInstalled, MNISTError, WeightFileError, ConvertError, TrainingDiverged)
MAX_SEED = 2**63 - 1


def int_range(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [minimum, maximum]; argparse names the option in the error."""
    allowed = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {number}")
        return number

    parse.__name__ = "integer"
    return parse


def float_range(low: float, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] (``(low, high]`` with ``low_open``)."""
    allowed = f"{'>' if low_open else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {allowed}, got {value!r}") from None
        ok = math.isfinite(number) and (number > low if low_open else number >= low)
        if not ok or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"must be a finite number {allowed}, got {value}")
        return number

    parse.__name__ = "number"
    return parse


positive_int = int_range(1)

# --init names -> the scheme of rosetta.weights.init_params. The course's "Xavier" is fan-in only
# (LeCun); Glorot's and the frameworks' (glorot_normal, xavier_normal_) is fan_in + fan_out. So
# the command line names them glorot and lecun and takes the unambiguous xavier-* spellings too.
INIT_NAMES = {"he": "he", "glorot": "xavier", "lecun": "lecun", "std": "std"}
INIT_ALIASES = {"xavier-glorot": "glorot", "xavier-fanin": "lecun"}


def init_arg(value: str) -> str:
    """argparse type for --init: a scheme name or alias -> the rosetta.weights scheme."""
    key = INIT_ALIASES.get(value.strip().lower(), value.strip().lower())
    if key == "xavier":
        raise argparse.ArgumentTypeError(
            "'xavier' is ambiguous: the course's Xavier is N(0, 1/fan_in), pass lecun (or xavier-fanin); "
            "Glorot's is N(0, 2/(fan_in + fan_out)), pass glorot (or xavier-glorot)")
    if key not in INIT_NAMES:
        aliases = ", ".join(f"{a} = {n}" for a, n in INIT_ALIASES.items())
        raise argparse.ArgumentTypeError(f"unknown init {value!r}; choose one of: {', '.join(INIT_NAMES)} "
                                         f"(aliases: {aliases})")
    return INIT_NAMES[key]


def init_name(scheme: str) -> str:
    """The --init name of a rosetta.weights scheme (``xavier`` -> ``glorot``), for the banners."""
    return {s: n for n, s in INIT_NAMES.items()}[scheme]


def add_recipe_options(p: argparse.ArgumentParser) -> None:
    """The training recipe of train and compare, each validated when parsed."""
    from rosetta.adapters import OPTIMIZERS

    def per_model(key: str) -> str:
        return ", ".join(f"{m} {DEFAULT_RECIPES[m][key]:g}" if isinstance(DEFAULT_RECIPES[m][key], float)
                         else f"{m} {DEFAULT_RECIPES[m][key]}" for m in DEFAULT_RECIPES)

    p.add_argument("--epochs", type=int_range(1, 100_000), default=None,
                   help=f"epochs to train (>= 1; default, the model's recipe: {per_model('epochs')})")
    p.add_argument("--batch-size", type=int_range(1), default=None,
                   help=f"examples per step (>= 1; default: {per_model('batch_size')})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help=f"default: {per_model('optimizer')}")
    p.add_argument("--lr", type=float_range(0.0, low_open=True), default=None,
                   help=f"learning rate (> 0; default: {per_model('lr')})")
    p.add_argument("--lr-decay", type=float_range(0.0, 1.0, low_open=True), default=None,
                   help="multiply the learning rate by this after every epoch (0 < x <= 1; 1: constant; "
                   f"default: {per_model('lr_decay')})")
    p.add_argument("--eps", type=float_range(0.0, low_open=True), default=None,
                   help="eps of adagrad, rmsprop and adam (> 0; default: the course's 1e-7)")
    p.add_argument("--batch-order", choices=BATCH_ORDERS, default=None,
                   help="shuffled: a seeded permutation per epoch (default); in-order: consecutive "
                   "batches from the first example, every epoch")


SPLIT_SIZES = {"train": 60_000, "test": 10_000}  # MNIST's images per split


def add_data_options(p: argparse.ArgumentParser, splits: tuple[str, ...] = ("train", "test")) -> None:
    """--data-dir and --limit; ``splits``: the MNIST splits the command reads, which --limit cuts
    (eval reads only the test split, so its help must not promise to cut the training set)."""
    p.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DIR, then ~/.cache/mnist-rosetta)")
    cut = " and ".join(f"N {s} images" for s in splits)
    every = ", ".join(f"{SPLIT_SIZES[s]} {s}" for s in splits)
    p.add_argument("--limit", type=positive_int, default=None,
                   help=f"use only the first {cut} (quick runs, tests; default: all, {every})")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="the dtype of the weights, inputs and computation (default: float32)")
    p.add_argument("--init", type=init_arg, default=None, metavar="{" + ",".join(INIT_NAMES) + "}",
                   help="weight init (default: he): he N(0, 2/fan_in); glorot N(0, 2/(fan_in + fan_out)) "
                   "(alias xavier-glorot); lecun N(0, 1/fan_in), what the course calls Xavier (alias "
                   "xavier-fanin); std N(0, 0.01^2). Plain 'xavier' is refused: the course and the "
                   "frameworks mean different schemes by it")
    p.add_argument("--seed", type=int_range(0, MAX_SEED), default=None,
                   help="init and batch-order seed (>= 0; default: 0)")
    p.add_argument("--weight-decay", type=float_range(0.0), default=None,
                   help="L2 penalty 0.5*lambda*sum(W^2) (>= 0; default 0, with --resume the file's)")


BATCH_ORDERS = ("shuffled", "in-order")
EPS_OPTIMIZERS = ("adagrad", "rmsprop", "adam")
RECIPE_KEYS = ("epochs", "batch_size", "optimizer", "lr", "lr_decay", "eps", "batch_order", "init", "seed")


def recipe(args: argparse.Namespace) -> dict[str, object]:
    """The model's default recipe (reference_numpy/train.py), then the preset's (PRESET_RECIPES),
    overridden by the given options. ``eps`` None: the optimizer's course default."""
    r: dict[str, object] = {"lr_decay": 1.0, "eps": None, "batch_order": "shuffled", "epoch_line": "rosetta",
                            **DEFAULT_RECIPES[args.model]}
    preset = getattr(args, "preset", None)
    r.update(PRESET_RECIPES.get(preset or "", {}))
    for key in RECIPE_KEYS:
        if getattr(args, key, None) is not None:
            r[key] = getattr(args, key)
    if r["eps"] is not None and r["optimizer"] not in EPS_OPTIMIZERS:
        given = "--eps" if getattr(args, "eps", None) is not None else f"--preset {preset}'s eps"
        raise ArchError(f"{given} applies to {', '.join(EPS_OPTIMIZERS)}, not --optimizer {r['optimizer']}")
    return r


def optimizer_options(r: dict[str, object]) -> dict[str, float]:
    """The hyper-parameters of the recipe's optimizer for Adapter.set_optimizer."""
    options = {"lr": float(r["lr"])}  # type: ignore[arg-type]
    if r.get("eps") is not None:
        options["eps"] = float(r["eps"])  # type: ignore[arg-type]
    return options


def describe_recipe(r: dict[str, object]) -> str:
    """The recipe in one line (the train and compare banners)."""
    eps = "" if r.get("eps") is None else f" eps {r['eps']:g}"
    decay = "" if float(r["lr_decay"]) == 1.0 else f" (x{r['lr_decay']} per epoch)"  # type: ignore[arg-type]
    return (f"{r['optimizer']} lr {r['lr']}{eps}{decay}, batch {r['batch_size']} ({r['batch_order']}), "
            f"{r['epochs']} epoch(s), init {init_name(str(r['init']))}, seed {r['seed']}")


def build_adapter(framework: str, config: ModelConfig, dtype: str, init: str, seed: int) -> Adapter:
    return make_adapter(framework, config, init_params(config, seed=seed, scheme=init, dtype=dtype), dtype)
