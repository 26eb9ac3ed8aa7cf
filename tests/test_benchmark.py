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


def tone(n_frames=172, f0=220.0):
    """A bundled-tone-like feature dict: n_frames of a loud, voiced, steady pitch."""
    import numpy as np

    from grown_timbres.config import HOP_LENGTH, N_MFCC

    return {"path": "tone.wav", "audio": np.zeros(n_frames * HOP_LENGTH, np.float32),
            "f0": np.full(n_frames, f0, np.float32), "voiced": np.ones(n_frames, bool),
            "loudness": np.full(n_frames, -20.0, np.float32),
            "mfcc": np.zeros((n_frames, N_MFCC), np.float32)}


@pytest.mark.parametrize("n_examples", [1, 2, 7])
def test_a_long_take_of_short_tones_splits_into_exactly_the_asked_examples(bench, n_examples):
    from grown_timbres.batching import EXAMPLE_FRAMES

    examples = bench.training_examples([tone(f0=220.0), tone(f0=330.0)], n_examples)["examples"]
    assert len(examples["starts"]) == n_examples
    assert examples["lengths"].tolist() == [EXAMPLE_FRAMES] * n_examples
    assert set(examples["f0"][:EXAMPLE_FRAMES].tolist()) == {220.0, 330.0}  # the tones alternate


def test_a_take_whose_windows_are_dropped_is_refused(bench):
    """A take with nothing to train on: collate refuses it, naming the take."""
    quiet = {**tone(), "loudness": tone()["loudness"] * 0 - 80.0}
    with pytest.raises(ValueError, match="no 4 s stretch to train on"):
        bench.training_examples([quiet], 3)


def test_steady_steps_skips_the_warm_up_and_takes_the_median_step(bench):
    history = {"loss": [1.0] * 5, "timed_epochs": [1, 2, 3, 4, 5], "examples_per_step": 8,
               "steps_per_epoch": 3, "elapsed_seconds": [10.0, 12.0, 14.0, 17.0, 19.0]}
    steady = bench.steady_steps(history, warmup=1)
    assert steady["s_per_step"] == 2.0 and steady["timed_steps"] == 4
    assert steady["examples_per_s"] == 4.0 and steady["s_per_epoch"] == 6.0
    with pytest.raises(ValueError):  # synchronised every 2 steps: no per-step times
        bench.steady_steps({**history, "timed_epochs": [2, 4]}, warmup=1)


def test_the_step_memory_calibration_fits_bytes_per_example_and_per_wave_value():
    spec = importlib.util.spec_from_file_location(
        "measure_step_memory", ROOT / "scripts" / "measure_step_memory.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    points = [(n, 300e6 + n * 100e6) for n in (1, 2, 4, 8)]
    fit = script.calibration(points, values_per_example=5_000_000, margin=1.1)
    assert fit["bytes_per_example"] == pytest.approx(100e6)
    assert fit["intercept_bytes"] == pytest.approx(300e6)
    assert fit["bytes_per_wave_value"] == pytest.approx(20.0)
    assert fit["suggested"] == 22
    with pytest.raises(ValueError):
        script.calibration([(4, 1e9), (4, 1.1e9)], values_per_example=1)


def test_the_room_measurement_trains_its_three_models_and_records_them(tmp_path):
    """scripts/measure_room.py end to end at a toy size: a two-note melody, dry and in the room,
    three models of two steps; the record holds each model's distance, the room's learned
    envelope and the two ratios the issue's targets are stated in."""
    import json
    import subprocess
    import sys
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "measure_room.py"), "--melody-notes", "2",
         "--note-seconds", "0.3", "--epochs", "2", "--hidden", "8", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "measure_room.json").read_text())
    assert set(record["results"]) == {"room, wet tones", "no room, wet tones",
                                      "dry model, dry tones"}
    assert all(r["spectral_distance"] > 0 for r in record["results"].values())
    assert set(record["results"]["room, wet tones"]["room"]) == {"level", "decay_seconds"}
    assert set(record["summary"]) == {"room_vs_no_room", "room_vs_dry"}
    assert {p.name for p in tmp_path.glob("*.wav")} == {"melody_dry.wav", "wet_melody_dry.wav"}
