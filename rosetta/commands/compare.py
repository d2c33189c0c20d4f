"""``rosetta compare``: train all four from the same weights and batch order, side by side."""

from __future__ import annotations

import argparse
import json
import time

from rosetta.adapters import FRAMEWORKS, make_adapter
from rosetta.commands import add_framework_option, formatter, model_arg
from rosetta.commands._arch import add_architecture_options, config_from_args
from rosetta.commands._common import (
    add_data_options,
    add_model_options,
    add_recipe_options,
    describe_recipe,
    optimizer_options,
    recipe,
)
from rosetta.configs import MODEL_NAMES
from rosetta.training import (
    epoch_lr,
    evaluate,
    load_splits,
    max_param_divergence,
    notes_line,
    train_epoch,
)
from rosetta.weights import atomic_write_bytes, init_params

EPILOG = """examples:
  rosetta compare --model mlp --epochs 3 --plot curves.png
  rosetta compare --model cnn --epochs 1 --optimizer sgd --lr 0.1 --limit 5000
  rosetta compare --model mlp --framework torch,tf --epochs 1   # numpy, the reference, always trains
  rosetta compare --preset chainer-notes --epochs 3     # the course notes' Chainer program in all four
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="train all four side by side, plot learning curves",
                       description="Train the model in all four implementations from the same initial "
                       "weights and batch order; print per-epoch loss and accuracy side by side with "
                       "the largest parameter divergence from the reference, and plot the curves.",
                       epilog=EPILOG, formatter_class=formatter())
    p.add_argument("--model", type=model_arg, default=None,
                   help=f"{', '.join(MODEL_NAMES)} (or --preset; one of them is required)")
    add_recipe_options(p)
    add_model_options(p)
    add_architecture_options(p, weight_decay=False)
    add_data_options(p)
    add_framework_option(p, "implementations to train (numpy, the reference, always trains)", "all")
    p.add_argument("--plot", metavar="PNG", help="learning curves, one line per implementation and panel "
                   "(default: no plot)")
    p.add_argument("--json", metavar="PATH", help="per-epoch history of every implementation (default: none "
                   "written)")
    p.set_defaults(outputs=("json", "plot"))
    return p


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    args.model = config.name
    r = recipe(args)
    frameworks = ["numpy", *[f for f in args.framework or FRAMEWORKS if f != "numpy"]]
    params = init_params(config, seed=int(r["seed"]), scheme=str(r["init"]), dtype=args.dtype)
    data = load_splits(config, args.data_dir, args.dtype, args.limit)
    print(f"model {config.describe()}")
    adapters = {f: make_adapter(f, config, params, args.dtype) for f in frameworks}
    for adapter in adapters.values():
        adapter.set_optimizer(str(r["optimizer"]), **optimizer_options(r))
    shuffle, notes = r["batch_order"] == "shuffled", r["epoch_line"] == "notes"
    print(f"compare {args.model} ({args.dtype}): {describe_recipe(r)}, same initial weights and batch "
          f"order in {', '.join(frameworks)}")
    if not notes:  # the notes' lines carry their own labels
        header = "epoch " + " ".join(f"{f + ' loss':>13} {f + ' acc':>12}" for f in frameworks)
        print(header + "   largest param divergence vs numpy")
    history: dict[str, list[dict[str, float]]] = {f: [] for f in frameworks}
    for epoch in range(int(r["epochs"])):
        results = {}
        for framework, adapter in adapters.items():
            adapter.set_lr(epoch_lr(float(r["lr"]), float(r["lr_decay"]), epoch))  # type: ignore[arg-type]
            start = time.perf_counter()
            step_losses: list[float] = []
            loss = train_epoch(adapter, data, epoch, int(r["batch_size"]), int(r["seed"]),  # type: ignore[arg-type]
                               on_step=lambda _, value, out=step_losses: out.append(value), shuffle=shuffle)
            results[framework] = evaluate(adapter, data, epoch + 1, loss, time.perf_counter() - start,
                                          whole_train=notes)
            history[framework].append({**results[framework].as_dict(), "step_losses": step_losses})
        ref_params = adapters["numpy"].params()
        divergence = {f: max_param_divergence(a.params(), ref_params) for f, a in adapters.items()
                      if f != "numpy"}
        worst = max(divergence.items(), key=lambda kv: kv[1][1], default=("-", ("-", 0.0)))
        if notes:  # the notes' line per implementation, then the divergence
            for f in frameworks:
                print(f"{f:<8} {notes_line(results[f])}")
            print(f"{'':<8} largest param divergence vs numpy: {worst[0]} {worst[1][0]} {worst[1][1]:.2e}")
        else:
            cells = " ".join(f"{results[f].train_loss:>13.4f} {results[f].test_acc:>12.4f}"
                             for f in frameworks)
            print(f"{epoch + 1:>5} {cells}   {worst[0]} {worst[1][0]} {worst[1][1]:.2e}")
        for f, (_, rel) in divergence.items():
            history[f][-1]["max_param_divergence"] = rel
    for framework in frameworks:
        seconds = sum(e["seconds"] for e in history[framework])
        print(f"{framework:<8} test accuracy {history[framework][-1]['test_acc']:.4f}  "
              f"train time {seconds:.1f} s")
    if args.json:
        atomic_write_bytes(args.json, json.dumps(history, indent=1).encode())
        print(f"wrote {args.json}")
    if args.plot:
        from rosetta.plots import learning_curves

        learning_curves(history, args.plot)
        print(f"wrote {args.plot}")
    return 0
