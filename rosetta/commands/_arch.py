"""Architecture options shared by the commands: every hyper-parameter of the model table
(rosetta/configs.py) on the command line, and the course's networks by name as presets.

``add_architecture_options(parser)`` adds the options; ``config_from_args(args, file_config)``
turns them into a config. Every option defaults to "not given", so that a weight file's
metadata can fix the model: an option that contradicts the file is an error naming both values.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from rosetta.configs import (
    ACTIVATIONS,
    DEEP_CONV_PARAMS,
    DROPOUT_MODES,
    MODEL_NAMES,
    OUTPUT_ACTIVATIONS,
    ModelConfig,
    config_class,
    make_config,
)

# The course's networks (course name -> model and hyper-parameters). Course presets compute what
# the course's code computes: its Dropout convention (scale at test time) and BatchNorm eps 1e-6.
PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "twolayernet": ("mlp", {"hidden_sizes": (50,), "activation": "sigmoid"}),
    "multilayernet": ("mlp", {"hidden_sizes": (100, 100, 100, 100, 100), "activation": "relu"}),
    "multilayernetextend": ("mlp", {"hidden_sizes": (100, 100, 100, 100, 100), "activation": "relu",
                                    "use_batchnorm": True, "bn_eps": 1e-6, "dropout_mode": "course"}),
    "simpleconvnet": ("cnn", {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1,
                              "hidden_size": 100}),
    "deepconvnet": ("deepcnn", {"conv_params": DEEP_CONV_PARAMS, "hidden_size": 50,
                                "dropout_ratio": 0.5, "dropout_mode": "course"}),
    # The course notes' Chainer program (L.Linear(None, 100) x2, L.Linear(None, 10), ReLU, ReLU and
    # a sigmoid on the output before F.softmax_cross_entropy).
    # NOTE(framework:sigmoid-before-softmax): kept as the notes write it, although it caps the
    # softmax at e / (e + 9) and damps every gradient.
    "chainer-notes": ("mlp", {"hidden_sizes": (100, 100), "activation": "relu",
                              "output_activation": "sigmoid"}),
}
# A preset's training recipe, where the course program it reproduces trains differently from the
# model's default recipe (reference_numpy/train.py DEFAULT_RECIPES); options given override it.
PRESET_RECIPES: dict[str, dict[str, object]] = {
    # The notes' program: Chainer's default init (LeCun normal weights, zero biases), drawn once by
    # init_params so that all four start identical; chainer.optimizers.Adam() as is; batches of
    # 100 in order, no shuffling (x = xs[j * 100:(j + 1) * 100]); its line per epoch. It trains
    # 100 epochs; the preset runs 1 unless --epochs says otherwise.
    # NOTE(framework:adam-eps): Chainer's Adam eps is 1e-8, the course's 1e-7.
    "chainer-notes": {"optimizer": "adam", "lr": 1e-3, "lr_decay": 1.0, "eps": 1e-8, "batch_size": 100,
                      "epochs": 1, "init": "lecun", "seed": 0, "batch_order": "in-order",
                      "epoch_line": "notes"},
}
PRESET_HELP = """presets (the course's networks; options given as well override them):
  twolayernet          mlp 784-50-10, sigmoid (ch04 TwoLayerNet)
  multilayernet        mlp 784-100x5-10, relu (ch06 MultiLayerNet)
  multilayernetextend  multilayernet + BatchNorm (eps 1e-6) and the course's Dropout convention
  simpleconvnet        cnn: conv 30x5x5 pad 0 stride 1, affine 100 (ch07 SimpleConvNet)
  deepconvnet          deepcnn: the book's conv_param_1..6, affine 50, Dropout 0.5 the course's way
  chainer-notes        mlp 784-100-100-10, relu, sigmoid on the output (the course notes' Chainer
                       program) with its recipe: LeCun init, Adam eps 1e-8, batches in order,
                       the notes' line per epoch
"""
CONV_COLUMNS = ("filter_num", "filter_size", "pad", "stride")  # one per conv: the deep CNN takes six


class ArchError(ValueError):
    """Options that do not fit together or contradict a weight file; ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _ratio(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return number


def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number >= 0.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = _non_negative(value)
    if number == 0.0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def _int_at_least(low: int):  # noqa: ANN202 - an argparse type
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {number}")
        return number
    parse.__name__ = f"integer >= {low}"
    return parse


def _preset(value: str) -> str:
    if value not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {value!r}; choose one of: {', '.join(PRESETS)}")
    return value


# option dest -> (the option as written, config field)
OPTIONS: dict[str, tuple[str, str]] = {
    "hidden_sizes": ("--hidden-sizes", "hidden_sizes"),
    "activation": ("--activation", "activation"),
    "output_activation": ("--output-activation", "output_activation"),
    "batchnorm": ("--batchnorm", "use_batchnorm"),
    "dropout": ("--dropout", "dropout_ratio"),
    "dropout_mode": ("--dropout-mode", "dropout_mode"),
    "weight_decay": ("--weight-decay", "weight_decay"),
    "weight_decay_l1": ("--weight-decay-l1", "weight_decay_l1"),
    "bn_eps": ("--bn-eps", "bn_eps"),
    "bn_momentum": ("--bn-momentum", "bn_momentum"),
    "hidden_size": ("--hidden-size", "hidden_size"),
    "filter_num": ("--filter-num", "filter_num"),
    "filter_size": ("--filter-size", "filter_size"),
    "pad": ("--pad", "pad"),
    "stride": ("--stride", "stride"),
}


def add_architecture_options(parser: argparse.ArgumentParser, weight_decay: bool = True) -> None:
    """Add the model's hyper-parameters as options (all default to "not given").

    ``weight_decay=False`` leaves out ``--weight-decay`` for a parser that already has it.
    """
    g = parser.add_argument_group("architecture (default: the model's defaults, or the weight file's)")
    g.add_argument("--preset", type=_preset, metavar="NAME",
                   help=f"a course network: {', '.join(PRESETS)} (sets --model)")
    g.add_argument("--hidden-sizes", type=_int_at_least(1), nargs="+", metavar="N",
                   help="mlp: hidden layer sizes, e.g. --hidden-sizes 50 100")
    g.add_argument("--activation", choices=ACTIVATIONS, help="mlp: hidden activation")
    g.add_argument("--output-activation", choices=OUTPUT_ACTIVATIONS,
                   help="mlp: applied to the last affine output before the softmax")
    g.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="mlp, cnn: BatchNorm after each hidden affine (cnn: after conv1)")
    g.add_argument("--dropout", type=_ratio, metavar="RATIO", help="mlp, deepcnn: dropout ratio (0: none)")
    g.add_argument("--dropout-mode", choices=DROPOUT_MODES,
                   help="inverted (scale 1/(1-r) in training, the frameworks') or course (scale "
                   "1-r at test time)")
    if weight_decay:
        g.add_argument("--weight-decay", type=_non_negative, metavar="L2",
                       help="L2 penalty 0.5*L2*sum(W^2) over every W")
    g.add_argument("--weight-decay-l1", type=_non_negative, metavar="L1", help="L1 penalty L1*sum(|W|)")
    g.add_argument("--bn-eps", type=_positive_float, metavar="EPS", help="BatchNorm eps (course: 1e-6)")
    g.add_argument("--bn-momentum", type=_ratio, metavar="M", help="BatchNorm running-average momentum")
    g.add_argument("--hidden-size", type=_int_at_least(1), metavar="N", help="cnn, deepcnn: affine size")
    g.add_argument("--filter-num", type=_int_at_least(1), nargs="+", metavar="N",
                   help="cnn: filters; deepcnn: six values, conv1..conv6")
    g.add_argument("--filter-size", type=_int_at_least(1), nargs="+", metavar="K",
                   help="cnn: kernel size; deepcnn: six values")
    g.add_argument("--pad", type=_int_at_least(0), nargs="+", metavar="P",
                   help="cnn: pad; deepcnn: six values")
    g.add_argument("--stride", type=_int_at_least(1), nargs="+", metavar="S",
                   help="cnn: stride; deepcnn: six values")


def _given(args: argparse.Namespace) -> dict[str, object]:
    return {dest: getattr(args, dest) for dest in OPTIONS if getattr(args, dest, None) is not None}


def requested_model(args: argparse.Namespace) -> str | None:
    """The model named by --model and --preset (which must agree), or None."""
    model = getattr(args, "model", None)
    preset = getattr(args, "preset", None)
    if preset is not None:
        preset_model = PRESETS[preset][0]
        if model is not None and model != preset_model:
            raise ArchError(f"--preset {preset} is a {preset_model!r} model, not --model {model}")
        return preset_model
    return model


def requested_hparams(
    args: argparse.Namespace, model: str, base_conv: Sequence[Sequence[int]] | None = None,
) -> tuple[dict[str, object], dict[str, str]]:
    """The config fields the preset and the options set for ``model``, and who set each.

    ``base_conv``: the deep CNN's conv settings the per-conv options (six values each) apply
    to (default: the preset's, else the book's).
    """
    fields = {f.name for f in dataclasses.fields(config_class(model)) if f.init}
    values: dict[str, object] = {}
    names: dict[str, str] = {}
    preset = getattr(args, "preset", None)
    if preset is not None:
        for name, value in PRESETS[preset][1].items():
            values[name] = value
            names[name] = f"--preset {preset}"
    given = _given(args)
    conv = [list(p) for p in (values.get("conv_params") or base_conv or DEEP_CONV_PARAMS)]
    conv_given = []
    for dest, value in given.items():
        option, name = OPTIONS[dest]
        if model == "deepcnn" and dest in CONV_COLUMNS:
            if len(value) != 6:  # type: ignore[arg-type]
                raise ArchError(f"{option} takes six values for deepcnn (conv1..conv6), got "
                                f"{len(value)}")  # type: ignore[arg-type]
            col = CONV_COLUMNS.index(dest)
            for row, v in zip(conv, value, strict=True):  # type: ignore[call-overload]
                row[col] = v
            conv_given.append(option)
            continue
        if name not in fields:
            users = [m for m in MODEL_NAMES if name in {f.name for f in dataclasses.fields(config_class(m))}
                     or (m == "deepcnn" and dest in CONV_COLUMNS)]
            raise ArchError(f"{option} does not apply to model {model!r} (it applies to: {', '.join(users)})")
        if dest in CONV_COLUMNS or dest == "hidden_sizes":
            if dest in CONV_COLUMNS and len(value) != 1:  # type: ignore[arg-type]
                raise ArchError(f"{option} takes one value for {model}, got {len(value)}")  # type: ignore[arg-type]
            value = value[0] if dest in CONV_COLUMNS else tuple(value)  # type: ignore[index,arg-type]
        values[name] = value
        names[name] = option
    if conv_given:
        values["conv_params"] = tuple(tuple(r) for r in conv)
        names["conv_params"] = " ".join(conv_given)
    return values, names


def _show(value: object) -> str:
    if isinstance(value, tuple | list):
        return " ".join(_show(v) for v in value) if not any(isinstance(v, tuple | list) for v in value) \
            else ", ".join("(" + _show(v) + ")" for v in value)
    return str(value)


def config_from_args(
    args: argparse.Namespace, file_config: ModelConfig | None = None, fixed: Sequence[str] | None = None,
    file_name: str = "the weight file",
) -> ModelConfig:
    """The model's config from --model/--preset and the architecture options.

    With ``file_config`` (a weight file's config) the file fixes the model and, by default, every
    hyper-parameter: an option that differs is an ArchError (exit 1) naming both values; ``fixed``
    limits that to the named fields, the others the options may change. Without a file: --model
    or --preset is required and the options apply over the model's defaults.
    """
    model = requested_model(args)
    if file_config is not None:
        if model is not None and model != file_config.name:
            raise ArchError(f"{file_name} holds a {file_config.name!r} model, not {model!r}", status=1)
        model = file_config.name
    if model is None:
        raise ArchError("pass --model or --preset (no weight file fixes the model)")
    base_conv = getattr(file_config, "conv_params", None)
    values, names = requested_hparams(args, model, base_conv)
    base = file_config if file_config is not None else make_config(model)
    locked = set(fixed) if fixed is not None else {f.name for f in dataclasses.fields(base)}
    if file_config is not None:
        for name, value in values.items():
            if name in locked and getattr(base, name) != value:
                raise ArchError(f"{names[name]} {_show(value)} contradicts {file_name}'s {name} "
                                f"{_show(getattr(base, name))}", status=1)
    try:
        return dataclasses.replace(base, **values)
    except ValueError as exc:
        raise ArchError(f"{', '.join(sorted(set(names.values())))}: {exc}") from None


__all__ = ["PRESETS", "PRESET_HELP", "PRESET_RECIPES", "ArchError", "add_architecture_options",
           "config_from_args", "requested_hparams", "requested_model"]
