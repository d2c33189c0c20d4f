"""Data-parallel parity: torch DDP (2 gloo processes), TF MirroredStrategy (2 logical CPUs) and
ChainerMN (2 MPI ranks) trained 20 SGD steps on MNIST's global batches of 100 against the
one-process NumPy reference.

One run of every scenario (rosetta.distributed.cached_run) serves this file and the
"Data-parallel training" sections of test_porting_guide.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir_or_skip, require_all, require_framework

from rosetta import distributed as dp
from rosetta.weights import MODEL_NAMES

MODELS = dp.implemented_models()  # the models of the table that every package implements
BN_MODELS = [m for m in MODELS if dp._has_field(m, "use_batchnorm")]


@pytest.fixture(scope="module")
def report() -> dp.Report:
    for framework in dp.FRAMEWORKS:
        require_framework(framework)
    return dp.cached_run(str(mnist_dir_or_skip()))


@pytest.fixture(scope="module")
def chainermn(report: dp.Report) -> None:
    """ChainerMN ran (MPI installed); skip without it, fail under ROSETTA_REQUIRE_ALL=1."""
    missing = dp.chainermn_missing()
    if missing:
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {missing}")
        pytest.skip(missing)
    assert "chainer" in report.runs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _case_id(r: dp.Result) -> str:
    return f"{r.framework}-{r.scenario.label}-{r.scenario.dtype}"


def test_every_model_and_dtype_runs(report: dp.Report) -> None:
    """Every model of the suite in both engines: the MLP and the deep CNN in float64, the CNN in
    float32 (the quick selection; ``rosetta parity --distributed`` runs every model in both dtypes,
    the deep CNN in float64: dp.FLOAT64_ONLY says why)."""
    for framework in ("torch", "tf"):
        runs = {(r.scenario.model, r.scenario.dtype) for r in report.results
                if r.framework == framework and r.scenario.variant == "correct"
                and r.scenario.batchnorm == "none"}
        assert runs == {(m, "float64" if m == "mlp" or m in dp.FLOAT64_ONLY else "float32") for m in MODELS}
    assert "deepcnn" in MODELS
    assert len(report.results) == sum(len(dp.scenarios(f, quick=True)) for f in report.runs)


def test_chainermn_matches(report: dp.Report, chainermn: None) -> None:
    """ChainerMN (multi-node optimizer, MultiNodeBatchNormalization, per-rank Dropout masks) on
    the MLP in the suite; ``rosetta parity --distributed`` runs every model."""
    runs = [r for r in report.results if r.framework == "chainer"]
    assert {(r.scenario.batchnorm, r.scenario.dropout) for r in runs} == \
        {("none", 0.0), ("sync", 0.0), ("none", dp.DROPOUT_RATIO)}
    for r in runs:
        assert r.passed and r.worst_rel_err < 1e-12, r.describe()


def test_the_full_selection() -> None:
    """The command's selection: every model in both dtypes, BatchNorm both ways on every model
    that has it, and every pitfall once."""
    for framework in dp.FRAMEWORKS:
        plan = dp.scenarios(framework)
        assert {(s.model, s.dtype) for s in plan if s.variant == "correct"} == \
            {(m, d) for m in MODELS for d in dp.DTYPES if d == "float64" or m not in dp.FLOAT64_ONLY}
        assert {(s.model, s.batchnorm) for s in plan if s.batchnorm != "none"} == \
            {(m, b) for m in BN_MODELS for b in ("sync", "per-replica")}
        assert len({s.key for s in plan}) == len(plan)
    variants = {s.variant for f in dp.FRAMEWORKS for s in dp.scenarios(f)}
    assert variants == set(dp.VARIANTS)


def test_correct_runs_match_the_reference(report: dp.Report) -> None:
    """Parameters after every step within the trajectory bound (float64 1e-12, float32 1e-5),
    identical eval predictions, the replicas identical to each other."""
    checked = [r for r in report.results if r.scenario.checked]
    assert len(checked) >= 4 * len(MODELS)
    failures = [r.describe() for r in checked if not r.passed]
    assert not failures, "\n".join(failures)
    for r in checked:
        assert len(r.per_step) == r.scenario.steps
        assert r.tol == (1e-12 if r.scenario.dtype == "float64" else 1e-5)


def test_the_comparison_sees_a_step(report: dp.Report) -> None:
    """The runs moved (20 steps of lr 0.1), so a matching run is not a run that never trained."""
    run_ = report.runs["torch"]
    history = run_.history[dp.Scenario("mlp", "float64").key]
    first, last = history[0]["fc1.W"], history[-1]["fc1.W"]
    assert np.max(np.abs(last - first)) > 1e-2


def test_synchronised_batchnorm_matches(report: dp.Report) -> None:
    runs = [r for r in report.results if r.scenario.batchnorm == "sync"]
    assert {r.framework for r in runs} == set(dp.FRAMEWORKS)
    for r in runs:
        assert r.passed and r.worst_rel_err < 1e-12, r.describe()


def test_per_replica_batchnorm_differs(report: dp.Report) -> None:
    """The frameworks' default (statistics of the replica's 50 examples) is a different training:
    measured (torch here; both in ``rosetta parity --distributed``), shown in the porting guide."""
    runs = [r for r in report.results if r.scenario.batchnorm == "per-replica"]
    assert {(r.framework, r.scenario.model) for r in runs} == {("torch", m) for m in BN_MODELS}
    for r in runs:
        assert r.worst_rel_err > 1e-2, r.describe()


def test_dropout_masks_from_the_global_mask(report: dp.Report) -> None:
    for framework in dp.FRAMEWORKS:
        r = report.result(framework, dropout=dp.DROPOUT_RATIO)
        assert r.passed and r.worst_rel_err < 1e-12, r.describe()


WRONG = [("torch", "grads-summed"), ("torch", "same-dropout-mask"), ("tf", "loss-per-replica-batch")]


@pytest.mark.parametrize("framework, variant", WRONG)
def test_wrong_examples_fail(report: dp.Report, framework: str, variant: str) -> None:
    """Each pitfall, run on purpose, is far outside the bound (while its replicas stay in sync)."""
    dropout = dp.DROPOUT_RATIO if variant == "same-dropout-mask" else 0.0
    r = report.result(framework, dropout=dropout, variant=variant)
    assert not r.scenario.checked
    assert r.worst_rel_err > 1e4 * r.tol, r.describe()
    assert r.replica_spread == 0.0


def test_lr_scaled_run_is_exact(report: dp.Report) -> None:
    """DDP at lr x2 matches the reference at lr x2: the lr-rescale gap is the recipe's, not DDP's."""
    r = report.result("torch", variant="lr-scaled", lr=dp.LR * dp.WORLD_SIZE)
    assert r.passed and r.worst_rel_err < 1e-12, r.describe()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_are_gone(report: dp.Report) -> None:
    """Every worker ran in its own process group (the torch ranks, the TF process, mpirun with its
    ranks): no process of any of those groups is left."""
    pids = [pid for run_ in report.runs.values() for pid in run_.pids]
    assert len(pids) == dp.WORLD_SIZE + 1 + ("chainer" in report.runs)
    assert not [pid for pid in pids if _alive(pid) or _group_alive(pid)]


def test_a_hanging_worker_is_killed(tmp_path: Path) -> None:
    """The timeout path: the worker (and its process group) is killed, the error names it."""
    procs = dp.start_processes([[sys.executable, "-c", "import time; time.sleep(600)"]], tmp_path, "hang")
    start = time.monotonic()
    try:
        with pytest.raises(dp.DistributedError, match="hang worker 0 did not finish"):
            dp.wait_processes({"hang": procs}, tmp_path, time.monotonic() + 0.5)
    finally:
        dp.kill_processes(procs)
    assert time.monotonic() - start < 10
    assert procs[0].poll() is not None and not _alive(procs[0].pid) and not _group_alive(procs[0].pid)


def test_a_failing_worker_reports_its_log(tmp_path: Path) -> None:
    procs = dp.start_processes([[sys.executable, "-c", "raise SystemExit('broken rendezvous')"]],
                               tmp_path, "torch")
    try:
        with pytest.raises(dp.DistributedError, match="torch worker 0 exited with status 1:\n.*broken"):
            dp.wait_processes({"torch": procs}, tmp_path, time.monotonic() + 30)
    finally:
        dp.kill_processes(procs)


FAILING_RANK = """
import signal, sys, time
from pathlib import Path
from rosetta.distributed import WORLD_SIZE, fork_ranks

def run_rank(rank):
    if rank == 1:
        raise RuntimeError("rank 1 cannot rendezvous")
    # rank 0 waits for the rank that failed with SIGCHLD blocked, as a rank blocked in C++ (gloo's
    # rendezvous or a collective) that no Python signal handler interrupts
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    time.sleep(600)

fork_ranks(run_rank, WORLD_SIZE, Path(sys.argv[1]), "torch")
"""


def test_a_failing_forked_rank_ends_the_worker(tmp_path: Path) -> None:
    """torch's ranks 1.. are forked by rank 0 (dp.fork_ranks): one that fails ends the worker at
    once (rank 0 does not wait out the gloo timeout), the log names the rank, no process is left."""
    procs = dp.start_processes([[sys.executable, "-c", FAILING_RANK, str(tmp_path)]], tmp_path, "torch")
    start = time.monotonic()
    try:
        with pytest.raises(dp.DistributedError, match=r"(?s)torch worker 0 exited with status 1:.*"
                           r"rank 1: RuntimeError: rank 1 cannot rendezvous.*torch rank 1 failed"):
            dp.wait_processes({"torch": procs}, tmp_path, time.monotonic() + 60)
    finally:
        dp.kill_processes(procs)
    assert time.monotonic() - start < 30
    pids = [int(p) for p in dp.forked_pids_file(tmp_path, "torch").read_text().split()]
    assert len(pids) == dp.WORLD_SIZE and not [p for p in pids if _alive(p)]
    assert not _group_alive(procs[0].pid)


def test_running_var_conversion() -> None:
    """Keras's biased EMA -> the contract's unbiased EMA, against the recursion itself."""
    rng = np.random.default_rng(0)
    m, c = 50, 0.9
    biased, unbiased = np.ones(3), np.ones(3)
    for step in range(1, 6):
        var = rng.random(3)
        biased = c * biased + (1 - c) * var
        unbiased = c * unbiased + (1 - c) * var * m / (m - 1)
        np.testing.assert_allclose(dp.running_var_from_biased(biased, np.ones(3), c, step, m), unbiased,
                                   rtol=1e-14)


def test_cli_distributed_chainer_without_mpi() -> None:
    """Without mpirun on the PATH: one message naming what to install, exit 1."""
    out = subprocess.run([sys.executable, "-m", "rosetta.cli", "parity", "--distributed", "--framework",
                          "chainer"], capture_output=True, text=True, cwd=dp.ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(dp.ROOT), "PATH": ""})
    assert out.returncode == 1
    assert "ChainerMN needs" in out.stderr and "openmpi-bin" in out.stderr
    assert "Traceback" not in out.stderr


def test_models_come_from_the_model_table() -> None:
    """Every model of the table that every package implements runs (FLOAT64_ONLY models in float64
    only); a model without a file in some package (a port in progress) is left out, not failed."""
    assert set(MODELS) <= set(MODEL_NAMES) and {"mlp", "cnn"} <= set(MODELS)
    for model in MODEL_NAMES:
        packages = ("reference_numpy", "torch_impl", "tf_impl", "chainer_impl")
        files = [dp.ROOT / p / f"{model}.py" for p in packages]
        assert (model in MODELS) == all(f.is_file() for f in files)
    for model in dp.FLOAT64_ONLY:
        assert {s.dtype for s in dp.scenarios("torch", [model])} == {"float64"}
