"""``rosetta bench``: a smoke run (never a timed assertion) and the analytic FLOP counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_framework

from rosetta.bench import MALLOC_SETTINGS, forward_flops, keep_freed_memory, memory_probe, phase_flops
from rosetta.cli import main
from rosetta.configs import MODEL_NAMES
from rosetta.weights import make_config


def test_flop_counts() -> None:
    # MLP 784-100-100-10: 2 * (78400 + 10000 + 1000) per sample.
    assert forward_flops(make_config("mlp")) == 2 * (784 * 100 + 100 * 100 + 100 * 10)
    # CNN: conv 30 x 24 x 24 outputs of 1 x 5 x 5 MACs, then 4320 x 100 and 100 x 10.
    cnn = make_config("cnn")
    assert forward_flops(cnn) == 2 * (30 * 24 * 24 * 25 + 4320 * 100 + 100 * 10)
    assert phase_flops(cnn, "train_step", 100) == 3 * 100 * forward_flops(cnn)
    assert phase_flops(cnn, "inference", 10_000) == 10_000 * forward_flops(cnn)


def test_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_framework("torch")
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    # --threads 0: the libraries' thread counts are process-wide; the suite's other tests keep theirs.
    assert main(["bench", "--repeat", "1", "--steps", "1", "--inference-size", "200", "--no-memory",
                 "--threads", "0", "--impl", "numpy", "--impl", "torch", "--json", str(out),
                 "--markdown", str(md)]) == 0
    text = capsys.readouterr().out
    assert "torch.get_num_threads" in text and "targets" in text
    result = json.loads(out.read_text())
    records = result["records"]
    assert {(r["impl"], r["model"], r["phase"]) for r in records} == {
        (i, m, p) for i in ("numpy", "torch") for m in MODEL_NAMES for p in ("train_step", "inference")}
    for r in records:
        assert set(r) >= {"impl", "model", "phase", "median_s", "min_s", "max_s", "ratio_vs_torch",
                          "ratio_vs_fastest", "fastest", "efficiency", "peak_mem_mb"}
        assert r["min_s"] <= r["median_s"] <= r["max_s"] and r["efficiency"] > 0
        if r["impl"] == "torch":
            assert r["ratio_vs_torch"] == 1.0
        # The fastest of a model and phase is the lower median of the two; its own ratio is 1.
        pair = [q for q in records if q["model"] == r["model"] and q["phase"] == r["phase"]]
        assert r["fastest"] == min(pair, key=lambda q: q["median_s"])["impl"]
        if r["impl"] == r["fastest"]:
            assert r["ratio_vs_fastest"] == 1.0
    targets = {(t["impl"], t["vs"], t["model"], t["phase"]) for t in result["targets"]}
    for model, phase in (("cnn", "train_step"), ("cnn", "inference"), ("mlp", "train_step")):
        assert ("numpy", "fastest (torch)", model, phase) in targets  # the one other implementation
    assert result["machine"]["thread_limit"] == {"threads": "library defaults"}
    assert result["machine"]["gemm_gflops_float32"] > 0
    page = md.read_text()  # the whole results page of the run: settings, table, targets
    assert page.startswith("# Benchmark results\n") and "float32 GEMM" in page and "\n| model |" in page
    assert "\nTargets (paired ratios, same run):" in page and "- numpy cnn train_step <= 1.5x" in page


def test_memory_probe_numpy() -> None:
    mem = memory_probe("numpy", "mlp", steps=1, inference_size=200)
    assert mem["peak_mb"] >= mem["baseline_mb"] > 0


def test_bench_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--repeat", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "argument --repeat: must be an integer >= 1, got 0" in err
    with pytest.raises(SystemExit) as info:
        main(["bench", "--impl", "jax"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["bench", "--threads", "-1"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "argument --threads: must be an integer >= 0, got -1" in err


def test_limit_threads_sets_torch_and_openblas() -> None:
    require_framework("torch")
    import torch

    from rosetta.bench import limit_threads

    before = torch.get_num_threads()
    try:
        done = limit_threads(1, ["torch"])
        assert done["torch"] == "1" and torch.get_num_threads() == 1
        assert done["openblas"].startswith("1 (")  # NumPy's wheels bundle OpenBLAS
    finally:
        limit_threads(before, ["torch"])
    assert torch.get_num_threads() == before


# Freed blocks of 3-70 MiB, allocated and written 20 times over, in a fresh process: how many pages
# the kernel faults in again after the first round (ru_minflt).
_REFAULTS = """
import json, resource, sys
import numpy as np
from rosetta.bench import keep_freed_memory
done = keep_freed_memory() if sys.argv[1] == "keep" else "glibc defaults"
def rounds(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        for mib in (3, 7, 12, 5, 20, 70, 40):
            np.ones(mib << 20, dtype=np.uint8)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
rounds(1)
print(json.dumps([done, rounds(20)]))
"""


def test_keep_freed_memory_stops_refaulting_freed_pages() -> None:
    """glibc's defaults hand freed blocks back to the kernel and fault them in again (measured
    here: about 23000 faults over the 20 rounds); with rosetta.bench.MALLOC_SETTINGS the pages stay
    and the rounds fault none. A child started with the returned environment gets them too."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    results = {}
    for mode in ("defaults", "keep"):
        out = subprocess.run([sys.executable, "-c", _REFAULTS, mode], env=clean, capture_output=True,
                             text=True, check=True).stdout
        results[mode] = json.loads(out)
    assert results["keep"][0].startswith("M_TRIM_THRESHOLD=1073741824")
    assert results["defaults"][1] > 1000 and results["keep"][1] < results["defaults"][1] / 100, results
    child: dict[str, str] = {}
    keep_freed_memory(child)
    assert child == {name: str(value) for _, value, name in MALLOC_SETTINGS.values()}


def test_bench_models_come_from_one_table() -> None:
    from rosetta.bench import BENCH_MODELS, MODELS, model_class
    from rosetta.commands.bench import add_parser

    assert MODELS == tuple(BENCH_MODELS) and set(MODELS) >= {"mlp", "cnn"}
    assert model_class("numpy", "cnn").__module__ == "reference_numpy.cnn"
    import argparse

    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    model_choices = next(a.choices for a in parser._actions if a.dest == "model")
    assert tuple(model_choices) == (*MODELS, "all")


@pytest.mark.parametrize("idiom", ["torch-idiom", "keras-fit"])
def test_the_deep_cnn_has_the_idioms(idiom: str) -> None:
    """The deep CNN's framework idiom trains (a finite loss) and returns (N, 10) logits; every
    model of IDIOM_MODELS has the same "<= 1.2x idiom" targets as the CNN. (The MLP's and the CNN's
    idioms run in every ``rosetta bench``: a Keras compile, fit and predict costs 2 s of CPU here.)"""
    from rosetta.bench import FRAMEWORK_OF, IDIOM_MODELS, PHASES, TARGETS, make_data, make_runner

    require_framework(FRAMEWORK_OF[idiom])
    port = FRAMEWORK_OF[idiom]
    runner = make_runner(idiom, make_config("deepcnn"), *make_data("deepcnn", 30, n_batches=1))
    loss = runner.step(0)
    assert np.isfinite(float(np.asarray(loss).reshape(-1)[0]))
    logits = runner.infer()
    logits = logits if isinstance(logits, list) else [logits]
    assert [tuple(np.asarray(a).shape) for a in logits] == [(30, 10)]
    for model in IDIOM_MODELS:
        for phase in PHASES:
            assert (port, idiom, model, phase, 1.2) in TARGETS
    for phase in PHASES:  # the NumPy reference's targets of the CNN hold for the deep CNN as well
        assert ("numpy", "fastest", "deepcnn", phase, 1.5) in TARGETS
