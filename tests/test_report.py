"""grown_timbres/report.py: the sine baseline's level and pitch, resynthesis_metrics on inputs
whose answers are known (same signal, +-6 dB, +-50 cents), epoch timing, run records and the
side-by-side comparison, with every expected number worked out here from the inputs."""
import json

import numpy as np
import pytest

from grown_timbres.config import FFT_SIZES, HOP_LENGTH, LOUDNESS_FLOOR_DB, SAMPLE_RATE
from grown_timbres.features import compute_loudness, estimate_f0
from grown_timbres.model import DDSPModel
from grown_timbres.report import comparison_markdown, comparison_rows, format_number
from grown_timbres.runs import (epoch_seconds, load_run_record, make_run_record, save_run_record,
                                steady_and_warmup)
from grown_timbres.scoring import resynthesis_metrics, sine_baseline
from conftest import cents, peak_frequency


SR, HOP = SAMPLE_RATE, HOP_LENGTH


def tone(f0_hz, seconds, amplitude=0.3, partials=(1.0, 0.5, 0.25)):
    """A harmonic tone of whole frames, float32: sum_k amplitude x partials[k] sin(2 pi k f0 t);
    f0_hz may be a per-sample array (a glide or a jump: the phase is its running sum)."""
    n = int(seconds * SR) // HOP * HOP
    f0 = np.broadcast_to(np.asarray(f0_hz, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    audio = sum(amplitude * p * np.sin((k + 1) * phase) for k, p in enumerate(partials))
    return audio.astype(np.float32)


def middle(frames, skip=10):
    return frames[skip: len(frames) - skip]


# ----------------------------------------------------------------------------- sine baseline
@pytest.mark.parametrize("f0_hz", [110.0, 261.6, 1000.0, 3000.0])
@pytest.mark.parametrize("loudness_db", [-40.0, -20.0])
def test_sine_baseline_has_the_loudness_and_pitch_it_was_given(f0_hz, loudness_db):
    """A steady sine_baseline read back by compute_loudness is at the requested loudness within
    0.5 dB (a baseline 3 dB too quiet, or missing the A-weighting at 110 or 3000 Hz, fails),
    and its frequency is f0 within 2 cents."""
    n_frames = 86
    audio = sine_baseline(np.full(n_frames, f0_hz, np.float32),
                             np.full(n_frames, loudness_db, np.float32))
    assert audio.shape == (n_frames * HOP,) and audio.dtype == np.float32
    measured = middle(compute_loudness(audio))
    print(f"{f0_hz} Hz at {loudness_db} dB: loudness {measured.min():.2f} .. "
          f"{measured.max():.2f} dB")
    assert np.all(np.abs(measured - loudness_db) < 0.5)
    assert abs(cents(peak_frequency(audio, SR), f0_hz)) < 2


def test_sine_baseline_follows_loudness_steps_and_is_silent_at_the_floor():
    """Loudness held at -35, then -15, then the floor (-80) for 0.5 s each: the sine reads
    -35 and -15 dB in the middle of each hold and is exactly silent at the floor."""
    hold = 43
    loudness = np.repeat(np.float32([-35.0, -15.0, LOUDNESS_FLOOR_DB]), hold)
    audio = sine_baseline(np.full(3 * hold, 440.0, np.float32), loudness)
    measured = compute_loudness(audio)
    for i, level in enumerate((-35.0, -15.0)):
        np.testing.assert_allclose(measured[i * hold + 12: (i + 1) * hold - 12], level, atol=0.5)
    assert np.all(audio[(2 * hold + 1) * HOP:] == 0)


# ----------------------------------------------------------------------------- metrics
@pytest.fixture(scope="module")
def target():
    """A 1 s three-partial tone at 330 Hz, and its features as the notebooks compute them."""
    audio = tone(330.0, 1.0)
    f0, voiced = estimate_f0(audio)
    return {"audio": audio, "f0": f0, "voiced": voiced, "loudness": compute_loudness(audio)}


def metrics(output, target):
    return resynthesis_metrics(output, target)


def numpy_spectral_distance(pred, target):
    """The multi-scale spectral distance written out in numpy: per FFT size n, zero-padded
    centred frames hop n / 4, periodic Hann; mean |M_p - M_t| + mean |log M_p - log M_t|
    (magnitudes floored at 1e-5 inside the log), averaged over sizes."""
    total = 0.0
    for n_fft in FFT_SIZES:
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)

        def magnitude(x):
            padded = np.pad(x.astype(np.float64), n_fft // 2)
            starts = range(0, len(x) + 1, n_fft // 4)
            frames = np.stack([padded[s: s + n_fft] * window for s in starts])
            return np.abs(np.fft.rfft(frames, axis=1))

        mp, mt = magnitude(pred), magnitude(target)
        total += (np.mean(np.abs(mp - mt)) + np.mean(np.abs(np.log(np.maximum(mp, 1e-5))
                                                             - np.log(np.maximum(mt, 1e-5)))))
    return total / len(FFT_SIZES)


def test_metrics_of_the_target_itself_are_zero(target):
    result = metrics(target["audio"].copy(), target)
    assert result == {"spectral_distance": 0.0, "f0_error_cents": 0.0,
                      "voiced_frames_matched": 1.0, "loudness_l1_db": 0.0}


def test_metrics_of_a_signal_6_db_louder_or_quieter(target):
    """Twice the amplitude (+6.02 dB) in the first half, half (-6.02 dB) in the second:
    loudness L1 is 6.02 dB (the signed errors cancel; their sizes do not); the pitch is the
    same; the spectral distance is the multi-scale loss of the two signals."""
    audio, n = target["audio"], len(target["audio"])
    gain = np.where(np.arange(n) < n // 2, 2.0, 0.5).astype(np.float32)
    result = metrics(audio * gain, target)
    print(result)
    # the loudness window (2048) blurs the step over ~2 frames: 0.3 dB of slack
    assert result["loudness_l1_db"] == pytest.approx(20 * np.log10(2), abs=0.3)
    assert result["f0_error_cents"] < 1 and result["voiced_frames_matched"] > 0.9
    louder = metrics(audio * 2, target)
    assert louder["loudness_l1_db"] == pytest.approx(20 * np.log10(2), abs=0.02)
    assert louder["spectral_distance"] == pytest.approx(numpy_spectral_distance(audio * 2, audio),
                                                        rel=1e-3)
    assert louder["spectral_distance"] > np.log(2)  # the log term alone: log 2 on every bin


def test_metrics_of_a_signal_50_cents_sharp_then_flat(target):
    """The same tone 50 cents sharp for half a second, then 50 cents flat: f0 error 50 cents
    (mean |cents|; the signed errors would cancel), loudness unchanged."""
    n = len(target["audio"])
    detune = np.where(np.arange(n) < n // 2, 50.0, -50.0)
    result = metrics(tone(330.0 * 2 ** (detune / 1200), 1.0), target)
    print(result)
    assert result["f0_error_cents"] == pytest.approx(50.0, abs=5.0)
    assert result["voiced_frames_matched"] > 0.8
    assert result["loudness_l1_db"] < 0.5
    assert metrics(tone(330.0 * 2 ** (25 / 1200), 1.0), target)["f0_error_cents"] == \
        pytest.approx(25.0, abs=5.0)


def test_metrics_of_silence(target):
    result = metrics(np.zeros_like(target["audio"]), target)
    assert np.isnan(result["f0_error_cents"]) and result["voiced_frames_matched"] == 0.0
    expected_l1 = np.mean(target["loudness"] - LOUDNESS_FLOOR_DB)
    assert result["loudness_l1_db"] == pytest.approx(expected_l1, rel=1e-5)


# ----------------------------------------------------------------------------- run records
def test_epoch_seconds_spreads_each_window_evenly():
    """Syncs after epochs 2, 5 and 6 at 4, 10 and 13 s: epochs 1-2 took 2 s each, 3-5 2 s each,
    6 took 3 s."""
    history = {"timed_epochs": [2, 5, 6], "elapsed_seconds": [4.0, 10.0, 13.0]}
    assert epoch_seconds(history) == [2.0, 2.0, 2.0, 2.0, 2.0, 3.0]
    assert epoch_seconds({"timed_epochs": [], "elapsed_seconds": []}) == []


def fake_run(n_files, n_epochs, seconds_per_epoch, final_spectral, sine_cents=12.0):
    """(batch, history, metrics) of a run over n_files files, each epoch taking
    seconds_per_epoch, synchronised every epoch; the spectral loss falls linearly to
    final_spectral over its last 10 epochs."""
    batch = {"file_paths": [f"scale_tones/{i + 1:02d}.wav" for i in range(n_files)],
             "errors": {"bad.wav": "silent"}, "sources": []}
    spectral = [final_spectral + 0.1 * (n_epochs - 1 - e) for e in range(n_epochs)]
    history = {"loss": [s + 0.01 for s in spectral],
               "terms": {"spectral": spectral, "time_l1": [0.01] * n_epochs},
               "timed_epochs": list(range(1, n_epochs + 1)),
               "elapsed_seconds": [seconds_per_epoch * (e + 1) for e in range(n_epochs)],
               "skipped_steps": 1, "status": "finished"}
    metrics = {f"{i + 1:02d}": {
        "model": {"spectral_distance": 1.0 + i, "f0_error_cents": 2.0 if i else float("nan"),
                  "voiced_frames_matched": 1.0, "loudness_l1_db": 0.5},
        "sine": {"spectral_distance": 4.0, "f0_error_cents": sine_cents,
                 "voiced_frames_matched": 1.0, "loudness_l1_db": 1.5}} for i in range(n_files)}
    return batch, history, metrics


@pytest.fixture
def records():
    """The original notebook: 1 file, 20 epochs of 3 s (60 s in all, 3 s per file per epoch).
    The optimized one: 12 files, 10 epochs of 9 s (90 s; 0.75 s per file per epoch): 4x faster
    per file per epoch although it took longer in total and ran half the epochs."""
    model = DDSPModel(hidden_size=16)
    runs = {}
    for label, (n_files, n_epochs, seconds) in {"original": (1, 20, 3.0),
                                                "optimized": (12, 10, 9.0)}.items():
        batch, history, metrics = fake_run(n_files, n_epochs, seconds,
                                           final_spectral=1.0 + n_files / 100)
        runs[label] = make_run_record(f"ddsp_{label}", model, batch, history,
                                         {"n_epochs": n_epochs}, metrics,
                                         [f"outputs/ddsp_{label}/resynth_01.wav"],
                                         feature_seconds=1.5, root=".", device="cpu")
    return runs


def test_make_run_record_holds_the_run(records):
    original, optimized = records["original"], records["optimized"]
    assert original["n_files"] == 1 and optimized["n_files"] == 12
    assert optimized["files"] == [f"scale_tones/{i:02d}.wav" for i in range(1, 13)]
    assert optimized["rejected_files"] == {"bad.wav": "silent"}
    assert original["n_epochs"] == 20 and optimized["n_epochs"] == 10
    assert original["total_training_seconds"] == pytest.approx(60.0)
    assert optimized["total_training_seconds"] == pytest.approx(90.0)
    assert original["seconds_per_file"] == pytest.approx(60.0)
    assert optimized["seconds_per_file"] == pytest.approx(7.5)
    assert optimized["epoch_seconds"] == pytest.approx([9.0] * 10)
    assert optimized["steady_step_seconds"] == pytest.approx(9.0)
    assert optimized["warmup_seconds"] == pytest.approx(0.0)
    assert optimized["wavs"] == ["outputs/ddsp_optimized/resynth_01.wav"]  # relative to root
    assert optimized["rejected_files"] == {"bad.wav": "silent"}
    # the last 10 spectral losses of the optimized run: 1.12 + 0.9 .. 1.12 + 0.0, mean 1.57
    assert optimized["final_loss_terms"]["spectral"] == pytest.approx(1.12 + 0.45)
    assert optimized["final_loss_terms"]["time_l1"] == pytest.approx(0.01)
    assert optimized["loss_term_curves"]["time_l1"] == [0.01] * 10
    assert optimized["final_loss"] == pytest.approx(1.12 + 0.01)
    assert optimized["skipped_steps"] == 1 and optimized["training_status"] == "finished"
    assert optimized["config"]["model"]["hidden_size"] == 16
    assert optimized["device_type"] == "cpu"
    assert json.loads(json.dumps(optimized, default=str))["n_files"] == 12  # JSON-ready


def test_comparison_rows_speedup_per_file_and_content(records):
    rows = comparison_rows(records)
    assert [r["run"] for r in rows] == ["original", "optimized"]
    original, optimized = rows
    # steady time per file per epoch: 3 s / 1 file = 3 s; 9 s / 12 files = 0.75 s
    assert original["speedup per example"] == pytest.approx(1.0)
    assert optimized["speedup per example"] == pytest.approx(3.0 / 0.75)
    assert original["ms per example per step"] == pytest.approx(3000.0)
    assert optimized["ms per example per step"] == pytest.approx(750.0)
    assert optimized["steady ms per step"] == pytest.approx(9000.0)
    assert optimized["warm-up s"] == pytest.approx(0.0)
    assert (original["files"], optimized["files"]) == (1, 12)
    assert (original["epochs"], optimized["epochs"]) == (20, 10)
    assert optimized["training s"] == pytest.approx(90.0)
    assert original["final spectral loss"] == pytest.approx(1.01 + 0.45)
    assert optimized["final spectral loss"] == pytest.approx(1.12 + 0.45)
    assert optimized["final time_l1 loss"] == pytest.approx(0.01)
    # metrics over the files both runs learned: only 01 (model spectral distance 1.0, f0 error
    # NaN), not the mean over the optimized run's 12 files
    assert optimized["spectral distance (sine)"] == "1.000 (4.000)"
    assert optimized["f0 error cents (sine)"] == "nan (12.0)"
    assert original["f0 error cents (sine)"] == "nan (12.0)"
    assert optimized["loudness L1 dB (sine)"] == "0.50 (1.50)"


def test_comparison_markdown_table(records):
    lines = comparison_markdown(records).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:6] == ["run", "recorded", "device", "files", "examples per step", "epochs"]
    assert "speedup per example" in header
    assert lines[1] == "|" + "---|" * len(header)
    assert len(lines) == 7 and lines[4] == ""
    assert lines[5] == "Metrics over the file both runs learned: 01."
    cells = {row[0]: dict(zip(header, row)) for row in
             ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert cells["optimized"]["speedup per example"] == "4.00x"
    assert cells["original"]["speedup per example"] == "1.00x"
    assert cells["optimized"]["files"] == "12" and cells["original"]["files"] == "1"
    assert cells["optimized"]["ms per example per step"] == "750"
    assert cells["optimized"]["training s"] == "90.0"
    assert cells["optimized"]["final spectral loss"] == "1.57"


def test_save_and_load_run_record_round_trip(records, tmp_path):
    path = save_run_record(tmp_path / "runs" / "ddsp_optimized.json", records["optimized"])
    loaded = load_run_record(path)
    assert loaded["seconds_per_file"] == records["optimized"]["seconds_per_file"]
    assert loaded["metrics"]["02"]["model"]["spectral_distance"] == 2.0
    assert load_run_record(tmp_path / "missing.json") is None


def test_a_record_written_before_named_loss_terms_loads_and_compares(records, tmp_path):
    """Run records from before issue 10 hold spectral_loss_curve and final_spectral_loss: they
    load as the spectral term, and a term they lack shows as '-' in the comparison."""
    old = dict(records["original"])
    old["spectral_loss_curve"] = old.pop("loss_term_curves")["spectral"]
    old["final_spectral_loss"] = old.pop("final_loss_terms")["spectral"]
    path = save_run_record(tmp_path / "ddsp_original.json", old)
    loaded = load_run_record(path)
    assert loaded["loss_term_curves"] == {"spectral": old["spectral_loss_curve"]}
    assert loaded["final_loss_terms"] == {"spectral": pytest.approx(1.01 + 0.45)}
    rows = comparison_rows({"original": loaded, "optimized": records["optimized"]})
    assert rows[0]["final spectral loss"] == pytest.approx(1.01 + 0.45)
    assert rows[0]["final time_l1 loss"] is None
    table = comparison_markdown({"original": loaded, "optimized": records["optimized"]})
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    original = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    assert original[header.index(r"final time\_l1 loss")] == "-"  # Markdown-escaped


def test_steady_pace_leaves_out_the_first_window_and_warmup_adds_capture():
    """Synced every 5 epochs: the first window (compile) took 20 s, later ones 1 s per epoch.
    Steady 1 s per epoch; warm-up = 20 - 5 x 1 = 15 s, plus 4 s of capture."""
    history = {"timed_epochs": [5, 10, 15, 20], "elapsed_seconds": [20.0, 25.0, 30.0, 35.0],
               "capture_seconds": 4.0}
    assert steady_and_warmup(history) == pytest.approx((1.0, 19.0))
    # one window only: its mean is the pace and no warm-up can be told apart
    assert steady_and_warmup({"timed_epochs": [4], "elapsed_seconds": [8.0]}) == (2.0, 0.0)
    assert steady_and_warmup({"timed_epochs": [], "elapsed_seconds": []}) == (0.0, 0.0)


def test_speedup_uses_the_steady_pace_not_the_total(records):
    """A 60 s compile in the optimized run's first window leaves its steady pace, and so the
    speedup, unchanged; the 60 s show as warm-up."""
    slow_start = dict(records["optimized"])
    slow_start["warmup_seconds"] = 60.0
    slow_start["total_training_seconds"] += 60.0
    rows = comparison_rows({"original": records["original"], "optimized": slow_start})
    assert rows[1]["speedup per example"] == pytest.approx(4.0)
    assert rows[1]["warm-up s"] == 60.0


@pytest.mark.parametrize("value, text", [
    (1527.4, "1527"), (12.345, "12.3"), (4.5678, "4.57"), (0.0123456, "0.0123"), (0.5, "0.5"),
    (0.0, "0.00"), (3, "3"), (None, "-"), (float("nan"), "nan"), ("cpu", "cpu")])
def test_numbers_are_formatted_for_people(value, text):
    assert format_number(value) == text
