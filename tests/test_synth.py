"""Harmonic synthesizer (spectral peaks, aliasing, long-term phase) and filtered noise."""
import math

import numpy as np
import pytest
import torch

import ddsp_helpers as dh
from conftest import spectrum_db

SR, HOP = dh.SAMPLE_RATE, dh.HOP_LENGTH


def constant_f0(f0_hz, seconds, batch=1):
    n_frames = math.ceil(seconds * SR / HOP)
    return torch.full((batch, n_frames, 1), float(f0_hz))


def one_hot_amplitudes(n_frames, n_harmonics, amplitudes: dict):
    amps = torch.zeros(1, n_frames, n_harmonics)
    for k, a in amplitudes.items():
        amps[..., k - 1] = a
    return amps


# ----------------------------------------------------------------------------- phase
def test_cumulative_phase_is_float32_in_unit_interval_and_exact():
    n = 4 * SR
    f0 = torch.full((1, n, 1), 440.0)
    phase = dh.cumulative_phase(f0)
    assert phase.dtype == torch.float32 and phase.shape == (1, n, 1)
    assert float(phase.min()) >= 0.0 and float(phase.max()) <= 1.0  # [0, 1): see next test
    exact = np.mod(440.0 * (np.arange(n) + 1) / SR, 1.0)  # cumsum: sample 0 already holds f0/sr
    error = np.abs(phase[0, :, 0].double().numpy() - exact)
    error = np.minimum(error, 1.0 - error)  # circular distance in cycles
    assert error.max() < 1e-6, error.max()


def test_cumulative_phase_strictly_below_one():
    phase = dh.cumulative_phase(torch.full((1, 4 * SR, 1), 440.0))
    assert float(phase.max()) < 1.0


def test_cumulative_phase_varying_f0_matches_float64_sum():
    rng = np.random.default_rng(0)
    f0 = rng.uniform(100, 2000, size=(2, 50_000, 1))
    phase = dh.cumulative_phase(torch.from_numpy(f0).float())
    exact = np.mod(np.cumsum(f0.astype(np.float32).astype(np.float64) / SR, axis=1), 1.0)
    error = np.abs(phase.double().numpy() - exact)
    assert np.minimum(error, 1 - error).max() < 1e-6


def block_phase_errors(x, k_f0, block=2048):
    """Least-squares fit per block of x ~ a sin(theta) + b cos(theta), theta the analytic phase
    2 pi k f0 (n + 1) / sr: returns block centres (s) and phase errors atan2(b, a) (rad)."""
    n = np.arange(len(x), dtype=np.float64)
    theta = 2 * np.pi * np.mod(k_f0 * (n + 1) / SR, 1.0)
    centres, errors = [], []
    for start in range(0, len(x) - block + 1, block):
        sl = slice(start, start + block)
        basis = np.stack([np.sin(theta[sl]), np.cos(theta[sl])], axis=1)
        (a, b), *_ = np.linalg.lstsq(basis, x[sl].astype(np.float64), rcond=None)
        centres.append((start + block / 2) / SR)
        errors.append(math.atan2(b, a))
    return np.array(centres), np.unwrap(np.array(errors))


def frequency_and_phase(x, k_f0, t0, t1):
    """(frequency in Hz from the slope of the phase error, max |phase error| rad) in [t0, t1)."""
    centres, errors = block_phase_errors(x, k_f0)
    inside = (centres >= t0) & (centres < t1)
    slope = np.polyfit(centres[inside], errors[inside], 1)[0]
    return k_f0 + slope / (2 * np.pi), float(np.max(np.abs(errors[inside])))


@pytest.mark.parametrize("k", [1, 20])
def test_long_tone_keeps_frequency_and_phase(k):
    f0_hz, seconds = 440.0, 4.0
    f0 = constant_f0(f0_hz, seconds)
    audio = dh.harmonic_synth(f0, one_hot_amplitudes(f0.shape[1], 20, {k: 0.5}))[0].numpy()
    assert audio.dtype == np.float32 and len(audio) == f0.shape[1] * HOP
    first_f, first_phase = frequency_and_phase(audio, k * f0_hz, 0.0, 1.0)
    last_f, last_phase = frequency_and_phase(audio, k * f0_hz, seconds - 1.0, seconds)
    drift = abs(last_f - first_f) / first_f
    print(f"harmonic {k} ({k * f0_hz:.0f} Hz): first second {first_f:.6f} Hz, last second "
          f"{last_f:.6f} Hz, relative drift {drift:.2e}; max phase error vs analytic: first "
          f"{first_phase:.2e} rad, last {last_phase:.2e} rad")
    assert drift < 1e-4
    assert abs(first_f - k * f0_hz) / (k * f0_hz) < 1e-5
    assert last_phase < 0.01 and first_phase < 0.01


def test_phase_check_detects_float32_accumulation():
    """The criterion above is sharp enough: a float32 running sum (the seed's way) fails it."""
    f0_hz, k, n = 440.0, 20, math.ceil(4.0 * SR / HOP) * HOP
    naive_phase = np.cumsum(np.full(n, 2 * np.pi * f0_hz / SR, dtype=np.float32), dtype=np.float32)
    audio = 0.5 * np.sin(k * naive_phase.astype(np.float64))
    _, last_phase = frequency_and_phase(audio, k * f0_hz, 3.0, 4.0)
    print(f"float32 cumsum, harmonic {k}: phase error in the last second {last_phase:.3f} rad")
    assert last_phase > 0.01


# ----------------------------------------------------------------------------- spectrum
def test_harmonic_peaks_at_multiples_of_f0():
    f0 = constant_f0(440.0, 2.0)
    levels = {1: 0.4, 2: 0.2, 3: 0.1, 5: 0.05}
    audio = dh.harmonic_synth(f0, one_hot_amplitudes(f0.shape[1], 8, levels))[0].numpy()
    assert audio.shape == (f0.shape[1] * HOP,) and np.all(np.isfinite(audio))
    freqs, db = spectrum_db(audio, n_fft=4 * len(audio))  # zero-padded: no scalloping
    bin_hz = dh.SAMPLE_RATE / len(audio)
    for k, amplitude in levels.items():
        near = np.abs(freqs - k * 440.0) < 20
        peak = freqs[near][np.argmax(db[near])]
        assert abs(peak - k * 440.0) <= bin_hz, (k, peak)
        expected_db = 20 * np.log10(amplitude / levels[1])
        assert db[near].max() == pytest.approx(expected_db, abs=0.2), k
    far = np.ones_like(freqs, bool)
    for k in levels:
        far &= np.abs(freqs - k * 440.0) > 10 * bin_hz
    assert db[far].max() < -90, db[far].max()  # harmonic 4 (amplitude 0) and the rest: silent


def test_no_aliasing_above_nyquist():
    f0_hz = 3000.0  # harmonics 1..3 below 11025 Hz; 4..64 above and must not fold back
    f0 = constant_f0(f0_hz, 2.0)
    amps = torch.full((1, f0.shape[1], 64), 1.0 / 64)
    audio = dh.harmonic_synth(f0, amps)[0].numpy()
    freqs, db = spectrum_db(audio, n_fft=4 * len(audio))
    harmonic_bins = np.zeros_like(freqs, bool)
    for k in (1, 2, 3):
        near = np.abs(freqs - k * f0_hz) < 5
        harmonic_bins |= near
        assert db[near].max() == pytest.approx(0.0, abs=0.2), k  # all three equally loud
    worst = db[~harmonic_bins].max()
    print(f"f0 3000 Hz, 64 harmonics: strongest non-harmonic component {worst:.1f} dB")
    assert worst < -60


def test_harmonics_above_nyquist_are_silent():
    f0 = constant_f0(12000.0, 0.5)
    audio = dh.harmonic_synth(f0, torch.ones(1, f0.shape[1], 4))
    assert torch.all(audio == 0)


def test_harmonic_synth_batch_shapes_and_amplitude_interpolation():
    f0 = torch.tensor([[[220.0]] * 10, [[330.0]] * 10])  # [2, 10, 1]
    amps = torch.zeros(2, 10, 3)
    amps[:, 5:, 0] = 1.0  # step in amplitude: interpolated linearly over one frame
    audio = dh.harmonic_synth(f0, amps)
    assert audio.shape == (2, 10 * HOP) and audio.dtype == torch.float32
    assert torch.all(audio[:, : 4 * HOP] == 0)
    envelope = audio[0, 4 * HOP: 5 * HOP].abs()
    ramp = torch.arange(HOP) / HOP
    assert torch.all(envelope <= ramp + 1e-6)


def test_normalize_harmonic_distribution():
    rng = torch.Generator().manual_seed(0)
    dist = torch.rand(2, 6, 64, generator=rng) + 0.01
    f0 = torch.tensor([100.0, 440.0, 2756.25, 3000.0, 5000.0, 11000.0]).reshape(1, 6, 1)
    f0 = f0.expand(2, 6, 1)
    out = dh.normalize_harmonic_distribution(dist, f0)
    assert out.shape == dist.shape
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 6), rtol=1e-6, atol=1e-6)
    k = torch.arange(1, 65)
    above = k[None, None] * f0 >= SR / 2  # 2756.25 * 4 == 11025 exactly: zeroed
    assert torch.all(out[above.expand_as(out)] == 0)
    assert torch.all(out[~above.expand_as(out)] > 0)
    assert above[0, 2].tolist().index(True) == 3
    # ratios between surviving harmonics are kept
    torch.testing.assert_close(out[0, 0, 1] / out[0, 0, 0], dist[0, 0, 1] / dist[0, 0, 0])


def test_upsample_frames_hits_frames_and_holds_last():
    x = torch.tensor([[[0.0], [1.0], [3.0]]])
    up = dh.upsample_frames(x, hop_length=4)
    assert up.shape == (1, 12, 1)
    assert up[0, :, 0].tolist() == [0, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3, 3, 3]


def test_exp_sigmoid_range():
    y = dh.exp_sigmoid(torch.tensor([-100.0, 0.0, 100.0]))
    assert y[0] == pytest.approx(1e-7, rel=1e-3) and y[2] == pytest.approx(2.0, rel=1e-6)
    assert y[1] == pytest.approx(2 * 0.5 ** math.log(10) + 1e-7)


# ----------------------------------------------------------------------------- noise
def test_filtered_noise_shape_and_finite():
    mags = torch.rand(3, 40, dh.N_NOISE_BANDS)
    out = dh.filtered_noise(mags)
    assert out.shape == (3, 40 * HOP) and out.dtype == torch.float32
    assert torch.all(torch.isfinite(out))
    assert dh.noise_impulse_responses(mags).shape == (3, 40, 2 * (dh.N_NOISE_BANDS - 1))


def test_filtered_noise_is_reproducible_and_silent_for_zero_magnitudes():
    mags = torch.rand(1, 20, dh.N_NOISE_BANDS)
    a = dh.filtered_noise(mags, generator=torch.Generator().manual_seed(3))
    b = dh.filtered_noise(mags, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.all(dh.filtered_noise(torch.zeros(1, 20, dh.N_NOISE_BANDS)) == 0)


def test_filtered_noise_low_pass():
    import scipy.signal

    n_frames = 430  # 5 s
    mags = torch.zeros(1, n_frames, dh.N_NOISE_BANDS)
    mags[..., :10] = 1.0  # bands are SR / 2 / 64 = 172 Hz apart: pass up to ~1.55 kHz
    audio = dh.filtered_noise(mags, generator=torch.Generator().manual_seed(0))[0].numpy()
    assert audio.shape == (n_frames * HOP,) and np.all(np.isfinite(audio))
    freqs, psd = scipy.signal.welch(audio, fs=SR, nperseg=2048)
    passband = psd[(freqs > 50) & (freqs < 1300)].mean()
    stop_mean = 10 * np.log10(psd[freqs > 2000].mean() / passband)
    stop_max = 10 * np.log10(psd[freqs > 2000].max() / passband)
    print(f"low-pass noise: above 2 kHz mean {stop_mean:.1f} dB, max {stop_max:.1f} dB "
          f"re. passband")
    assert stop_max < -30


def test_precomputed_harmonic_waves_give_the_same_audio_and_step():
    torch.manual_seed(0)
    model = dh.DDSPModel(hidden_size=32)
    frames = 20
    f0 = torch.linspace(200, 900, frames).reshape(1, frames, 1).repeat(2, 1, 1)
    amplitudes = torch.rand(2, frames, model.n_harmonics)
    waves = dh.harmonic_waves(f0, model.n_harmonics)
    assert waves.shape == (2, frames, dh.HOP_LENGTH, model.n_harmonics)
    torch.testing.assert_close(dh.harmonic_synth(f0, amplitudes, waves=waves),
                               dh.harmonic_synth(f0, amplitudes), rtol=0, atol=0)
    batch = {"f0": f0, "loudness": torch.full((2, frames, 1), -20.0),
             "mfcc": torch.randn(2, frames, dh.N_MFCC),
             "audio": torch.randn(2, frames * dh.HOP_LENGTH) * 0.1,
             "lengths": torch.tensor([frames, frames - 3])}
    losses = []
    for with_waves in (False, True):
        torch.manual_seed(0)
        model = dh.DDSPModel(hidden_size=32)
        step_batch = dh.with_harmonic_waves(batch, model) if with_waves else batch
        optimizer, loss = dh.make_optimizer(model), dh.MultiScaleSpectralLoss()
        losses.append(torch.stack([dh.training_step(model, optimizer, step_batch, loss)[0]
                                   for _ in range(2)]))
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
