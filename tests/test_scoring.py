"""grown_timbres/scoring.py: the sine baseline's level and pitch, resynthesis_metrics on inputs
whose answers are known (same signal, +-6 dB, +-50 cents), and evaluate_batch as the one scorer
of a resynthesis against its files: the benchmark's parity distance, measure_room's and the
migration cell's ask it for fewer files and measures and get the very numbers the full report
gives."""
import numpy as np
import pytest
import torch

from grown_timbres.config import FFT_SIZES, HOP_LENGTH, LOUDNESS_FLOOR_DB, SAMPLE_RATE
from grown_timbres.features import compute_loudness, estimate_f0
from grown_timbres.loss import MultiScaleSpectralLoss
from grown_timbres.model import DDSPModel
from grown_timbres.scoring import (MEASURES, evaluate_batch, mean_metric, resynthesis_metrics,
                                   resynthesize, sine_baseline)
from conftest import batch_of_rows, cents, peak_frequency, small_inputs

SR, HOP = SAMPLE_RATE, HOP_LENGTH

N_FRAMES = 40


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


# ----------------------------------------------------------------------------- evaluate_batch

@pytest.fixture(scope="module")
def scored():
    """A tiny model, a batch of three rows of different lengths (their targets: a seeded noise,
    quiet), and the full report's metrics of it."""
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=16)
    f0, loudness, mfcc = small_inputs(batch=3, n_frames=N_FRAMES)
    audio = 0.1 * torch.rand(3, N_FRAMES * HOP_LENGTH, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([N_FRAMES, 30, 25])
    batch = batch_of_rows({"f0": f0, "loudness": loudness, "mfcc": mfcc, "audio": audio,
                           "lengths": lengths}, paths=["a.wav", "b.wav", "c.wav"])
    metrics, outputs = evaluate_batch(model, batch, progress=False)
    return model, batch, metrics, outputs


def test_the_full_report_scores_every_file_beside_the_sine(scored):
    _, batch, metrics, outputs = scored
    assert list(metrics) == ["a", "b", "c"]
    assert all(list(m["model"]) == list(MEASURES) == list(m["sine"]) for m in metrics.values())
    assert [len(o) for o in outputs] == [n * HOP_LENGTH for n in batch["lengths"].tolist()]


def test_fewer_rows_and_measures_give_the_same_numbers(scored):
    """The benchmark's call: rows, spectral distance only, no sine."""
    model, batch, metrics, _ = scored
    some, outputs = evaluate_batch(model, batch, progress=False, rows=[2, 0],
                                   measures=["spectral_distance"], sine=False)
    assert list(some) == ["c", "a"] and [len(o) for o in outputs] == [25 * HOP_LENGTH,
                                                                        N_FRAMES * HOP_LENGTH]
    for stem, by_kind in some.items():
        assert by_kind == {"model": {"spectral_distance":
                                     metrics[stem]["model"]["spectral_distance"]}}


def test_the_spectral_distance_is_the_plain_loss_of_output_and_file(scored):
    model, batch, metrics, _ = scored
    for i, output in enumerate(resynthesize(model, batch)):
        n = int(batch["lengths"][i]) * HOP_LENGTH
        expected = MultiScaleSpectralLoss()(torch.from_numpy(output)[None],
                                            batch["audio"][i: i + 1, :n])
        got = metrics["abc"[i]]["model"]["spectral_distance"]
        assert got == pytest.approx(float(expected), rel=1e-6)


def test_an_unknown_measure_is_refused_naming_the_known_ones():
    target = {"audio": np.zeros(4096, np.float32)}
    with pytest.raises(ValueError, match="unknown measures \\['loudness'\\]: choose from "
                                         "spectral_distance"):
        resynthesis_metrics(np.zeros(4096, np.float32), target, measures=["loudness"])


def test_mean_metric_leaves_out_nan_and_is_nan_without_any_value():
    metrics = {"a": {"model": {"f0_error_cents": 2.0}}, "b": {"model": {"f0_error_cents": 4.0}},
               "c": {"model": {"f0_error_cents": float("nan")}}}
    assert mean_metric(metrics, "f0_error_cents") == pytest.approx(3.0)
    assert np.isnan(mean_metric({"c": metrics["c"]}, "f0_error_cents"))
