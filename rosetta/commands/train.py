"""``rosetta train``: train the MLP or CNN in one framework, with the shared loop and batch order."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rosetta.adapters import make_adapter
from rosetta.commands import add_framework_option, formatter, model_arg
from rosetta.commands._arch import add_architecture_options, config_from_args, requested_model
from rosetta.commands._common import (
    add_data_options,
    add_model_options,
    add_recipe_options,
    build_adapter,
    describe_recipe,
    optimizer_options,
    recipe,
)
from rosetta.configs import MODEL_NAMES, to_metadata
from rosetta.training import EpochResult, TrainingInterrupted, epoch_lr, fit, load_splits, notes_line
from rosetta.weights import WeightFileError, load_weights, read_metadata

DESCRIPTION = ("rosetta train: train the MLP, CNN or deep CNN in one framework, with the shared loop "
               "and batch order.")
EPILOG = """examples:
  rosetta train --framework numpy --model cnn --out cnn.safetensors
  rosetta train --framework torch --model mlp --epochs 3 --optimizer momentum --lr 0.05
  rosetta train --framework tf --model cnn --resume cnn.safetensors --epochs 2
  rosetta train --framework chainer --model mlp --limit 2000 --epochs 1     # a quick look

Without options the default recipe of the model runs (Adam, lr 2e-3 decayed x0.7 per epoch,
batch 100; MLP 10 epochs, CNN 6 epochs, He init, seed 0). Same seed and options: same initial
weights and batch order in every framework. Ctrl-C stops after the current step and saves the weights.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model in one framework", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=formatter())
    add_framework_option(p, "the framework to train in", several=False)
    p.add_argument("--model", type=model_arg, default=None,
                   help=f"{', '.join(MODEL_NAMES)} (or --preset; with --resume, the file's)")
    add_recipe_options(p)
    add_model_options(p)
    add_architecture_options(p, weight_decay=False)
    add_data_options(p)
    p.add_argument("--out", help="canonical weights, saved atomically after every epoch (default: not saved)")
    p.add_argument("--resume", help="start from these canonical weights (optimizer state restarts; default: "
                   "fresh weights from --init and --seed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(outputs=("out",))
    return p


MAX_EPOCH = 1_000_000


def resume_epoch(path: str, meta: dict[str, str]) -> int:
    """The epochs a weight file has been trained for (metadata ``epoch``, 0 when absent)."""
    value = meta.get("epoch", "0")
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EPOCH:
        raise WeightFileError(f"{path}: metadata 'epoch' is {value!r}, expected a whole number from 0 "
                              f"to {MAX_EPOCH}")
    return int(value)


def run(args: argparse.Namespace) -> int:
    start_epoch = 0
    params = None
    if args.resume:
        params, file_config = load_weights(args.resume, model=requested_model(args), dtype=args.dtype)
        start_epoch = resume_epoch(args.resume, read_metadata(args.resume))
        # The file fixes the architecture; the regularisation options win over its values (saved).
        fixed = [n for n in to_metadata(file_config) if n not in ("weight_decay", "weight_decay_l1")]
        config = config_from_args(args, file_config, fixed=fixed, file_name=args.resume)
    else:
        config = config_from_args(args)
    args.model = config.name
    r = recipe(args)
    epochs, lr, decay = int(r["epochs"]), float(r["lr"]), float(r["lr_decay"])  # type: ignore[arg-type]
    last_lr = epoch_lr(lr, decay, start_epoch + epochs - 1)
    if not last_lr >= np.finfo(np.float32).tiny:
        at = f" ({args.resume} is at epoch {start_epoch})" if args.resume else ""
        print(f"rosetta train: error: --lr {lr:g} x --lr-decay {decay:g} per epoch is {last_lr:.3g} by "
              f"epoch {start_epoch + epochs}{at}: nothing would be learned; pass --lr-decay 1 or a "
              "larger --lr", file=sys.stderr)
        return 1
    data = load_splits(config, args.data_dir, args.dtype, args.limit)
    if params is not None:
        adapter = make_adapter(args.framework, config, params, args.dtype)
    else:
        adapter = build_adapter(args.framework, config, args.dtype, str(r["init"]), int(r["seed"]))
    adapter.set_optimizer(str(r["optimizer"]), **optimizer_options(r))
    notes = r["epoch_line"] == "notes"
    resumed = f", from {args.resume} at epoch {start_epoch}" if args.resume else ""
    print(f"model {config.describe()}")
    print(f"train {args.model} in {args.framework} ({args.dtype}): {describe_recipe(r)}, "
          f"weight decay {config.weight_decay:g}{resumed}, "
          f"{len(data.x_train)} train / {len(data.x_test)} test examples")

    def on_epoch(e: EpochResult) -> None:
        if notes:
            print(notes_line(e), flush=True)
            return
        print(f"epoch {e.epoch:>3}  train loss {e.train_loss:.4f}  train acc {e.train_acc:.4f}  "
              f"test acc {e.test_acc:.4f}  {e.seconds:.1f} s", flush=True)

    metadata = {"framework": args.framework, "optimizer": str(r["optimizer"]), "lr": str(r["lr"]),
                "seed": str(r["seed"])}
    try:
        history = fit(adapter, data, epochs, int(r["batch_size"]), int(r["seed"]),  # type: ignore[arg-type]
                      start_epoch=start_epoch, out=args.out, metadata=metadata,
                      progress=not args.no_progress and sys.stderr.isatty(), on_epoch=on_epoch,
                      lr=lr, lr_decay=decay, shuffle=r["batch_order"] == "shuffled", whole_train=notes)
    except TrainingInterrupted as exc:
        saved = f"; weights saved to {Path(exc.saved)}" if exc.saved else ""
        print(f"rosetta train: interrupted{saved}", file=sys.stderr)
        return 130
    if args.out and history:
        print(f"saved {args.out}")
    print(f"test accuracy: {history[-1].test_acc:.4f}")
    return 0
