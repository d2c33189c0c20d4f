"""``rosetta convert``: canonical weights <-> torch / Keras / Chainer / NumPy native checkpoints."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from rosetta.adapters import FrameworkNotInstalled
from rosetta.commands import UsageError, formatter, model_arg
from rosetta.commands._arch import (
    OPTIONS,
    PRESET_HELP,
    ArchError,
    add_architecture_options,
    config_from_args,
    requested_hparams,
    requested_model,
)
from rosetta.convert import (
    ConvertError,
    convert_from_dlfs,
    convert_from_native,
    convert_to_native,
    honest_native_config,
)
from rosetta.course import describe_import, detect_network, read_course_file
from rosetta.registry import FRAMEWORKS, describe_formats, format_name, resolve_format
from rosetta.weights import WeightFileError

DLFS = "dlfs"  # --from only: the course's own parameter files

EPILOG = """examples:
  rosetta convert cnn.safetensors --to torch --out cnn.torch.safetensors
  rosetta convert cnn.safetensors --to tf --out cnn.weights.h5         # --to keras is the same
  rosetta convert cnn.safetensors --to chainer --out cnn.chainer.npz
  rosetta convert cnn.safetensors --to numpy --out cnn.npz             # --to npz is the same
  rosetta convert cnn.weights.h5 --from tf --out back.safetensors
  rosetta convert other.npz --from npz --model mlp --hparams-from mlp.safetensors --out mlp2.safetensors
  rosetta convert other.npz --from npz --model mlp --activation sigmoid --out mlp3.safetensors

the course's own parameter files (--from dlfs): a pickle of the params dict save_params writes
(W1.., b1.., gamma1.., beta1..) or the same dict as .npz, read without pickle; the network is
inferred from the shapes and every value printed with where it came from:
  rosetta convert sample_weight.pkl --from dlfs --activation sigmoid --out ch03.safetensors
  rosetta convert params.pkl --from dlfs --out ch07.safetensors
  rosetta convert deep_convnet_params.pkl --from dlfs --preset deepconvnet --out ch08.safetensors
  rosetta convert extend.pkl --from dlfs --activation relu --dropout 0.5 --bn-stats-from-data DIR \\
      --out extend.safetensors
What tensors cannot show comes from options: an MLP's activation (required), pad and stride when
several fit (a conv's fc1 input size usually settles them: pad < filter size, stride <= filter
size), the deep CNN's conv settings (--preset deepconvnet or --pad/--stride with six values),
Dropout (default none; the course's convention: scale by 1 - ratio at test time) and BatchNorm eps
(the course's 1e-6). The course's files hold no BatchNorm running statistics:
--bn-stats-from-data DIR computes them over DIR's 60000 training images, in order, in batches of
100, the network in train mode (every BatchNorm normalises with its batch's statistics; Dropout in
eval mode): running_mean = mean over all images of the layer's input, running_var = the mean of
the batches' biased variances times m/(m-1) (m = 100).

native files (no pickle anywhere), named by the framework (or the format name in parentheses):
  torch    safetensors with state_dict names (incl. BN buffers):
           model.load_state_dict(safetensors.torch.load_file(path))
  tf       (keras) .weights.h5 from Keras model.save_weights: model.load_weights(path)
  chainer  .npz from chainer.serializers.save_npz: chainer_impl.load_native(model, path)
           (reads without pickle; Chainer's own load_npz enables pickle)
  numpy    (npz) np.savez of the canonical arrays: np.load(path, allow_pickle=False)
Every native file carries the model's hyper-parameters (safetensors metadata, HDF5 root attribute
'mnist_rosetta', .npz zip comment), so converting back needs no option; --hparams-from takes them
from a canonical file instead, --model alone assumes the default hyper-parameters.
"""


def _format(value: str) -> str:
    """argparse type for --to: a framework's name or alias, or its format's name (tf, keras ->
    the keras format); the value is the format the files record."""
    try:
        return resolve_format(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _from_format(value: str) -> str:
    """argparse type for --from: as --to, or the course's dlfs."""
    if value.strip().lower() == DLFS:
        return DLFS
    try:
        return resolve_format(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown format {value!r}; choose one of: {describe_formats()}, "
                                         f"{DLFS} (the course's parameter files)") from None


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("convert", help="canonical weights <-> torch/tf/chainer/numpy native checkpoints",
                       description="Convert a canonical weight file (.safetensors) to a framework's "
                       "native checkpoint (--to) or a native checkpoint back (--from). The round trip "
                       "is bit-exact; writes are atomic.",
                       epilog=EPILOG, formatter_class=formatter())
    p.add_argument("path", help="input: a canonical W.safetensors (with --to) or a native file (with --from)")
    direction = p.add_mutually_exclusive_group(required=True)
    direction.add_argument("--to", type=_format, metavar="FORMAT",
                           help=f"write a native checkpoint: {describe_formats()}")
    direction.add_argument("--from", dest="from_", type=_from_format, metavar="FORMAT",
                           help=f"read a native checkpoint: {describe_formats()}; or {DLFS} "
                           "(the course's own parameter files)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output file ("
                   + ", ".join(f"{f.name}: *{f.native_suffix}" for f in FRAMEWORKS.values())
                   + "; canonical, with --from: *.safetensors)")
    p.add_argument("--model", type=model_arg, help="with --from: the model (checked against the file)")
    p.add_argument("--hparams-from", metavar="W.safetensors",
                   help="with --from: take the hyper-parameters from this canonical weight file")
    p.set_defaults(outputs=("out",))
    p.add_argument("--bn-stats-from-data", metavar="DIR",
                   help="with --from dlfs: compute the BatchNorm running statistics over this MNIST "
                   "folder's training set (the course's files have none)")
    add_architecture_options(p)
    p.epilog = (p.epilog or "") + "\n" + PRESET_HELP
    return p


def _arch_given(args: argparse.Namespace) -> list[str]:
    given = [option for dest, (option, _) in OPTIONS.items() if getattr(args, dest, None) is not None]
    return given + (["--preset"] if args.preset is not None else [])


def run(args: argparse.Namespace) -> int:
    for option, value in (("the input", args.path), ("--hparams-from", args.hparams_from)):
        if value is not None and _same_file(value, args.out):
            raise UsageError(f"--out {args.out} is {option}: converting never replaces its own input; "
                             "name another file")
    try:
        if args.to is not None:
            extra = _arch_given(args) + (["--bn-stats-from-data"] if args.bn_stats_from_data else [])
            if args.model is not None or args.hparams_from is not None or extra:
                raise ConvertError(f"{', '.join(extra) or '--model and --hparams-from'} go with --from "
                                   "(the canonical file already holds its model and hyper-parameters)")
            config = convert_to_native(args.path, args.to, args.out)
            print(f"wrote {args.out} ({format_name(args.to)} checkpoint of {config.name}) from {args.path}")
        elif args.from_ == "dlfs":
            run_from_dlfs(args)
        else:
            run_from_native(args)
    except ArchError as exc:
        print(f"rosetta convert: error: {exc}", file=sys.stderr)
        return exc.status
    except (WeightFileError, ConvertError, FrameworkNotInstalled) as exc:
        print(f"rosetta convert: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def run_from_native(args: argparse.Namespace) -> None:
    """--from a native format: every hyper-parameter printed with where it came from."""
    if args.bn_stats_from_data is not None:
        raise ConvertError("--bn-stats-from-data goes with --from dlfs (native files hold their statistics)")
    if _same_file(args.path, args.out):
        raise ConvertError(f"--out {args.out} is the input file; nothing written")
    model = requested_model(args)
    values, names = requested_hparams(args, model) if model is not None else ({}, {})

    def apply_options(config, source):  # noqa: ANN001, ANN202 - the file's config and its name
        return config_from_args(args, config, file_name=source)

    config, lines = honest_native_config(args.path, args.from_, model, values, names, args.hparams_from,
                                         apply_options)
    config = convert_from_native(args.path, args.from_, args.out, config=config)
    for line in lines:
        print(line)
    print(f"wrote {args.out} (canonical {config.name}) from {format_name(args.from_)} checkpoint {args.path}")


def run_from_dlfs(args: argparse.Namespace) -> None:
    """--from dlfs: the course's parameter file, its network inferred and every value printed."""
    if args.hparams_from is not None:
        raise ConvertError("--hparams-from goes with the native formats; a course file's hyper-parameters "
                           "come from its shapes and the options")
    if _same_file(args.path, args.out):
        raise ConvertError(f"--out {args.out} is the input file; nothing written")
    arrays, kind = read_course_file(args.path)
    model, _ = detect_network(arrays, args.path)
    want = requested_model(args)
    if want is not None and want != model:
        raise ArchError(f"{args.path}: its tensors are a {model!r} model's, not {want!r}", status=1)
    base_conv = None
    if model == "deepcnn":  # the kernels from the tensors; pad 0, stride 1 unless options say
        base_conv = [(np.shape(arrays[f"W{i}"])[0], np.shape(arrays[f"W{i}"])[2], 0, 1) for i in range(1, 7)]
    values, names = requested_hparams(args, model, base_conv)
    imp = convert_from_dlfs(args.path, args.out, values, names, model, args.bn_stats_from_data, arrays)
    dtypes = sorted({str(a.dtype) for a in arrays.values()})
    print(f"read {args.path}: course parameter file ({kind}), {len(arrays)} arrays, {', '.join(dtypes)}")
    for line in describe_import(imp):
        print(line)
    print(f"wrote {args.out} (canonical {imp.config.describe()}) from the course file {args.path}")
