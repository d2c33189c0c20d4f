"""Time the reference's layers on a deep CNN's conv stack, both routes, one thread per library.

The stack: six 3x3 pad-1 convolutions with 16, 16, 32, 32, 64, 64 filters on (N, 1, 28, 28), a
ReLU after each and a 2x2 max-pool after every second (28 -> 14 -> 7 -> 3, the last one odd).
``python benchmarks/conv_stack.py [--batch 100] [--repeat 7]``: prints the best forward and
forward + backward time of each route, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reference_numpy.layers import ROUTES, Convolution, MaxPooling, Relu  # noqa: E402
from rosetta.bench import limit_threads  # noqa: E402

FILTERS = (16, 16, 32, 32, 64, 64)


def build(route: str, seed: int = 0) -> list[object]:
    rng = np.random.default_rng(seed)
    layers: list[object] = []
    c_in = 1
    for i, fn in enumerate(FILTERS):
        W = (rng.standard_normal((fn, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)  # noqa: N806
        layers += [Convolution(W, np.zeros(fn, np.float32), 1, 1, route), Relu()]
        if i % 2 == 1:
            layers.append(MaxPooling(2, 2, 2, route))
        c_in = fn
    return layers


def forward(layers: list[object], x: np.ndarray) -> np.ndarray:
    for layer in layers:
        x = layer.forward(x)
    return x


def step(layers: list[object], x: np.ndarray) -> None:
    d = np.ones_like(forward(layers, x))
    for i, layer in enumerate(reversed(layers)):
        d = layer.backward(d, need_dx=False) if i == len(layers) - 1 else layer.backward(d)


def best_ms(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    limit_threads(args.threads, [])
    x = np.random.default_rng(1).random((args.batch, 1, 28, 28), dtype=np.float32)
    results = {}
    for route in ROUTES:
        layers = build(route)
        step(layers, x)  # warm-up
        results[route] = (best_ms(lambda ls=layers: forward(ls, x), args.repeat),
                          best_ms(lambda ls=layers: step(ls, x), args.repeat))
    for route, (fwd, both) in results.items():
        print(f"{route:6s} forward {fwd:8.1f} ms   forward + backward {both:8.1f} ms")
    (ff, fb), (cf, cb) = results["fast"], results["course"]
    print(f"course / fast: forward {cf / ff:.2f}x, forward + backward {cb / fb:.2f}x "
          f"(batch {args.batch}, {args.threads} thread(s), best of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
