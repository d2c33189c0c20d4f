"""benchmarks/suite_cpu.py, the suite's CPU profile: a test's own CPU and its children's are both
counted, the xdist workers' rows reach the controller, and the largest tests are listed first."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from rosetta import parity

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str) -> types.ModuleType:
    """benchmarks/<name>.py, loaded from its path (the tests' sys.path has parity_tests/, not the
    repository root)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trajectory_cost_main() -> Callable[[list[str]], int]:
    return load_benchmark("trajectory_cost").main

SAMPLE = '''
import subprocess, sys, time

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

def test_burns_in_process():
    burn(0.25)

def test_burns_in_a_child():
    subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + 0.25\\n"
                    "while time.process_time() < end: pass"], check=True)

def test_idle():
    time.sleep(0.2)
'''


def test_profile_counts_own_and_child_cpu(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's addopts
    out = tmp_path / "cpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "benchmarks.suite_cpu",
                          "-p", "no:xdist", "-p", "no:cacheprovider", "--suite-cpu", str(out), str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(out.read_text())
    rows = {r["test"].split("::")[1]: r for r in data["tests"]}
    assert set(rows) == {"test_burns_in_process", "test_burns_in_a_child", "test_idle"}
    assert rows["test_burns_in_process"]["own"] >= 0.2 and rows["test_burns_in_process"]["children"] < 0.1
    assert rows["test_burns_in_a_child"]["children"] >= 0.2
    assert rows["test_idle"]["own"] + rows["test_idle"]["children"] < 0.1 <= rows["test_idle"]["wall"]
    assert set(data["workers"]) == {"main"}
    largest = run.stdout.split("largest tests")[1].splitlines()[1:3]
    assert all("test_burns_in" in line for line in largest), run.stdout
    assert "worker main: " in run.stdout and "outside tests (start-up, imports, collection)" in run.stdout


def test_worker_rows_reach_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under xdist a worker hands its rows and totals over in workeroutput; the controller adds
    them to its own and reports its own CPU apart from its children (the workers)."""
    plugin = load_benchmark("suite_cpu")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    worker = plugin.SuiteCPU(types.SimpleNamespace())
    worker.rows = [{"test": "t.py::test_a[1]", "worker": "gw3", "own": 2.0, "children": 1.0, "wall": 3.0}]
    worker_config = types.SimpleNamespace(workeroutput={})
    worker.pytest_sessionfinish(types.SimpleNamespace(config=worker_config))
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    controller = plugin.SuiteCPU(types.SimpleNamespace())
    controller.pytest_testnodedown(types.SimpleNamespace(workeroutput=worker_config.workeroutput), None)
    controller.pytest_sessionfinish(types.SimpleNamespace(config=types.SimpleNamespace()))
    assert controller.rows == worker.rows and set(controller.workers) == {"gw3", "main"}
    lines = "\n".join(plugin.summary_lines(controller.rows, controller.workers))
    assert "3.0 CPU-s in tests (1.0 of it in child processes)" in lines
    assert "worker gw3: " in lines and "controller: " in lines
    assert "3.0  t.py::test_a" in lines and "3.0     3.0  t.py::test_a[1]" in lines


def test_trajectory_cost_times_every_trajectory_of_the_case(mnist_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/trajectory_cost.py: one row per (case, dtype, optimizer, implementation) of the
    matrix's trajectories, with the steps and test images the parity check runs."""
    main = trajectory_cost_main()
    assert main(["--data-dir", str(mnist_dir), "--model", "mlp", "--dtype", "float64",
                 "--framework", "numpy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("malloc: M_TRIM_THRESHOLD=")  # as in the suite (conftest.py)
    rows = [line.split() for line in out.splitlines()[2:-1]]
    expected = {(c.label, "float64", o, f) for c in parity.cases(["mlp"]) if "trajectory" in c.sections
                for o in c.trajectory_optimizers for f in ("numpy",)}
    assert {tuple(r[:4]) for r in rows} == expected and len(rows) == len(expected)
    assert all(r[4] == str(parity.FLOAT64_TRAJECTORY_STEPS) and r[6] == str(parity.FLOAT64_TEST_IMAGES)
               for r in rows)
    assert all(float(r[5]) > 0 for r in rows)
    assert out.splitlines()[-1].startswith("total: ")


def test_trajectory_cost_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = trajectory_cost_main()
    with pytest.raises(SystemExit) as stop:
        main(["--data-dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "no such folder" in err
    assert err.splitlines()[-1].startswith("trajectory_cost.py: error: --data-dir ")


def test_an_unwritable_profile_path_stops_before_the_run(tmp_path: Path) -> None:
    plugin = load_benchmark("suite_cpu")
    config = types.SimpleNamespace(getoption=lambda name: str(tmp_path / "missing" / "cpu.json"))
    with pytest.raises(pytest.UsageError, match=r"--suite-cpu .*cpu\.json: folder .*missing does not exist"):
        plugin.pytest_configure(config)
