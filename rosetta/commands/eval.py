"""``rosetta eval``: test accuracy and confusion matrix; with ``all``, one weight file in all four."""

from __future__ import annotations

import argparse

import numpy as np

from rosetta.adapters import make_adapter
from rosetta.commands import add_framework_option, formatter, model_arg
from rosetta.commands._arch import add_architecture_options, config_from_args, requested_model
from rosetta.commands._common import add_data_options
from rosetta.convert import load_canonical_or_hint
from rosetta.registry import REFERENCE
from rosetta.training import load_test

EPILOG = """examples:
  rosetta eval --framework torch --model cnn --weights cnn.safetensors
  rosetta eval --framework all --model cnn --weights cnn.safetensors --data-dir ../shared/mnist
  rosetta eval --framework torch,tf --weights cnn.safetensors    # numpy, the reference, joins in
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="accuracy and confusion matrix, in one or several frameworks",
                       description="Evaluate canonical weights on the MNIST test set. With several "
                       "frameworks (--framework all: all four), load the same file into each, with the "
                       "NumPy reference among them, and report each accuracy, the share of predictions "
                       "identical to the reference's and the largest logit difference.",
                       epilog=EPILOG, formatter_class=formatter())
    add_framework_option(p, "framework(s) to evaluate in (with several, numpy, the reference, is one)")
    p.add_argument("--model", type=model_arg, default=None,
                   help="mlp, cnn or deepcnn (default: the file's; checked against it when given)")
    p.add_argument("--weights", required=True, help="canonical weight file (.safetensors)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="compute dtype (default: the file's)")
    add_data_options(p, splits=("test",))
    add_architecture_options(p)
    return p


def confusion_matrix(t: np.ndarray, pred: np.ndarray, classes: int = 10) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    return np.bincount(t * classes + pred, minlength=classes * classes).reshape(classes, classes)


def format_confusion(cm: np.ndarray) -> str:
    lines = ["confusion matrix (rows: true digit, columns: predicted)",
             "      " + " ".join(f"{c:>5}" for c in range(cm.shape[1]))]
    lines += [f"{r:>5} " + " ".join(f"{v:>5}" for v in row) for r, row in enumerate(cm)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    params, file_config = load_canonical_or_hint(args.weights, model=requested_model(args))
    # The file fixes the model; an architecture option that contradicts it names both values.
    config = config_from_args(args, file_config, file_name=args.weights)
    dtype = args.dtype or str(next(iter(params.values())).dtype)
    params = {n: v.astype(dtype) for n, v in params.items()}
    data = load_test(config, args.data_dir, dtype, args.limit)  # eval needs only the test split
    print(f"model {config.describe()}")
    # Several: each is compared with the reference, which therefore always runs (first).
    frameworks = args.framework if len(args.framework) == 1 else \
        [REFERENCE, *(f for f in args.framework if f != REFERENCE)]
    logits = {}
    for framework in frameworks:
        adapter = make_adapter(framework, config, params, dtype)
        logits[framework] = adapter.logits(data.x_test)
        acc = float(np.mean(np.argmax(logits[framework], axis=1) == data.t_test))
        print(f"{framework:<8} test accuracy {acc:.4f}")
    if len(frameworks) == 1:
        pred = np.argmax(logits[frameworks[0]], axis=1)
        print(format_confusion(confusion_matrix(data.t_test, pred)))
        print(f"test accuracy: {float(np.mean(pred == data.t_test)):.4f}")
        return 0
    ref = logits[REFERENCE]
    ref_pred = np.argmax(ref, axis=1)
    print(f"agreement with reference_numpy over {len(ref)} test images:")
    for framework in frameworks[1:]:
        same = float(np.mean(np.argmax(logits[framework], axis=1) == ref_pred))
        diff = float(np.max(np.abs(logits[framework].astype(np.float64) - ref)))
        print(f"  {framework:<8} identical predictions {same:.4%}  largest logit difference {diff:.3g}")
    preds = np.stack([np.argmax(v, axis=1) for v in logits.values()])
    all_same = float(np.mean(np.all(preds == preds[0], axis=0)))
    together = {2: "both", 3: "all three", 4: "all four"}.get(len(frameworks), f"all {len(frameworks)}")
    print(f"identical predictions in {together}: {all_same:.4%}")
    print(format_confusion(confusion_matrix(data.t_test, ref_pred)))
    return 0
