"""Shared fixtures: framework availability (skip, or fail under ROSETTA_REQUIRE_ALL=1) and MNIST."""

from __future__ import annotations

import os

# One compute thread per library for the whole suite, set before any of them loads. The suite's
# arrays are small (batches of 2-100): on this project's 2-core machines two threads spend their
# time in spin-waits and barriers, and lose a whole time slice whenever anything else runs.
# Measured: a (4, 4320) @ (4320, 100) float64 product 0.19 s with two OpenBLAS threads against
# 0.004 s with one; a torch DeepCNN forward and backward on 4 images 0.09 s against 0.007 s.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
             "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")

import importlib  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rosetta.adapters import FrameworkNotInstalled, adapter_class  # noqa: E402
from rosetta.bench import keep_freed_memory, set_openblas_threads  # noqa: E402
from rosetta.weights import CNNConfig, MLPConfig, param_spec  # noqa: E402

# NumPy may have loaded before this file (a plugin): set its OpenBLAS pool directly as well.
set_openblas_threads(int(os.environ["OPENBLAS_NUM_THREADS"]))
# Freed memory stays in each test process and in the processes it starts (workers, kernels, CLI
# runs): rosetta.bench.MALLOC_SETTINGS says why and what it saves.
keep_freed_memory(os.environ)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require_all() -> bool:
    """CI sets ROSETTA_REQUIRE_ALL=1: then a missing framework or data set fails, never skips."""
    return os.environ.get("ROSETTA_REQUIRE_ALL") == "1"


def require_framework(framework: str) -> None:
    """Skip the calling test when ``framework`` is not installed, or fail under REQUIRE_ALL."""
    try:
        adapter_class(framework)
    except FrameworkNotInstalled as exc:
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {exc}")
        pytest.skip(str(exc))


def import_framework(module: str) -> types.ModuleType:
    """``pytest.importorskip`` for a framework module, except under ROSETTA_REQUIRE_ALL=1, where a
    missing framework raises (a collection error fails CI)."""
    if require_all():
        return importlib.import_module(module)
    return pytest.importorskip(module)


def mnist_dir_or_skip() -> Path:
    """The real MNIST folder from $MNIST_DIR; skip without it (fail under REQUIRE_ALL)."""
    value = os.environ.get("MNIST_DIR")
    if not value or not Path(value).is_dir():
        message = "MNIST_DIR is not set to a folder with the MNIST IDX files"
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {message}")
        pytest.skip(message)
    return Path(value)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return mnist_dir_or_skip()


DLFS_FILES = ("ch03-sample_weight.pkl", "ch07-params.pkl", "ch08-deep_convnet_params.pkl")


def dlfs_weights_dir_or_skip() -> Path:
    """The book's trained parameter files from $DLFS_WEIGHTS_DIR; skip without them (fail under
    REQUIRE_ALL)."""
    value = os.environ.get("DLFS_WEIGHTS_DIR")
    if not value or not all((Path(value) / name).is_file() for name in DLFS_FILES):
        message = f"DLFS_WEIGHTS_DIR is not set to a folder with {', '.join(DLFS_FILES)}"
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {message}")
        pytest.skip(message)
    return Path(value)


@pytest.fixture(scope="session")
def dlfs_weights_dir() -> Path:
    return dlfs_weights_dir_or_skip()


# --- helpers the port tests share ------------------------------------------------------------

PORT_CONFIGS = {
    "mlp-bn-dropout": MLPConfig(use_batchnorm=True, dropout_ratio=0.2, weight_decay=0.1),
    "cnn-bn": CNNConfig(use_batchnorm=True, weight_decay=0.1),
}


def random_params(config: MLPConfig | CNNConfig, dtype: str, seed: int = 1) -> dict[str, np.ndarray]:
    """Canonical tensors with no symmetry to hide a transpose (running stats included)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_spec(config).items():
        value = rng.standard_normal(shape)
        params[name] = (np.abs(value) + 0.5 if name.endswith("running_var") else value).astype(dtype)
    return params


def batch(config: MLPConfig | CNNConfig, dtype: str, n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (n, *config.input_shape)
    return rng.random(shape).astype(dtype), rng.integers(0, 10, n).astype(np.int64)


# --- the one optimizer-step harness (the port tests and the porting guide) ----------------------

def shipped_optimizer_steps(framework: str, name: str, w0: np.ndarray, grads: list[np.ndarray],
                            lrs: list[float] | None = None, **overrides: float) -> np.ndarray:
    """``w0`` after one step per gradient of the optimizer class port ``framework`` ships
    (``<package>.OPTIMIZERS[name]`` with the reference hyper-parameters; ``<package>.set_lr``
    before step i when ``lrs`` is given; ``overrides`` replace reference defaults), in float64."""
    from rosetta.adapters.base import OPTIMIZER_DEFAULTS
    from rosetta.registry import package

    pkg = package(framework)
    hp = {**OPTIMIZER_DEFAULTS[name], **overrides}
    if framework == "torch":
        import torch

        p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
        opt = pkg.OPTIMIZERS[name]([p], **hp)
        for i, g in enumerate(grads):
            if lrs is not None:
                pkg.set_lr(opt, lrs[i])
            p.grad = torch.from_numpy(g.copy())
            opt.step()
        return p.detach().numpy().copy()
    if framework == "tf":
        import keras
        import tensorflow as tf

        v = keras.Variable(w0.copy(), dtype="float64")
        opt = pkg.OPTIMIZERS[name]([v], **hp)
        for i, g in enumerate(grads):
            if lrs is not None:
                pkg.set_lr(opt, lrs[i])
            opt.update([tf.constant(g)])
        return np.asarray(v).copy()
    if framework == "chainer":
        from chainer_impl.compat import import_chainer

        chainer = import_chainer()
        link = chainer.Link()
        with link.init_scope():
            link.w = chainer.Parameter(w0.copy())
        opt = pkg.OPTIMIZERS[name](**hp)
        opt.setup(link)
        for i, g in enumerate(grads):
            if lrs is not None:
                pkg.set_lr(opt, lrs[i])
            link.w.grad = g.copy()
            opt.update()
        return link.w.array.copy()
    raise ValueError(f"no optimizer harness for {framework!r}")


# --- how the suite spreads over the CPUs (pytest-xdist, --dist loadgroup) ------------------------

# Tests that share a module- or process-wide result run in one worker, so it is computed once:
# the parity matrix's reference results are cached per (case, dtype) (and per optimizer for the
# trajectories, the largest), the data-parallel report is shared by test_distributed.py and the
# porting guide, the book's files by the tests of each file, and the files with module-scoped
# fixtures keep their tests together. Every other test is a unit of its own.
SHARED_GROUPS = {"test_porting_guide.py": "distributed", "test_distributed.py": "distributed"}
MODULE_GROUPS = ("test_bad_inputs.py", "test_check.py", "test_fuzz.py", "test_notebook.py")
COURSE_FILE_PARTS = ("ch03", "ch07", "ch08", "extend")


def xdist_group(item: pytest.Item) -> str | None:
    """The worker group of one collected test (None: a unit of its own)."""
    module = item.path.name
    params = getattr(item, "callspec", None)
    if module == "test_parity.py" and params is not None and "case" in params.params:
        case, dtype = params.params["case"], params.params["dtype"]
        if item.originalname == "test_trajectory_on_mnist":
            return f"trajectory {case.label} {dtype} {params.params['optimizer']}"
        return f"parity {case.label} {dtype}"
    if module == "test_course_files.py":
        part = next((p for p in COURSE_FILE_PARTS if f"_{p}_" in f"_{item.name}_"), "other")
        return f"course files {part}"
    if module in MODULE_GROUPS:
        return module
    return SHARED_GROUPS.get(module)


# The longest groups start first (xdist hands out the units in collection order, and a long unit
# handed out last keeps one worker busy alone at the end): CPU seconds of each group, own and child
# processes, measured with `python -m pytest -p benchmarks.suite_cpu` on the 2-core machine; only
# the order depends on them.
GROUP_SECONDS = {
    "distributed": 38.0, "trajectory cnn float32 adam": 18.0, "trajectory cnn float32 sgd": 15.0,
    "trajectory deepcnn float64 adam": 14.0, "test_notebook.py": 12.0, "course files ch07": 10.0,
    "course files ch08": 10.0, "test_bad_inputs.py": 7.0, "parity cnn float64": 6.6,
    "trajectory deepcnn float32 adam": 6.0, "trajectory cnn float64 adam": 5.9,
    "trajectory cnn float64 sgd": 5.8, "parity cnn float32": 5.4, "test_fuzz.py": 4.8,
    "parity deepcnn float64": 3.7, "test_check.py": 3.1, "parity deepcnn float32": 3.0,
}


def pytest_itemcollected(item: pytest.Item) -> None:
    # Marked as each test is collected: xdist reads the marks into the node ids in its own
    # pytest_collection_modifyitems, which runs before a conftest's.
    group = xdist_group(item)
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest groups first (a stable sort: every other test keeps its place)."""
    items.sort(key=lambda item: -GROUP_SECONDS.get(xdist_group(item) or "", 0.0))
