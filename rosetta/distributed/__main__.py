"""``python -m rosetta.distributed torch FOLDER | tf FOLDER | chainer FOLDER``: the
data-parallel workers of one framework (started by rosetta.distributed.run_workers; chainer under
mpirun). The package never imports its workers: each imports only its own framework."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "torch":
        from rosetta.distributed.torch_worker import launch

        launch(Path(args[1]))  # every rank: this process and its forks
        return 0
    if len(args) == 2 and args[0] == "tf":
        from rosetta.distributed.tf_worker import worker as tf_worker

        tf_worker(Path(args[1]))
        return 0
    if len(args) == 2 and args[0] == "chainer":
        from rosetta.distributed.chainer_worker import worker as chainer_worker

        chainer_worker(Path(args[1]))
        return 0
    print("usage: python -m rosetta.distributed torch FOLDER | tf FOLDER | chainer FOLDER "
          "(chainer under mpirun)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
