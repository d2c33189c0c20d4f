"""What the parity matrix's MNIST trajectories cost each implementation, on one core.

    python benchmarks/trajectory_cost.py --data-dir ../shared/mnist [--model cnn] [--dtype float32]

For every trajectory of the matrix (case, dtype, optimizer), each implementation's own compute:
its training steps and its predictions on the test images, timed as CPU seconds of this process
with one compute thread per library, as in the test suite. Model construction and the comparison
with the reference are left out, so the sum is the least CPU the trajectory checks can cost. The
training steps are the check's own (rosetta.parity.train_trajectory); an implementation's first
row includes its framework's one-time warm-up (its first kernel calls), as the suite's first
trajectory in a worker does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
             "TF_NUM_INTEROP_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rosetta import parity  # noqa: E402
from rosetta.bench import keep_freed_memory  # noqa: E402
from rosetta.configs import MODEL_NAMES  # noqa: E402
from rosetta.registry import FRAMEWORKS  # noqa: E402

IMPLEMENTATIONS = tuple(FRAMEWORKS)  # the reference and the three ports, the framework table's order


def trajectory_cost(case: parity.Case, dtype: str, optimizer: str, framework: str,
                    data_dir: str) -> tuple[float, float, int]:
    """CPU seconds of one implementation's training steps and of its test-image predictions, and
    how many test images (the parity check's own run: rosetta.parity.train_trajectory)."""
    steps, images = parity.trajectory_steps(case, dtype), parity.trajectory_test_images(case, dtype)
    extra = (optimizer, data_dir, steps, images)
    adapter = parity._adapter(framework, case, dtype, "trajectory")
    start = time.process_time()
    x_test = parity.train_trajectory(adapter, case.config, dtype, extra)
    trained = time.process_time()
    adapter.predict(x_test)
    return trained - start, time.process_time() - trained, len(x_test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trajectory_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="MNIST folder (the IDX files)")
    parser.add_argument("--model", choices=MODEL_NAMES, action="append", help="model(s) (default: all)")
    parser.add_argument("--dtype", choices=parity.DTYPES, action="append", help="dtype(s) (default: both)")
    parser.add_argument("--framework", choices=IMPLEMENTATIONS, action="append",
                        help="implementation(s) (default: all four)")
    parser.add_argument("--glibc-malloc-defaults", action="store_true",
                        help="leave malloc as glibc sets it, or as MALLOC_*_ variables already set "
                        "say (default: rosetta.bench.keep_freed_memory, as in the test suite)")
    args = parser.parse_args(argv)
    if not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir}: no such folder")
    frameworks = args.framework or IMPLEMENTATIONS
    print(f"malloc: {'glibc defaults' if args.glibc_malloc_defaults else keep_freed_memory()}")
    total = 0.0
    print(f"{'case':10s} {'dtype':8s} {'optimizer':9s} {'impl':8s} {'steps':>5s} {'train s':>8s} "
          f"{'images':>6s} {'predict s':>9s}")
    for case in parity.cases(args.model or MODEL_NAMES):
        if "trajectory" not in case.sections:
            continue
        for dtype in args.dtype or parity.DTYPES:
            for optimizer in case.trajectory_optimizers:
                for framework in frameworks:
                    train, predict, images = trajectory_cost(case, dtype, optimizer, framework, args.data_dir)
                    total += train + predict
                    steps = parity.trajectory_steps(case, dtype)
                    print(f"{case.label:10s} {dtype:8s} {optimizer:9s} {framework:8s} {steps:5d} "
                          f"{train:8.2f} {images:6d} {predict:9.2f}", flush=True)
    print(f"total: {total:.1f} CPU-s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
