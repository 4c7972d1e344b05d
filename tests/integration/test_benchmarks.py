"""The benchmark scripts still run: each one's `--quick` smoke run writes its JSON. No timings
are asserted (they belong to the machine, not to the code)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env


def run_quick(script: str, tmp_path) -> dict:
    output = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--quick", "--output", output],
        cwd=tmp_path,
        env=cli_env(),  # this checkout's lstm_pipeline, not the installed one
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["benchmark"] and report["machine"]["cpu_count"] >= 1
    assert len(report["machine"]["loadavg"]) == 3
    return report


def test_inference_benchmark_compares_ours_with_torch(tmp_path):
    report = run_quick("inference", tmp_path)
    for case in ("batch 1", "batch 1,000", "500 tickers"):
        row = report["windows_per_s"][case]
        assert row["ours"] > 0 and row["torch_eager"] > 0 and row["speedup_vs_torch"] > 0


@pytest.mark.slow
def test_e2e_benchmark_splits_both_flows_into_stages(tmp_path):
    report = run_quick("e2e", tmp_path)
    train, forecast = report["training_flow"], report["forecast_flow"]
    assert train["stages_s"]["training"] > 0 and forecast["stages_s"]["data"] > 0
    # the stages add up to the wall time: orchestration is the remainder
    assert sum(train["stages_s"].values()) == pytest.approx(train["wall_s"])
    assert report["runs"]["forecast"][0]["rows"] == 6 * 5  # six sample tickers, horizon 5


@pytest.mark.slow
def test_scale_benchmark_forecasts_without_torch(tmp_path):
    report = run_quick("scale", tmp_path)
    for size in report["forecast"].values():
        assert size["peak_rss_mib"] > 0
        assert not any(run["imported_torch"] for run in size["runs"])
    assert {"per_ticker", "fixed", "r2"} <= set(report["train_fit"]["fit_s"])
    assert all(size["windows_per_s"] > 0 for size in report["train"].values())


@pytest.mark.slow
def test_train_throughput_reports_fp32_and_bf16_side_by_side(tmp_path):
    from lstm_pipeline.runtime import cpu_has_native_bf16

    report = run_quick("train_throughput", tmp_path)
    fp32, bf16 = report["precisions"]["fp32"], report["precisions"]["bf16"]
    assert fp32["ours"] > 0 and fp32["bare_kernel"] > 0
    assert report["windows_per_s"]["ours"] > 0 and report["quantile_vs_point"] > 0
    if cpu_has_native_bf16():
        assert bf16["ours"] > 0 and bf16["bare_kernel"] > 0
        assert report["bf16_vs_fp32"]["ours"] == bf16["ours"] / fp32["ours"]
    else:
        assert bf16 is None and report["bf16_vs_fp32"] is None
        assert "precision bf16 needs" in report["bf16_unsupported"]
