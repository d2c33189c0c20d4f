"""``rosetta train``: train the MLP or CNN in one framework, with the shared loop and batch order."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rosetta.adapters import OPTIMIZERS
from rosetta.commands import formatter, framework_arg, model_arg
from rosetta.commands._common import add_data_options, add_model_options, build_adapter, recipe
from rosetta.training import (
    EpochResult,
    TrainingDiverged,
    TrainingInterrupted,
    fit,
    load_splits,
)
from rosetta.weights import load_weights, make_config, read_metadata

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
    p = sub.add_parser("train", help="train a model in one framework", description=__doc__,
                       epilog=EPILOG, formatter_class=formatter())
    p.add_argument("--framework", type=framework_arg, required=True, help="numpy|torch|tf|chainer")
    p.add_argument("--model", type=model_arg, required=True, help="mlp|cnn")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-decay", type=float, default=None,
                   help="multiply the learning rate by this after every epoch (1: constant)")
    add_model_options(p)
    add_data_options(p)
    p.add_argument("--out", help="canonical weights, saved atomically after every epoch")
    p.add_argument("--resume", help="start from these canonical weights (optimizer state restarts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    if args.out and Path(args.out).is_dir():
        print(f"rosetta train: error: --out {args.out} is a folder; name a .safetensors file",
              file=sys.stderr)
        return 1
    r = recipe(args)
    config = make_config(args.model, weight_decay=args.weight_decay)
    start_epoch = 0
    adapter = None
    if args.resume:
        params, config = load_weights(args.resume, model=args.model, dtype=args.dtype)
        start_epoch = int(read_metadata(args.resume).get("epoch", "0"))
        from rosetta.adapters import make_adapter

        adapter = make_adapter(args.framework, config, params, args.dtype)
    data = load_splits(config, args.data_dir, args.dtype, args.limit)
    if adapter is None:
        adapter = build_adapter(args.framework, config, args.dtype, str(r["init"]), int(r["seed"]))
    adapter.set_optimizer(str(r["optimizer"]), lr=float(r["lr"]))  # type: ignore[arg-type]
    print(f"train {args.model} in {args.framework} ({args.dtype}): {r['optimizer']} lr {r['lr']} "
          f"(x{r['lr_decay']} per epoch), "
          f"batch {r['batch_size']}, {r['epochs']} epoch(s), init {r['init']}, seed {r['seed']}, "
          f"{len(data.x_train)} train / {len(data.x_test)} test examples")

    def on_epoch(e: EpochResult) -> None:
        print(f"epoch {e.epoch:>3}  train loss {e.train_loss:.4f}  train acc {e.train_acc:.4f}  "
              f"test acc {e.test_acc:.4f}  {e.seconds:.1f} s", flush=True)

    metadata = {"framework": args.framework, "optimizer": str(r["optimizer"]), "lr": str(r["lr"]),
                "seed": str(r["seed"])}
    try:
        history = fit(adapter, data, int(r["epochs"]), int(r["batch_size"]), int(r["seed"]),
                      start_epoch=start_epoch, out=args.out, metadata=metadata,
                      progress=not args.no_progress and sys.stderr.isatty(), on_epoch=on_epoch,
                      lr=float(r["lr"]), lr_decay=float(r["lr_decay"]))  # type: ignore[arg-type]
    except TrainingDiverged as exc:
        print(f"rosetta train: error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        saved = f"; weights saved to {Path(exc.saved)}" if exc.saved else ""
        print(f"rosetta train: interrupted{saved}", file=sys.stderr)
        return 130
    if args.out:
        print(f"saved {args.out}")
    final = history[-1].test_acc if history else adapter.accuracy(data.x_test, data.t_test)
    print(f"test accuracy: {final:.4f}")
    return 0
