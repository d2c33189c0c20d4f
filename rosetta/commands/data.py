"""``rosetta data``: verify the MNIST files and print per-split statistics."""

from __future__ import annotations

import argparse
import sys

from rosetta.commands import formatter
from rosetta.data import SPLITS, MNISTError, download, summary


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("data", help="verify MNIST and print counts, class histogram, mean/std",
                       description="Find MNIST (--data-dir, $MNIST_DIR, ~/.cache/mnist-rosetta), verify "
                       "the SHA-256 of every file and print, per split, the count, class histogram "
                       "and pixel mean/std.",
                       epilog="examples:\n  rosetta data --data-dir ../shared/mnist\n"
                       "  rosetta data --download      # fetch into ~/.cache/mnist-rosetta",
                       formatter_class=formatter())
    p.add_argument("--data-dir", help="folder with the four IDX files (.gz or raw)")
    p.add_argument("--download", action="store_true",
                   help="download missing files into the user cache (verified, atomic)")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        if args.download:
            print(f"downloading into {download()}")
        for split in SPLITS:
            s = summary(split, args.data_dir)
            hist = " ".join(f"{d}:{c}" for d, c in enumerate(s["histogram"]))  # type: ignore[arg-type]
            print(f"{split:<5} count {s['count']:>5}  mean {s['mean']:.4f}  std {s['std']:.4f}  "
                  f"sha256 ok  ({s['files'][0]})")  # type: ignore[index]
            print(f"      classes {hist}")
    except MNISTError as exc:
        print(f"rosetta data: error: {exc}", file=sys.stderr)
        return 1
    return 0
