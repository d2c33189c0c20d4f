"""``rosetta bench``: training-step and inference time of every implementation, in alternation."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rosetta.bench import (
    ALL_IMPLS,
    DEFAULT_IMPLS,
    MODELS,
    format_markdown,
    format_table,
    format_targets,
    run_benchmark,
)
from rosetta.commands import ALL, formatter
from rosetta.commands._arch import OPTIONS as ARCH_OPTIONS
from rosetta.commands._arch import add_architecture_options, config_from_args
from rosetta.commands._common import int_range
from rosetta.data import verify_mnist
from rosetta.registry import describe_aliases, resolve_framework
from rosetta.weights import atomic_write_bytes

EPILOG = """examples:
  rosetta bench                                  # all implementations, mlp and cnn, 5 x 20 steps
  rosetta bench --model cnn --repeat 9 --json bench.json
  rosetta bench --impl numpy --impl torch --impl torch-adapter --no-memory
  rosetta bench --impl torch,tf-adapter --model mlp   # comma-separated works too
  python benchmarks/run.py                       # writes benchmarks/results.json and results.md

impls: numpy torch tf chainer (each package's own model + train_step), torch-idiom (nn.Sequential +
torch.optim.Adam), keras-fit (compiled Keras Sequential, train_on_batch/predict), tf-eager (the TF
step without tf.function), <framework>-adapter (through the canonical Adapter interface). A
framework's aliases work in --impl too (pytorch = torch, keras-adapter = tf-adapter; keras-fit is
an implementation's own name).
Times: training step = one batch of 100 (float32, Adam, course defaults); inference = the test set
(10k images) in batches of 1000. Ratios are paired per repeat against torch and against the fastest
implementation of that model and phase in the same run. Every library gets --threads threads.
"""


def impl_name(value: str) -> str:
    """One --impl value: an implementation, or one named through a framework alias
    (``pytorch`` -> ``torch``, ``keras-adapter`` -> ``tf-adapter``); ValueError otherwise."""
    key = value.strip().lower()
    if key in ALL_IMPLS:  # keras-fit is an implementation's own name, not an alias
        return key
    head, dash, tail = key.partition("-")
    try:
        name = resolve_framework(head) + dash + tail
    except ValueError:
        name = ""
    if name not in ALL_IMPLS:
        raise ValueError(f"unknown implementation {value.strip()!r}; choose one of: {', '.join(ALL_IMPLS)}, "
                         f"{ALL} (framework aliases: {describe_aliases()})")
    return name


class ImplAction(argparse.Action):
    """--impl: the shape of --framework (repeatable, comma-separated, ``all``), over implementations."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[str] | None, option_string: str | None = None) -> None:
        names = list(getattr(namespace, self.dest, None) or [])
        for part in str(values).split(","):
            try:
                found = list(ALL_IMPLS) if part.strip().lower() == ALL else [impl_name(part)]
            except ValueError as exc:
                raise argparse.ArgumentError(self, str(exc)) from None
            names.extend(n for n in found if n not in names)
        setattr(namespace, self.dest, names)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="time training steps and inference of every implementation",
                       description="Time a training step and inference of each implementation, "
                       "round-robin per repeat, after warm-up; report median/min/max, the ratio to "
                       "PyTorch in the same run, the efficiency against a measured float32 GEMM and "
                       "peak memory (one subprocess per implementation).",
                       epilog=EPILOG, formatter_class=formatter())
    p.add_argument("--model", choices=(*MODELS, "all"), default="all",
                   help=f"the model(s) to time: {', '.join(MODELS)} or all (default: all)")
    p.add_argument("--impl", action=ImplAction, metavar="IMPL", default=None,
                   help="implementation(s), repeatable or comma-separated (default: "
                   f"{', '.join(DEFAULT_IMPLS)}); choices: {', '.join(ALL_IMPLS)}, all; a framework "
                   f"also by an alias ({describe_aliases()})")
    p.add_argument("--repeat", type=int_range(1), default=5,
                   help="rounds over all implementations (>= 1, default 5)")
    p.add_argument("--steps", type=int_range(1), default=20,
                   help="training steps per repeat (>= 1, default 20)")
    p.add_argument("--inference-size", type=int_range(1, 10_000), default=10_000,
                   help="test images (1 to 10000, default 10000)")
    p.add_argument("--data-dir", help="MNIST folder (default: synthetic random data of MNIST shape)")
    p.add_argument("--threads", type=int_range(0), default=1,
                   help="compute threads given to every library (default 1: stable on a shared "
                   "machine, see rosetta/bench.py); 0 keeps each library's default")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak-memory subprocesses (default: measure peak memory)")
    p.add_argument("--json", metavar="PATH", help="write machine info, records and targets as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the table as markdown")
    add_architecture_options(p)
    p.set_defaults(outputs=("json", "markdown"))
    return p


def run(args: argparse.Namespace) -> int:
    if args.data_dir is not None:
        verify_mnist(args.data_dir)  # a bad folder fails now, not after the first benchmarks
    if args.repeat < 5:
        print(f"note: --repeat {args.repeat} < 5: a smoke run, not a measurement", file=sys.stderr)
    models = MODELS if args.model == "all" else (args.model,)
    configs = None
    if args.preset is not None or any(getattr(args, d, None) is not None for d in ARCH_OPTIONS):
        arch = argparse.Namespace(**{**vars(args), "model": None if args.model == "all" else args.model})
        config = config_from_args(arch)
        models, configs = (config.name,), {config.name: config}
        print(f"model {config.describe()} (no idioms, no memory probe: they build the defaults)")
    result = run_benchmark(args.impl or DEFAULT_IMPLS, models, args.repeat, args.steps,
                           args.inference_size, args.data_dir, args.memory,
                           progress=lambda s: print(f"  {s} ...", file=sys.stderr, flush=True),
                           threads=args.threads, configs=configs)
    for impl, why in result["skipped"].items():
        print(f"skipped {impl}: {why}", file=sys.stderr)
    machine = result["machine"]
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    print(format_table(result))
    print("eff % = (model FLOPs / measured float32 GEMM FLOP/s) / time; x fastest, x torch = median "
          "paired ratio against the fastest implementation of the row's model and phase, and torch")
    print("targets (paired ratios, same run):")
    print(format_targets(result))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(result, indent=1).encode())
        print(f"wrote {args.json}")
    if args.markdown:
        atomic_write_bytes(args.markdown, format_markdown(result).encode())
        print(f"wrote {args.markdown}")
    if args.impl and result["skipped"]:
        return 1
    return 0
