"""Benchmarks: training-step and inference time of every implementation, in alternation.

What is timed: each package's own model and ``train_step`` (``reference_numpy``, ``torch_impl``,
``tf_impl``, ``chainer_impl``) with inputs converted to the native layout once, before timing, so
no adapter conversion is counted. ``<framework>-adapter`` times the same through the
:class:`~rosetta.adapters.base.Adapter` (canonical NumPy in and out) to show that overhead.
Framework idioms for contrast: ``torch-idiom`` (``nn.Sequential`` + ``torch.optim.Adam`` +
``F.cross_entropy``), ``keras-fit`` (a compiled Keras ``Sequential``, ``train_on_batch`` and
``predict``) and ``tf-eager`` (the TF package's step without ``tf.function``).

Design (the machine may be shared): every implementation is built and warmed up first; then each
repeat runs every implementation once, in an order rotated per repeat (round-robin), K training
steps (batch 100, float32, Adam with the course defaults) and one inference pass over the test
images (batches of 1000). Reported: median, min, max over repeats; ``ratio_vs_torch`` is the median
over repeats of the paired ratio (impl / torch in the same repeat), which cancels slow drifts of
the machine's load; ``ratio_vs_fastest`` the same against the fastest implementation (lowest
median, adapters aside) of that model and phase in the run, named in ``fastest``. ``efficiency`` =
(analytic model FLOPs / measured float32 GEMM FLOP/s) / time: the share of a 1024x1024
``np.matmul``'s speed the implementation reaches. Peak memory comes from one subprocess per
implementation reporting its own ``ru_maxrss``.

Threads (``threads``, default 1): every library gets the same number of compute threads, set
before the runners are built: ``torch.set_num_threads``, TF's intra/inter-op pools, and OpenBLAS
(NumPy, Chainer) through its ``*_set_num_threads``. Why not the libraries' defaults (one thread per
core): torch (OpenMP) and OpenBLAS park idle threads in a spin-wait and end every parallel region
at a barrier. On this 2-core machine, as soon as anything else runs (another process, or another
library's spinning pool in the same process), one of the two threads is descheduled and the
other spins at the barrier for the rest of a scheduler time slice, for every small op. Measured
here under a load average of 6: torch's MLP inference 195-565 ms (median 437) with 2 threads,
31-38 ms (median 34) with 1, interleaved in one process; torch-idiom the same (79-576 against
26-48 ms). With ``threads=0`` the libraries keep their defaults (fast only on an idle machine).

Memory: the run keeps freed memory in the process (``keep_freed_memory``, glibc's ``mallopt``;
every ``rosetta`` command does the same), alike for every implementation. Each one allocates its
step's arrays afresh, and with glibc's defaults large freed blocks go back to the kernel, so the
next step faults their pages in again (MALLOC_SETTINGS: the measurement).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rosetta.adapters import FrameworkNotInstalled, adapter_class, make_adapter
from rosetta.adapters.base import OPTIMIZER_DEFAULTS
from rosetta.configs import MODELS as CONFIG_TABLE
from rosetta.data import layout_for
from rosetta.registry import FRAMEWORKS as FRAMEWORK_TABLE
from rosetta.weights import ModelConfig, make_config

IMPLS = ("numpy", "torch", "tf", "chainer")
IDIOMS = ("torch-idiom", "keras-fit", "tf-eager")
ADAPTERS = tuple(f"{f}-adapter" for f in IMPLS)
ALL_IMPLS = IMPLS + IDIOMS + ADAPTERS
DEFAULT_IMPLS = IMPLS + IDIOMS
FRAMEWORK_OF = {"numpy": "numpy", "torch": "torch", "tf": "tf", "chainer": "chainer",
                "torch-idiom": "torch", "keras-fit": "tf", "tf-eager": "tf",
                **{f"{f}-adapter": f for f in IMPLS}}
PHASES = ("train_step", "inference")
# The models the bench times: every row of the model table (rosetta.configs.MODELS); the idioms
# (torch-idiom, keras-fit) are hand-built for the models in IDIOM_MODELS only.
BENCH_MODELS: dict[str, str] = {name: f"{cls.module}.{cls.class_name}" for name, cls in CONFIG_TABLE.items()}
MODELS = tuple(BENCH_MODELS)
IDIOM_MODELS = ("mlp", "cnn", "deepcnn")
# Every implementation package's own name (the framework table's).
PACKAGES = {name: entry.package for name, entry in FRAMEWORK_TABLE.items()}
FASTEST = "fastest"  # as the ``other`` of a target: the fastest implementation except impl itself
BATCH = 100
INFER_BATCH = 1000
ADAM = OPTIMIZER_DEFAULTS["adam"]
# (impl, other, model, phase, bound): impl's median time <= bound x other's, same run.
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("numpy", "torch", "cnn", "train_step", 1.5),
    ("numpy", "torch", "deepcnn", "train_step", 1.5),  # the CNN's targets for the deep CNN
    ("numpy", "torch", "mlp", "train_step", 1.1),
    ("numpy", FASTEST, "cnn", "train_step", 1.5),
    ("numpy", FASTEST, "cnn", "inference", 1.5),
    ("numpy", FASTEST, "deepcnn", "train_step", 1.5),
    ("numpy", FASTEST, "deepcnn", "inference", 1.5),
    ("numpy", FASTEST, "mlp", "train_step", 1.5),
    *[(port, idiom, m, ph, 1.2) for port, idiom in (("torch", "torch-idiom"), ("tf", "keras-fit"))
      for m in IDIOM_MODELS for ph in PHASES],
]


@dataclass
class Runner:
    """One implementation of one model: ``step(i)`` trains on batch i, ``infer()`` the test set."""

    step: Callable[[int], object]
    infer: Callable[[], object]


@dataclass
class Record:
    impl: str
    model: str
    phase: str
    times: list[float] = field(default_factory=list)
    ratio_vs_torch: float | None = None
    ratio_vs_fastest: float | None = None
    fastest: str | None = None
    efficiency: float | None = None
    peak_mem_mb: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"impl": self.impl, "model": self.model, "phase": self.phase,
                "median_s": statistics.median(self.times), "min_s": min(self.times),
                "max_s": max(self.times), "repeats": len(self.times),
                "ratio_vs_torch": self.ratio_vs_torch, "ratio_vs_fastest": self.ratio_vs_fastest,
                "fastest": self.fastest, "efficiency": self.efficiency,
                "peak_mem_mb": self.peak_mem_mb}


# --- machine ----------------------------------------------------------------------------------
def gemm_flops(n: int = 1024, tries: int = 7) -> float:
    """Best-of-``tries`` float32 FLOP/s of ``np.matmul`` of two n x n matrices (2 n^3 FLOPs)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    np.matmul(a, b)
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best


def thread_info(frameworks: Sequence[str] = ()) -> dict[str, object]:
    """Thread settings that decide CPU speed: env, torch and TF (only for frameworks loaded)."""
    info: dict[str, object] = {"cpu_count": os.cpu_count()}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS"):
        info[var] = os.environ.get(var, "(unset)")
    if "torch" in frameworks:
        import torch

        info["torch.get_num_threads"] = torch.get_num_threads()
        info["torch.get_num_interop_threads"] = torch.get_num_interop_threads()
    if "tf" in frameworks:
        import tensorflow as tf

        info["tf.intra_op (0 = all cores)"] = tf.config.threading.get_intra_op_parallelism_threads()
        info["tf.inter_op (0 = auto)"] = tf.config.threading.get_inter_op_parallelism_threads()
    return info


def forward_flops(config: ModelConfig) -> int:
    """Multiply-add FLOPs (2 per MAC) of one sample's forward pass: GEMMs and convolutions only."""
    return config.forward_flops()


def phase_flops(config: ModelConfig, phase: str, n: int) -> int:
    """FLOPs of a training step of batch n (forward x 3: forward + two backward GEMMs) or of
    inference over n images."""
    return (3 if phase == "train_step" else 1) * n * forward_flops(config)


def model_class(framework: str, model: str) -> type:
    """``model``'s class in ``framework``'s package, from BENCH_MODELS."""
    module, name = BENCH_MODELS[model].split(".")
    return getattr(importlib.import_module(f"{PACKAGES[framework]}.{module}"), name)


# --- threads ----------------------------------------------------------------------------------
def set_openblas_threads(n: int) -> str:
    """Set OpenBLAS's thread count through the library NumPy loaded; returns what was done."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        paths = []
    for path in paths:
        lib = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                       "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, symbol):
                getattr(lib, symbol)(n)
                return f"{n} ({os.path.basename(path)})"
    return "not set (no OpenBLAS found)"


# --- memory -----------------------------------------------------------------------------------
# glibc's malloc gives a freed block back to the kernel when it was mapped on its own (above the
# mmap threshold) or when the heap's free top exceeds the trim threshold, and the next step's
# allocation of the same size faults every 4 KiB page in again (and the kernel zeroes each).
# Every implementation allocates its activations, im2col columns and gradients afresh on each
# step, so a training loop spends a share of its time in page faults: measured on the CNN's
# float32 MNIST trajectories of the parity matrix (Chainer, 2 x 100 steps and 2 x 10k
# predictions, three interleaved pairs): 0.92 million minor faults and 2.9 s system time per run
# with glibc's defaults, 40 thousand and 0.25 s with the settings below, wall 19.2 s against
# 15.3 s. The settings keep freed memory in the process for reuse (the peak stays the peak).
MALLOC_SETTINGS = {  # mallopt parameter: (its number in glibc's malloc.h, value, environment name)
    "M_TRIM_THRESHOLD": (-1, 1 << 30, "MALLOC_TRIM_THRESHOLD_"),
    "M_TOP_PAD": (-2, 64 << 20, "MALLOC_TOP_PAD_"),
    # No block mapped on its own, however large (an mmap threshold stops at 32 MiB, and a batch of
    # 1000 through the CNN allocates 69 MB per activation): all come from the heap and are reused.
    "M_MMAP_MAX": (-4, 0, "MALLOC_MMAP_MAX_"),
}


def keep_freed_memory(child_env: MutableMapping[str, str] | None = None) -> str:
    """Apply MALLOC_SETTINGS to this process (glibc's ``mallopt``) and, given ``child_env`` (e.g.
    ``os.environ``), to the processes started with it; returns what was done. Without glibc
    (macOS, musl) nothing changes."""
    if child_env is not None:
        for _, value, name in MALLOC_SETTINGS.values():
            child_env.setdefault(name, str(value))
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "not set (no glibc)"
    failed = [name for name, (param, value, _) in MALLOC_SETTINGS.items() if mallopt(param, value) != 1]
    return f"not set ({', '.join(failed)} refused)" if failed else \
        ", ".join(f"{name}={value}" for name, (_, value, _) in MALLOC_SETTINGS.items())


def limit_threads(n: int, frameworks: Sequence[str]) -> dict[str, str]:
    """Give every library ``n`` compute threads (module docstring: why); ``n = 0`` leaves them be."""
    if n == 0:
        return {"threads": "library defaults"}
    done = {"threads": str(n), "openblas": set_openblas_threads(n)}
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(n)
        done["torch"] = str(torch.get_num_threads())
    if "tf" in frameworks:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
            done["tf"] = str(n)
        except RuntimeError:  # the TF runtime was started earlier in this process
            done["tf"] = "not set (TF already initialised)"
    return done


# --- data -------------------------------------------------------------------------------------
def make_data(model: str | ModelConfig, inference_size: int, n_batches: int = 10, data_dir: str | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, t_train, x_test), float32, canonical layout: MNIST or uniform random of its shape."""
    config = make_config(model) if isinstance(model, str) else model
    layout = layout_for(config.input_shape)
    flat = layout == "flat"
    if data_dir is not None:
        from rosetta.data import load_mnist

        x_train, t_train = load_mnist("train", data_dir, layout, "float32", limit=n_batches * BATCH)
        x_test, _ = load_mnist("test", data_dir, layout, "float32", limit=inference_size)
        return x_train, t_train, x_test
    rng = np.random.default_rng(0)
    shape = (config.input_size,) if flat else tuple(config.input_dim)
    x_train = rng.random((n_batches * BATCH, *shape), dtype=np.float32)
    t_train = rng.integers(0, 10, n_batches * BATCH).astype(np.int64)
    x_test = rng.random((inference_size, *shape), dtype=np.float32)
    return x_train, t_train, x_test


def _batches(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(x[i:i + size]) for i in range(0, len(x), size)]


# --- runners ----------------------------------------------------------------------------------
def make_runner(impl: str, config: ModelConfig, x_train: np.ndarray, t_train: np.ndarray,
                x_test: np.ndarray) -> Runner:
    """Build ``impl``'s model for ``config``; inputs are converted to its native layout here."""
    adapter_class(FRAMEWORK_OF[impl])  # FrameworkNotInstalled names the extra to install
    xb, tb, xi = _batches(x_train, BATCH), _batches(t_train, BATCH), _batches(x_test, INFER_BATCH)
    if impl.endswith("-adapter"):
        adapter = make_adapter(FRAMEWORK_OF[impl], config)
        adapter.set_optimizer("adam", **ADAM)
        return Runner(lambda i: adapter.train_step(xb[i % len(xb)], tb[i % len(tb)]),
                      lambda: adapter.logits(x_test, INFER_BATCH))
    if impl in IDIOMS and config.name not in IDIOM_MODELS:
        raise NotImplementedError(f"{impl} is built for {', '.join(IDIOM_MODELS)} only")
    return _BUILDERS[impl](config, xb, tb, xi)


def _numpy(config: ModelConfig, xb: list, tb: list, xi: list) -> Runner:
    from reference_numpy.optimizers import make_optimizer
    from reference_numpy.train import train_step

    model = model_class("numpy", config.name)(config, dtype="float32")
    opt = make_optimizer("adam", model, **ADAM)
    return Runner(lambda i: train_step(model, opt, xb[i % len(xb)], tb[i % len(tb)]),
                  lambda: [model.predict(x) for x in xi])


def _torch(config: ModelConfig, xb: list, tb: list, xi: list) -> Runner:
    import torch

    from torch_impl.optimizers import make_optimizer
    from torch_impl.train import train_step

    model = model_class("torch", config.name)(config, dtype="float32")
    opt = make_optimizer("adam", model, **ADAM)
    xs, ts, xis = ([torch.from_numpy(a) for a in group] for group in (xb, tb, xi))

    def infer() -> list:
        with torch.no_grad():
            return [model(x, train=False) for x in xis]

    return Runner(lambda i: train_step(model, opt, xs[i % len(xs)], ts[i % len(ts)]), infer)


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def _tf(config: ModelConfig, xb: list, tb: list, xi: list, eager: bool = False) -> Runner:
    import tensorflow as tf

    from tf_impl import train as tf_train
    from tf_impl.optimizers import make_optimizer

    model = model_class("tf", config.name)(config, dtype="float32")
    opt = make_optimizer("adam", model, **ADAM)
    xs = [tf.convert_to_tensor(_nhwc(a)) for a in xb]
    ts = [tf.convert_to_tensor(a) for a in tb]
    xis = [tf.convert_to_tensor(_nhwc(a)) for a in xi]
    x_spec = tf_train.input_signature(model)[0]
    forward = tf.function(lambda x: model(x, training=False), input_signature=[x_spec])
    if eager:  # contrast only: the package's step body without tf.function
        step = lambda i: float(tf_train._step(model, opt, xs[i % len(xs)], ts[i % len(ts)]))  # noqa: E731
        return Runner(step, lambda: [model(x, training=False).numpy() for x in xis])
    return Runner(lambda i: tf_train.train_step(model, opt, xs[i % len(xs)], ts[i % len(ts)]),
                  lambda: [forward(x).numpy() for x in xis])


def _chainer(config: ModelConfig, xb: list, tb: list, xi: list) -> Runner:
    from chainer_impl.compat import import_chainer
    from chainer_impl.optimizers import make_optimizer
    from chainer_impl.train import train_step

    chainer = import_chainer()
    model = model_class("chainer", config.name)(config, dtype="float32")
    opt = make_optimizer("adam", model, **ADAM)

    def infer() -> list:
        with chainer.using_config("enable_backprop", False):
            return [model.forward(x, train=False) for x in xi]

    return Runner(lambda i: train_step(model, opt, xb[i % len(xb)], tb[i % len(tb)]), infer)


def _torch_idiom(config: ModelConfig, xb: list, tb: list, xi: list) -> Runner:
    import torch
    import torch.nn.functional as F
    from torch import nn

    if config.name == "mlp":  # the idioms are hand-built per model, like the model files
        sizes = [config.input_size, *config.hidden_sizes, config.output_size]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
    elif config.name == "deepcnn":  # (conv, ReLU) x 2, then a 2x2 pool, three times; the book's head
        channels = config.input_dim[0]
        layers = []
        for i, (filters, size, pad, stride) in enumerate(config.conv_params, 1):
            layers += [nn.Conv2d(channels, filters, size, stride=stride, padding=pad), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if i % 2 == 0 else []
            channels = filters
        model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(config.pool_output_size, config.hidden_size),
                              nn.ReLU(), nn.Dropout(config.dropout_ratio),
                              nn.Linear(config.hidden_size, config.output_size),
                              nn.Dropout(config.dropout_ratio))
    else:
        model = nn.Sequential(nn.Conv2d(config.input_dim[0], config.filter_num, config.filter_size),
                              nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(config.pool_output_size, config.hidden_size), nn.ReLU(),
                              nn.Linear(config.hidden_size, config.output_size))
    opt = torch.optim.Adam(model.parameters(), lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]),
                           eps=ADAM["eps"])
    xs, ts, xis = ([torch.from_numpy(a) for a in group] for group in (xb, tb, xi))

    def step(i: int) -> float:
        model.train()  # Dropout on (the deep CNN's)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs[i % len(xs)]), ts[i % len(ts)])
        loss.backward()
        opt.step()
        return loss.item()

    def infer() -> list:
        model.eval()
        with torch.inference_mode():
            return [model(x) for x in xis]

    return Runner(step, infer)


def _keras_fit(config: ModelConfig, xb: list, tb: list, xi: list) -> Runner:
    import keras

    if config.name == "mlp":  # the idioms are hand-built per model, like the model files
        layers = [keras.layers.Dense(h, activation="relu") for h in config.hidden_sizes]
        model = keras.Sequential([keras.Input((config.input_size,)), *layers,
                                  keras.layers.Dense(config.output_size)])
    elif config.name == "deepcnn":  # (conv, ReLU) x 2, then a 2x2 pool, three times; the book's head
        ch, h, w = config.input_dim
        layers = [keras.Input((h, w, ch))]
        for i, (filters, size, pad, stride) in enumerate(config.conv_params, 1):
            layers += [keras.layers.ZeroPadding2D(pad)] if pad else []
            layers += [keras.layers.Conv2D(filters, size, strides=stride), keras.layers.ReLU()]
            layers += [keras.layers.MaxPooling2D(2)] if i % 2 == 0 else []
        model = keras.Sequential([
            *layers, keras.layers.Flatten(), keras.layers.Dense(config.hidden_size, activation="relu"),
            keras.layers.Dropout(config.dropout_ratio), keras.layers.Dense(config.output_size),
            keras.layers.Dropout(config.dropout_ratio)])
    else:
        ch, h, w = config.input_dim
        model = keras.Sequential([
            keras.Input((h, w, ch)), keras.layers.Conv2D(config.filter_num, config.filter_size),
            keras.layers.ReLU(), keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
            keras.layers.Dense(config.hidden_size, activation="relu"),
            keras.layers.Dense(config.output_size)])
    model.compile(optimizer=keras.optimizers.Adam(ADAM["lr"], ADAM["beta1"], ADAM["beta2"], ADAM["eps"]),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xs = [_nhwc(a) for a in xb]
    x_test = np.concatenate([_nhwc(a) for a in xi])
    return Runner(lambda i: model.train_on_batch(xs[i % len(xs)], tb[i % len(tb)]),
                  lambda: model.predict(x_test, batch_size=INFER_BATCH, verbose=0))


_BUILDERS: dict[str, Callable[..., Runner]] = {
    "numpy": _numpy, "torch": _torch, "tf": _tf, "chainer": _chainer,
    "torch-idiom": _torch_idiom, "keras-fit": _keras_fit,
    "tf-eager": lambda *a: _tf(*a, eager=True),
}


# --- timing -----------------------------------------------------------------------------------
def time_runners(runners: dict[str, Runner], model: str, repeat: int, steps: int, warmup: int = 2,
                 progress: Callable[[str], None] | None = None) -> list[Record]:
    """Warm every runner up, then ``repeat`` rounds of all runners in rotated order."""
    for runner in runners.values():
        for i in range(warmup):
            runner.step(i)
        runner.infer()
    names = list(runners)
    records = {(n, ph): Record(n, model, ph) for n in names for ph in PHASES}
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        if progress:
            progress(f"{model} repeat {r + 1}/{repeat}")
        for name in order:
            start = time.perf_counter()
            for i in range(steps):
                runners[name].step(i)
            records[(name, "train_step")].times.append((time.perf_counter() - start) / steps)
        for name in order:
            start = time.perf_counter()
            runners[name].infer()
            records[(name, "inference")].times.append(time.perf_counter() - start)
    return list(records.values())


def paired_ratio(a: Record, b: Record) -> float:
    """Median over repeats of a's time / b's time in the same repeat."""
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=True))


def fastest(records: list[Record], model: str, phase: str, exclude: str | None = None) -> Record | None:
    """The record of lowest median time for model and phase, adapters (an overhead) and
    ``exclude`` aside."""
    rivals = [r for r in records if r.model == model and r.phase == phase and r.impl != exclude
              and not r.impl.endswith("-adapter")]
    return min(rivals, key=lambda r: statistics.median(r.times), default=None)


def annotate(records: list[Record], configs: dict[str, ModelConfig], gemm: float,
             inference_size: int) -> None:
    """Fill ratio_vs_torch, ratio_vs_fastest, fastest and efficiency in place."""
    by = {(r.impl, r.model, r.phase): r for r in records}
    for r in records:
        torch_rec = by.get(("torch", r.model, r.phase))
        r.ratio_vs_torch = paired_ratio(r, torch_rec) if torch_rec is not None else None
        best = fastest(records, r.model, r.phase)
        r.fastest = best.impl
        r.ratio_vs_fastest = paired_ratio(r, best)
        n = BATCH if r.phase == "train_step" else inference_size
        r.efficiency = phase_flops(configs[r.model], r.phase, n) / gemm / statistics.median(r.times)


def check_targets(records: list[Record]) -> list[dict[str, object]]:
    """Each target with its measured paired ratio (None when an implementation was not run)."""
    by = {(r.impl, r.model, r.phase): r for r in records}
    out = []
    for impl, other, model, phase, bound in TARGETS:
        a = by.get((impl, model, phase))
        b = (fastest(records, model, phase, exclude=impl) if other == FASTEST
             else by.get((other, model, phase)))
        ratio = paired_ratio(a, b) if a is not None and b is not None else None
        vs = other if other != FASTEST or b is None else f"fastest ({b.impl})"
        out.append({"impl": impl, "vs": vs, "model": model, "phase": phase, "bound": bound,
                    "ratio": ratio, "met": None if ratio is None else ratio <= bound})
    return out


# --- memory -----------------------------------------------------------------------------------
def _maxrss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM of /proc/self/status, because
    ru_maxrss survives execve and would report a large parent's peak in a fresh subprocess."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2 ** 20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def memory_probe(impl: str, model: str, steps: int, inference_size: int,
                 data_dir: str | None = None, threads: int = 1) -> dict[str, float]:
    """Run in a fresh process: peak RSS after import + data (baseline) and after training/inference."""
    config = make_config(model)
    data = make_data(model, inference_size, data_dir=data_dir)
    adapter_class(FRAMEWORK_OF[impl])
    limit_threads(threads, [FRAMEWORK_OF[impl]])
    baseline = _maxrss_mb()
    runner = make_runner(impl, config, *data)
    for i in range(max(steps, 2)):
        runner.step(i)
    runner.infer()
    peak = _maxrss_mb()
    return {"baseline_mb": baseline, "peak_mb": peak, "delta_mb": peak - baseline}


def measure_memory(impl: str, model: str, steps: int, inference_size: int,
                   data_dir: str | None = None, threads: int = 1, timeout: float = 600,
                   ) -> dict[str, float] | None:
    """``memory_probe`` in a subprocess (its own ru_maxrss); None if it fails."""
    code = ("import json, sys; from rosetta.bench import memory_probe; "
            f"print(json.dumps(memory_probe({impl!r}, {model!r}, {steps}, {inference_size}, "
            f"{data_dir!r}, {threads})))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the whole run ----------------------------------------------------------------------------
def run_benchmark(
    impls: Sequence[str] = DEFAULT_IMPLS, models: Sequence[str] = MODELS, repeat: int = 5,
    steps: int = 20, inference_size: int = 10_000, data_dir: str | None = None, memory: bool = True,
    progress: Callable[[str], None] | None = None, threads: int = 1,
    configs: Mapping[str, ModelConfig] | None = None,
) -> dict[str, Any]:
    """Time ``impls`` on ``models``; returns {"machine", "records", "targets", "skipped"}.

    ``configs``: the model's hyper-parameters by model name (default: each model's defaults); a
    non-default one runs without the frameworks' idioms and the memory probe, which build the
    defaults."""
    custom = {m: c for m, c in (configs or {}).items() if c != make_config(m)}
    skipped: dict[str, str] = {}
    available = []
    for impl in impls:
        try:
            adapter_class(FRAMEWORK_OF[impl])
            available.append(impl)
        except FrameworkNotInstalled as exc:
            skipped[impl] = str(exc)
    thread_setting = limit_threads(threads, {FRAMEWORK_OF[i] for i in available})
    malloc = keep_freed_memory()  # the same for every implementation (MALLOC_SETTINGS: why)
    gemm = gemm_flops()
    configs = {m: (configs or {}).get(m) or make_config(m) for m in models}
    records: list[Record] = []
    for model in models:
        data = make_data(configs[model], inference_size, data_dir=data_dir)
        runners = {}
        for impl in available:
            if impl in IDIOMS and (model not in IDIOM_MODELS or model in custom):
                continue
            if progress:
                progress(f"building {impl} {model}")
            runners[impl] = make_runner(impl, configs[model], *data)
        records += time_runners(runners, model, repeat, steps, progress=progress)
        del runners
    annotate(records, configs, gemm, inference_size)
    if memory:
        for model in (m for m in models if m not in custom):
            for impl in available:
                if progress:
                    progress(f"peak memory of {impl} {model} (subprocess)")
                if impl in IDIOMS and model not in IDIOM_MODELS:
                    continue
                mem = measure_memory(impl, model, steps, inference_size, data_dir, threads)
                for r in records:
                    if r.impl == impl and r.model == model and mem is not None:
                        r.peak_mem_mb = round(mem["peak_mb"], 1)
    machine = {"date": time.strftime("%Y-%m-%d"), "gemm_gflops_float32": gemm / 1e9, "batch_size": BATCH,
               "steps_per_repeat": steps, "repeats": repeat, "inference_size": inference_size,
               "data": "MNIST" if data_dir else "synthetic uniform [0, 1)",
               "load_average": os.getloadavg(), "thread_limit": thread_setting, "malloc": malloc,
               **thread_info({FRAMEWORK_OF[i] for i in available})}
    return {"machine": machine, "records": [r.as_dict() for r in records],
            "targets": check_targets(records), "skipped": skipped,
            "flops": {m: {"train_step": phase_flops(c, "train_step", BATCH),
                          "inference": phase_flops(c, "inference", inference_size)}
                      for m, c in configs.items()}}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def format_table(result: dict[str, Any], markdown: bool = False) -> str:
    """The records as a text (or markdown) table: ms, ratio to torch, efficiency, memory."""
    head = ["model", "phase", "impl", "median ms", "min ms", "max ms", "x fastest", "fastest", "x torch",
            "eff %", "peak MB"]
    rows = []
    for r in result["records"]:
        ratio = "-" if r["ratio_vs_torch"] is None else f"{r['ratio_vs_torch']:.2f}"
        vs_fastest = "-" if r.get("ratio_vs_fastest") is None else f"{r['ratio_vs_fastest']:.2f}"
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        rows.append([r["model"], r["phase"], r["impl"], _ms(r["median_s"]), _ms(r["min_s"]),
                     _ms(r["max_s"]), vs_fastest, r.get("fastest") or "-", ratio,
                     f"{100 * r['efficiency']:.1f}", mem])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = lambda row: "  ".join(str(c).rjust(w) if i > 2 and i != 7 else str(c).ljust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths, strict=True)))
    return "\n".join([fmt(head), "-" * len(fmt(head)), *map(fmt, rows)])


def _malloc_words(machine: Mapping[str, Any]) -> str:
    setting = machine.get("malloc", "not recorded")
    kept = setting.startswith("M_")
    return f"freed memory kept for reuse (glibc {setting})" if kept else f"malloc {setting}"


def format_markdown(result: dict[str, Any]) -> str:
    """The whole results page of one run: the machine and settings, the table, the targets."""
    m = result["machine"]
    threads = m["thread_limit"].get("threads", "library defaults")
    threads = "one compute thread" if threads == "1" else f"{threads} compute threads"
    load = m["load_average"][0] if m.get("load_average") else float("nan")
    lines = [
        "# Benchmark results", "",
        f"One `rosetta bench` run{' on ' + m['date'] if m.get('date') else ''}. Machine: "
        f"{m.get('cpu_count', '?')} cores, float32 GEMM {m['gemm_gflops_float32']:.0f} GFLOP/s on one "
        f"thread, {threads} per library, {_malloc_words(m)}, load average {load:.2f} at the start; batch "
        f"{m['batch_size']}, {m['steps_per_repeat']} steps per repeat, {m['repeats']} repeats, inference "
        f"over {m['inference_size']} images ({m['data']}). \"x fastest\" is the paired ratio against the "
        "fastest implementation of that model and phase in this run (\"fastest\" names it), \"x torch\" "
        "against torch_impl, \"eff %\" the model's FLOPs at the measured GEMM rate over the time.", "",
        format_table(result, markdown=True), "",
        "Targets (paired ratios, same run):", "",
    ]
    for t in result["targets"]:
        what, ratio, verdict = _target_parts(t)
        lines.append(f"- {what}: {verdict}" if ratio is None else f"- {what}: {ratio}, {verdict}")
    return "\n".join(lines) + "\n"


def _target_parts(target: dict[str, Any]) -> tuple[str, str | None, str]:
    """A target's wording, its measured ratio (None: not measured) and its verdict."""
    what = f"{target['impl']} {target['model']} {target['phase']} <= {target['bound']}x {target['vs']}"
    if target["ratio"] is None:
        return what, None, "not measured"
    return what, f"{target['ratio']:.2f}x", "met" if target["met"] else "MISSED"


def format_targets(result: dict[str, Any]) -> str:
    lines = []
    for t in result["targets"]:
        what, ratio, verdict = _target_parts(t)
        lines.append(f"  {what}: {verdict}" if ratio is None else f"  {what}: {ratio}  {verdict}")
    return "\n".join(lines)


__all__ = ["ALL_IMPLS", "BENCH_MODELS", "DEFAULT_IMPLS", "IMPLS", "IDIOMS", "MODELS", "Record", "Runner",
           "fastest", "forward_flops", "format_markdown", "format_table", "format_targets", "gemm_flops",
           "keep_freed_memory", "limit_threads", "make_runner", "memory_probe", "model_class", "phase_flops",
           "run_benchmark", "thread_info", "time_runners"]
