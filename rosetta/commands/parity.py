"""``rosetta parity``: the parity matrix as a table, framework x quantity (the main report)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tqdm import tqdm

from rosetta.adapters import PORTS, FrameworkNotInstalled, adapter_class
from rosetta.commands import UsageError, add_framework_option, formatter
from rosetta.commands._arch import OPTIONS as ARCH_OPTIONS
from rosetta.commands._arch import add_architecture_options, config_from_args
from rosetta.commands._common import int_range
from rosetta.configs import MODEL_NAMES
from rosetta.data import verify_mnist
from rosetta.parity import (
    CASES,
    DTYPES,
    QUANTITIES,
    Record,
    custom_case,
    matrix_units,
    run_matrix,
    spreads,
    summarize,
)
from rosetta.registry import find_installed
from rosetta.weights import atomic_write_bytes

MAX_DEFAULT_JOBS = 4
UNITS_PER_JOB = 8  # (case, dtype) units: the whole matrix is 22

EPILOG = """examples:
  rosetta parity                                   # synthetic inputs, all ports, both dtypes
  rosetta parity --data-dir ../shared/mnist        # plus trajectories on real MNIST
  rosetta parity --framework torch --model cnn --dtype float32 --json parity.json
  rosetta parity --framework torch,tf --model mlp  # the same as --framework torch --framework tf
  rosetta parity --plot heatmap.png                # log10 relative error, framework x tensor
  rosetta parity --distributed --data-dir ../shared/mnist   # DDP, MirroredStrategy, ChainerMN: 2 workers
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("parity", help="prove the four implementations agree (table, JSON, heatmap)",
                       description="Load the same deterministic canonical weights into every port "
                       "and the NumPy reference; compare logits, loss, activations, gradients, "
                       "optimizer steps, BatchNorm and Dropout (and, with --data-dir, "
                       "trajectories on MNIST: 100 steps in float32, 25 in float64). Exit 1 on any failure.",
                       epilog=EPILOG, formatter_class=formatter())
    add_framework_option(p, "port(s) to check against the NumPy reference", "all three", allowed=PORTS)
    p.add_argument("--model", action="append", choices=MODEL_NAMES,
                   help=f"model(s) (default: all: {', '.join(MODEL_NAMES)})")
    p.add_argument("--dtype", action="append", choices=DTYPES, help="dtype(s) (default: both)")
    p.add_argument("--data-dir", default=None, help="MNIST folder: adds the trajectory section")
    p.add_argument("--trajectories", action="store_true",
                   help="run the trajectory section with MNIST from $MNIST_DIR or the user cache")
    p.add_argument("--jobs", type=int_range(1, 64), default=None,
                   help="processes to spread the matrix over, one compute thread each (default: one "
                   "per CPU and per 8 (case, dtype) units, at most 4: each loads all four frameworks)")
    p.add_argument("--json", metavar="PATH", help="write every record as JSON")
    p.add_argument("--plot", metavar="PNG", help="write a heatmap of log10 relative error")
    p.set_defaults(outputs=("json", "plot"))
    p.add_argument("--distributed", action="store_true",
                   help="instead: data-parallel training (torch DDP, TF MirroredStrategy, ChainerMN; "
                   "2 workers, 20 steps) against the one-process reference, with the pitfalls measured")
    add_architecture_options(p)  # any of them: check that one configuration instead of the table's cases
    return p


def format_table(records: list[Record]) -> str:
    """One row per (model, framework, dtype), one column per quantity: worst rel err, pass mark."""
    worst = summarize(records)
    present = [q for q in QUANTITIES if any(k[3] == q for k in worst)]
    order = [c.label for c in CASES]
    rows = sorted({k[:3] for k in worst}, key=lambda k: (order.index(k[0]) if k[0] in order else len(order),
                                                         PORTS.index(k[1]), k[2]))
    width = max(len("case"), *(len(r[0]) for r in rows)) if rows else len("case")
    header = f"{'case':<{width}} {'framework':<8} {'dtype':<8} " + " ".join(f"{q:>11}" for q in present)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for q in present:
            r = worst.get((*row, q))
            cells.append(f"{'-':>11}" if r is None else f"{r.max_rel_err:>9.1e} {'ok' if r.passed else '!!'}"
                         .rjust(11))
        lines.append(f"{row[0]:<{width}} {row[1]:<8} {row[2]:<8} " + " ".join(cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.distributed:
        from rosetta.distributed import DTYPES as DIST_DTYPES
        from rosetta.distributed import cli

        return cli(args.framework, args.model, args.dtype or DIST_DTYPES,
                   args.data_dir or os.environ.get("MNIST_DIR"), args.json)
    frameworks = args.framework or list(PORTS)
    only = None
    if args.preset is not None or any(getattr(args, d, None) is not None for d in ARCH_OPTIONS):
        models = args.model or []
        if len(models) > 1:
            raise UsageError("architecture options describe one model: pass --model once (or --preset)")
        arch = argparse.Namespace(**{**vars(args), "model": models[0] if models else None})
        only = [custom_case(config_from_args(arch))]
        print(f"model {only[0].config.describe()}")
    data_dir = None
    if args.data_dir or args.trajectories:  # asked for trajectories: no data is an error, found now
        data_dir = str(verify_mnist(args.data_dir))
    units = len(matrix_units(frameworks, args.model or MODEL_NAMES, args.dtype or DTYPES, only))
    # A process starts by loading all four frameworks (~8 s here): a few cases run faster in this one.
    jobs = args.jobs or max(1, min(os.cpu_count() or 1, MAX_DEFAULT_JOBS, units // UNITS_PER_JOB))
    # Every framework missing is named before any work. With worker processes only they load the
    # frameworks: this process looks them up instead of importing them first (measured, 2 cores,
    # the whole matrix alternated with the earlier import-first order: 40.4 and 40.9 s -> 33.5 and
    # 33.5 s). An install that is found but fails to load stops the run with the same message,
    # raised in the worker.
    missing = []
    for framework in frameworks:
        try:
            find_installed(framework) if spreads(jobs, units) else adapter_class(framework)
        except FrameworkNotInstalled as exc:
            missing.append(exc)
    for exc in missing:
        print(f"rosetta parity: {exc}", file=sys.stderr)
    if missing:
        return 1
    start = time.perf_counter()
    # A progress bar on a terminal only (stderr): logs and pipes get the table alone.
    bar = tqdm(total=units, desc="parity", unit="case", file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=not sys.stderr.isatty())

    def progress(done: str) -> None:
        bar.set_postfix_str(done)
        bar.update(1)

    try:
        records = run_matrix(frameworks, args.model or MODEL_NAMES, args.dtype or DTYPES, data_dir,
                             progress=progress, only=only, jobs=jobs)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    print("largest relative error per quantity (max|a - ref| / max|ref|); ok = within tolerance")
    print(format_table(records))
    failed = [r for r in records if not r.passed]
    print(f"{len(records)} tensors compared in {seconds:.1f} s ({jobs} process{'es' if jobs > 1 else ''}): "
          f"{len(records) - len(failed)} passed, {len(failed)} failed")
    for r in failed[:20]:
        print("  " + r.describe())
    if args.json:
        atomic_write_bytes(args.json, json.dumps([r.as_dict() for r in records], indent=1).encode())
        print(f"wrote {args.json}")
    if args.plot:
        from rosetta.plots import parity_heatmap

        parity_heatmap(records, args.plot)
        print(f"wrote {args.plot}")
    return 1 if failed else 0
