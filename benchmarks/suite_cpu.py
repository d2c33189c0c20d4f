"""Where the test suite's CPU time goes: a pytest plugin.

    .venv/bin/python -m pytest -p benchmarks.suite_cpu --suite-cpu suite-cpu.json

On the project's 2-core machines the suite is CPU-bound (both xdist workers stay busy to the end),
so its wall time is about its CPU time over 2, and ``--durations`` (wall time) hides the CPU of a
test's child processes (the data-parallel workers, the notebook's kernel). This plugin measures,
per test, the CPU of the worker process and of the children it waited for (``getrusage``), and per
worker the CPU spent before the first test and between tests (start-up, imports, collection). The
controller gathers the workers' rows (xdist's ``workeroutput``), prints the largest shares at the
end of the run and writes every row to ``--suite-cpu`` as JSON.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rosetta.weights import atomic_write_bytes

ROWS_KEY = "suite_cpu_rows"
TOTAL_KEY = "suite_cpu_total"


def cpu_seconds() -> tuple[float, float]:
    """(CPU of this process, CPU of its waited-for children), user + system, in seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--suite-cpu", metavar="PATH", default=None,
                     help="write every test's CPU seconds (own, children) and wall seconds as JSON")


class SuiteCPU:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.rows: list[dict[str, Any]] = []
        self.workers: dict[str, dict[str, float]] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        own0, children0 = cpu_seconds()
        start = time.perf_counter()
        yield
        own1, children1 = cpu_seconds()
        self.rows.append({"test": item.nodeid, "worker": self.worker, "own": own1 - own0,
                          "children": children1 - children0, "wall": time.perf_counter() - start})

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        own, children = cpu_seconds()
        total = {"worker": self.worker, "own": own, "children": children}
        if hasattr(session.config, "workeroutput"):  # an xdist worker: hand the rows over
            session.config.workeroutput[ROWS_KEY] = json.dumps(self.rows)
            session.config.workeroutput[TOTAL_KEY] = json.dumps(total)
        else:  # the xdist controller, or the one process of a run without xdist
            self.workers[total.pop("worker")] = total

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", {})
        if ROWS_KEY in output:
            self.rows += json.loads(output[ROWS_KEY])
            total = json.loads(output[TOTAL_KEY])
            self.workers[total.pop("worker")] = total

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        for line in summary_lines(self.rows, self.workers):
            terminalreporter.write_line(line)
        path = self.config.getoption("--suite-cpu")
        if path:
            atomic_write_bytes(path, (json.dumps({"workers": self.workers, "tests": self.rows}, indent=1)
                                      + "\n").encode())
            terminalreporter.write_line(f"suite-cpu: {len(self.rows)} tests written to {path}")


def _file(row: dict[str, Any]) -> str:
    return Path(row["test"].split("::")[0]).name


def _function(row: dict[str, Any]) -> str:
    """``file.py::test_name`` without the parameters and the xdist group."""
    name = row["test"].partition("::")[2]
    return f"{_file(row)}::{name.split('[')[0].split('@')[0]}"


def summary_lines(rows: list[dict[str, Any]], workers: dict[str, dict[str, float]],
                  top: int = 15) -> list[str]:
    """The suite's CPU: in total, before and between tests, by file, by test function, by test."""
    cpu = [r["own"] + r["children"] for r in rows]
    in_tests = sum(cpu)
    lines = ["", f"suite-cpu: {len(rows)} tests, {in_tests:.1f} CPU-s in tests "
                 f"({sum(r['children'] for r in rows):.1f} of it in child processes)"]
    for worker, total in sorted(workers.items()):
        if worker == "main" and len(workers) > 1:  # xdist's controller: its children are the workers
            lines.append(f"  controller: {total['own']:.1f} CPU-s (collection, scheduling, reports)")
            continue
        mine = sum(c for r, c in zip(rows, cpu, strict=True) if r["worker"] == worker)
        whole = total["own"] + total["children"]
        lines.append(f"  worker {worker}: {whole:.1f} CPU-s, {whole - mine:.1f} of it outside tests "
                     "(start-up, imports, collection)")
    for title, key in (("file", _file), ("test function", _function)):
        shares: collections.Counter[str] = collections.Counter()
        for r, c in zip(rows, cpu, strict=True):
            shares[key(r)] += c
        lines.append(f"  largest by {title} (CPU-s):")
        lines += [f"    {value:7.1f}  {name}" for name, value in shares.most_common(top)]
    lines.append("  largest tests (CPU-s own + children, wall s):")
    for r, c in sorted(zip(rows, cpu, strict=True), key=lambda rc: -rc[1])[:top]:
        lines.append(f"    {c:7.1f}  {r['wall']:6.1f}  {r['test']}")
    return lines


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--suite-cpu")
    if path and not Path(path).resolve().parent.is_dir():  # fail before the run, not after it
        raise pytest.UsageError(f"--suite-cpu {path}: folder {Path(path).resolve().parent} does not exist")
    config.pluginmanager.register(SuiteCPU(config), "suite-cpu-recorder")
