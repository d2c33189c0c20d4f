"""``rosetta convert``: canonical weights <-> torch / Keras / Chainer / NumPy native checkpoints."""

from __future__ import annotations

import argparse
import sys

from rosetta.adapters import FrameworkNotInstalled
from rosetta.commands import formatter, model_arg
from rosetta.convert import NATIVE_FORMATS, SUFFIX, ConvertError, convert_from_native, convert_to_native
from rosetta.registry import resolve_format
from rosetta.weights import WeightFileError

EPILOG = """examples:
  rosetta convert cnn.safetensors --to torch --out cnn.torch.safetensors
  rosetta convert cnn.safetensors --to keras --out cnn.weights.h5
  rosetta convert cnn.safetensors --to chainer --out cnn.chainer.npz
  rosetta convert cnn.safetensors --to npz --out cnn.npz
  rosetta convert cnn.weights.h5 --from keras --out back.safetensors
  rosetta convert other.npz --from npz --model mlp --hparams-from mlp.safetensors --out mlp2.safetensors

native files (no pickle anywhere):
  torch    safetensors with state_dict names (incl. BN buffers):
           model.load_state_dict(safetensors.torch.load_file(path))
  keras    .weights.h5 from model.save_weights: model.load_weights(path)
  chainer  .npz from chainer.serializers.save_npz: chainer.serializers.load_npz(path, model)
  npz      np.savez of the canonical arrays: np.load(path, allow_pickle=False)
Every native file carries the model's hyper-parameters (safetensors metadata, HDF5 root attribute
'mnist_rosetta', .npz zip comment), so converting back needs no option; --hparams-from takes them
from a canonical file instead, --model alone assumes the default hyper-parameters.
"""


def _format(value: str) -> str:
    """argparse type for --to/--from: a native format, or a framework name for it (tf -> keras)."""
    try:
        return resolve_format(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("convert", help="canonical weights <-> torch/keras/chainer/npz native checkpoints",
                       description="Convert a canonical weight file (.safetensors) to a framework's "
                       "native checkpoint (--to) or a native checkpoint back (--from). The round trip "
                       "is bit-exact; writes are atomic.",
                       epilog=EPILOG, formatter_class=formatter())
    p.add_argument("path", help="input: a canonical W.safetensors (with --to) or a native file (with --from)")
    direction = p.add_mutually_exclusive_group(required=True)
    direction.add_argument("--to", type=_format, metavar="FORMAT",
                           help=f"write a native checkpoint: {', '.join(NATIVE_FORMATS)}")
    direction.add_argument("--from", dest="from_", type=_format, metavar="FORMAT",
                           help=f"read a native checkpoint: {', '.join(NATIVE_FORMATS)}")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output file (" + ", ".join(f"{k}: *{v}" for k, v in SUFFIX.items())
                   + "; canonical: *.safetensors)")
    p.add_argument("--model", type=model_arg, help="with --from: the model (checked against the file)")
    p.add_argument("--hparams-from", metavar="W.safetensors",
                   help="with --from: take the hyper-parameters from this canonical weight file")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        if args.to is not None:
            if args.model is not None or args.hparams_from is not None:
                raise ConvertError("--model and --hparams-from go with --from (the canonical file "
                                   "already holds its model and hyper-parameters)")
            config = convert_to_native(args.path, args.to, args.out)
            print(f"wrote {args.out} ({args.to} checkpoint of {config.name}) from {args.path}")
        else:
            config = convert_from_native(args.path, args.from_, args.out, args.model, args.hparams_from)
            print(f"wrote {args.out} (canonical {config.name}) from {args.from_} checkpoint {args.path}")
    except (WeightFileError, ConvertError, FrameworkNotInstalled) as exc:
        print(f"rosetta convert: error: {exc}", file=sys.stderr)
        return 1
    return 0
