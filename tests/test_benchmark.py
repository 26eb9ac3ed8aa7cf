"""The benchmark's verdict: which rows make `benchmarks/benchmark.py` exit non-zero."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "benchmarks" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(variant, files_per_run=1, change=0.0, finite=True, status="measured"):
    return {"variant": variant, "status": status, "files_per_run": files_per_run,
            "finite": finite, "parity_change": change, "parity_ok": abs(change) <= 0.05}


def test_a_clean_run_passes(bench):
    rows = [row("original"), row("+cached", change=0.01), row("+batching", 12, change=0.4),
            row("+amp", status="n/a on CPU")]
    assert bench.failures(rows, total_epochs=35) == []


def test_a_crashed_or_non_finite_variant_fails(bench):
    rows = [row("original"), row("+cached", status="failed: RuntimeError: boom"),
            row("optimized", 12, finite=False)]
    problems = bench.failures(rows, total_epochs=35)
    assert len(problems) == 2
    assert "boom" in problems[0] and "not finite" in problems[1]


def test_parity_gates_one_file_rows_always_and_batched_rows_only_in_long_runs(bench):
    one_file_miss = [row("original"), row("+amp", change=0.08)]
    assert "+amp" in bench.failures(one_file_miss, total_epochs=4)[0]
    batched_miss = [row("original"), row("optimized", 12, change=-0.3)]
    assert bench.failures(batched_miss, total_epochs=bench.BATCHED_PARITY_MIN_EPOCHS - 1) == []
    assert "optimized" in bench.failures(batched_miss,
                                         total_epochs=bench.BATCHED_PARITY_MIN_EPOCHS)[0]
