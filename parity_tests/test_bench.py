"""``rosetta bench``: a smoke run (never a timed assertion) and the analytic FLOP counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_framework

from rosetta.bench import forward_flops, memory_probe, phase_flops
from rosetta.cli import main
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
    assert main(["bench", "--repeat", "1", "--steps", "1", "--inference-size", "200", "--no-memory",
                 "--impl", "numpy", "--impl", "torch", "--json", str(out), "--markdown", str(md)]) == 0
    text = capsys.readouterr().out
    assert "torch.get_num_threads" in text and "targets" in text
    result = json.loads(out.read_text())
    records = result["records"]
    assert {(r["impl"], r["model"], r["phase"]) for r in records} == {
        (i, m, p) for i in ("numpy", "torch") for m in ("mlp", "cnn") for p in ("train_step", "inference")}
    for r in records:
        assert set(r) >= {"impl", "model", "phase", "median_s", "min_s", "max_s", "ratio_vs_torch",
                          "efficiency", "peak_mem_mb"}
        assert r["min_s"] <= r["median_s"] <= r["max_s"] and r["efficiency"] > 0
        if r["impl"] == "torch":
            assert r["ratio_vs_torch"] == 1.0
    assert result["machine"]["gemm_gflops_float32"] > 0
    assert md.read_text().startswith("| model |")


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
