"""grown_timbres/synth.py: float64 phase, harmonic peaks and aliasing, long-term phase,
interpolation of controls, filtered noise, the learned room."""
import math

import numpy as np
import pytest
import torch

from grown_timbres.config import HOP_LENGTH, SAMPLE_RATE
from grown_timbres.model_config import N_NOISE_BANDS, ModelConfig
from grown_timbres.room_part import RoomPart
from grown_timbres.synth import (apply_room, cumulative_phase, exp_sigmoid, filtered_noise,
                                 harmonic_synth, harmonic_waves, noise_impulse_responses,
                                 normalize_harmonic_distribution, overlap_add, upsample_frames)
from conftest import spectrum_db


SR, HOP = SAMPLE_RATE, HOP_LENGTH


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
    phase = cumulative_phase(f0)
    assert phase.dtype == torch.float32 and phase.shape == (1, n, 1)
    assert float(phase.min()) >= 0.0 and float(phase.max()) <= 1.0  # [0, 1): see next test
    exact = np.mod(440.0 * (np.arange(n) + 1) / SR, 1.0)  # cumsum: sample 0 already holds f0/sr
    error = np.abs(phase[0, :, 0].double().numpy() - exact)
    error = np.minimum(error, 1.0 - error)  # circular distance in cycles
    assert error.max() < 1e-6, error.max()


def test_cumulative_phase_strictly_below_one():
    phase = cumulative_phase(torch.full((1, 4 * SR, 1), 440.0))
    assert float(phase.max()) < 1.0


def test_cumulative_phase_varying_f0_matches_float64_sum():
    rng = np.random.default_rng(0)
    f0 = rng.uniform(100, 2000, size=(2, 50_000, 1))
    phase = cumulative_phase(torch.from_numpy(f0).float())
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


def sample_phase_errors(x, amplitude, k_f0):
    """Phase error of every sample of x ~ amplitude sin(theta + e) against the analytic phase
    theta = 2 pi k f0 (n + 1) / sr (computed in float64): e ~ (x / amplitude - sin theta) /
    cos theta, in rad, where |cos theta| > 0.5 (elsewhere the estimate is ill-conditioned).
    Returns (sample indices, errors)."""
    n = np.arange(len(x), dtype=np.float64)
    theta = 2 * np.pi * np.mod(k_f0 * (n + 1) / SR, 1.0)
    usable = np.abs(np.cos(theta)) > 0.5
    errors = (x.astype(np.float64) / amplitude - np.sin(theta)) / np.cos(theta)
    return n[usable], errors[usable]


@pytest.mark.parametrize("k", [1, 20])
def test_long_tone_keeps_frequency_and_phase(k):
    """A 4 s tone at 440 Hz keeps its frequency (to 1e-5) and every sample's phase within
    1e-4 rad of the analytic phase, in the first second and in the last. A phase accumulated in
    float32 is off by up to half a float32 step of the running cycle count (6e-5 cycles past
    1024 cycles): 4e-4 rad at harmonic 1 and 8e-3 rad at harmonic 20 by the fourth second."""
    f0_hz, seconds, amplitude = 440.0, 4.0, 0.5
    f0 = constant_f0(f0_hz, seconds)
    audio = harmonic_synth(f0, one_hot_amplitudes(f0.shape[1], 20, {k: amplitude}))[0].numpy()
    assert audio.dtype == np.float32 and len(audio) == f0.shape[1] * HOP
    first_f, _ = frequency_and_phase(audio, k * f0_hz, 0.0, 1.0)
    last_f, _ = frequency_and_phase(audio, k * f0_hz, seconds - 1.0, seconds)
    drift = abs(last_f - first_f) / first_f
    index, errors = sample_phase_errors(audio, amplitude, k * f0_hz)
    first_phase = np.abs(errors[index < SR]).max()
    last_phase = np.abs(errors[index >= len(audio) - SR]).max()
    print(f"harmonic {k} ({k * f0_hz:.0f} Hz): first second {first_f:.6f} Hz, last second "
          f"{last_f:.6f} Hz, relative drift {drift:.2e}; max sample phase error vs analytic: "
          f"first second {first_phase:.2e} rad, last {last_phase:.2e} rad")
    assert drift < 1e-5
    assert abs(first_f - k * f0_hz) / (k * f0_hz) < 1e-5
    assert first_phase < 1e-4 and last_phase < 1e-4


# ----------------------------------------------------------------------------- spectrum
def test_harmonic_peaks_at_multiples_of_f0():
    f0 = constant_f0(440.0, 2.0)
    levels = {1: 0.4, 2: 0.2, 3: 0.1, 5: 0.05}
    audio = harmonic_synth(f0, one_hot_amplitudes(f0.shape[1], 8, levels))[0].numpy()
    assert audio.shape == (f0.shape[1] * HOP,) and np.all(np.isfinite(audio))
    freqs, db = spectrum_db(audio, n_fft=4 * len(audio))  # zero-padded: no scalloping
    bin_hz = SAMPLE_RATE / len(audio)
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
    audio = harmonic_synth(f0, amps)[0].numpy()
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
    audio = harmonic_synth(f0, torch.ones(1, f0.shape[1], 4))
    assert torch.all(audio == 0)


def analytic_sine(f0_hz, n_samples, start=0):
    """sin(2 pi f0 (n + 1) / sr) for n = start .. start + n_samples - 1, in float64 (the
    synthesizer's phase: the running sum includes sample n's own increment)."""
    n = np.arange(start, start + n_samples, dtype=np.float64)
    return np.sin(2 * np.pi * np.mod(f0_hz * (n + 1) / SR, 1.0))


def test_harmonic_synth_batch_shapes_and_amplitude_interpolation():
    """A step in amplitude from frame 4 (0) to frame 5 (1): frame 4's samples rise linearly
    from 0 towards frame 5's value, sample j at j / hop, exactly (not just bounded by it);
    before, silence; from frame 5 on, the full sine."""
    f0 = torch.tensor([[[220.0]] * 10, [[330.0]] * 10])  # [2, 10, 1]
    amps = torch.zeros(2, 10, 3)
    amps[:, 5:, 0] = 1.0
    audio = harmonic_synth(f0, amps)
    assert audio.shape == (2, 10 * HOP) and audio.dtype == torch.float32
    assert torch.all(audio[:, : 4 * HOP] == 0)
    ramp = np.arange(HOP) / HOP
    for i, f0_hz in enumerate((220.0, 330.0)):
        rising = audio[i, 4 * HOP: 5 * HOP].double().numpy()
        np.testing.assert_allclose(rising, ramp * analytic_sine(f0_hz, HOP, 4 * HOP), atol=2e-6)
        steady = audio[i, 5 * HOP:].double().numpy()
        np.testing.assert_allclose(steady, analytic_sine(f0_hz, 5 * HOP, 5 * HOP), atol=2e-6)


def test_harmonic_amplitudes_interpolate_towards_the_next_frame():
    """Random amplitudes per frame: sample j of frame t has amplitude a[t] + j / hop (a[t+1] -
    a[t]), the last frame held (np.interp between the frames' first samples)."""
    n_frames = 12
    amplitudes = torch.rand(1, n_frames, 2, generator=torch.Generator().manual_seed(4))
    audio = harmonic_synth(torch.full((1, n_frames, 1), 300.0), amplitudes)[0].double().numpy()
    n = np.arange(n_frames * HOP)
    expected = sum(np.interp(n, np.arange(n_frames) * HOP, amplitudes[0, :, k].double().numpy())
                   * analytic_sine((k + 1) * 300.0, len(n)) for k in range(2))
    np.testing.assert_allclose(audio, expected, atol=5e-6)


def test_normalize_harmonic_distribution():
    rng = torch.Generator().manual_seed(0)
    dist = torch.rand(2, 6, 64, generator=rng) + 0.01
    f0 = torch.tensor([100.0, 440.0, 2756.25, 3000.0, 5000.0, 11000.0]).reshape(1, 6, 1)
    f0 = f0.expand(2, 6, 1)
    out = normalize_harmonic_distribution(dist, f0)
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
    up = upsample_frames(x, hop_length=4)
    assert up.shape == (1, 12, 1)
    assert up[0, :, 0].tolist() == [0, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3, 3, 3]


@pytest.mark.parametrize("hop", [5, HOP])
def test_upsample_frames_is_linear_interpolation_between_frame_starts(hop):
    """Frame t sits on sample t * hop; sample t * hop + j lies j / hop of the way to frame t+1
    (np.interp between the frames' samples); after the last frame's sample it is held. Each
    channel and batch item on its own."""
    x = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    up = upsample_frames(x, hop_length=hop)
    assert up.shape == (2, 7 * hop, 3)
    n = np.arange(7 * hop)
    for b in range(2):
        for c in range(3):
            expected = np.interp(n, np.arange(7) * hop, x[b, :, c].numpy())
            np.testing.assert_allclose(up[b, :, c].numpy(), expected, rtol=0, atol=1e-12)


def test_harmonic_waves_follow_an_f0_glide():
    """f0 gliding between frames (300 -> 600 Hz over 20 frames): every harmonic's phase is the
    running sum of the linearly interpolated f0, to 1e-4 rad."""
    n_frames = 20
    f0 = torch.linspace(300.0, 600.0, n_frames).reshape(1, n_frames, 1)
    waves = harmonic_waves(f0, 3).reshape(n_frames * HOP, 3).double().numpy()
    f0_audio = np.interp(np.arange(n_frames * HOP), np.arange(n_frames) * HOP,
                         f0[0, :, 0].double().numpy())
    cycles = np.cumsum(f0_audio / SR)
    for k in (1, 2, 3):
        theta = 2 * np.pi * np.mod(k * cycles, 1.0)
        usable = np.abs(np.cos(theta)) > 0.5
        errors = (waves[:, k - 1] - np.sin(theta))[usable] / np.cos(theta)[usable]
        assert np.abs(errors).max() < 1e-4, (k, np.abs(errors).max())


def test_exp_sigmoid_range():
    y = exp_sigmoid(torch.tensor([-100.0, 0.0, 100.0]))
    assert y[0] == pytest.approx(1e-7, rel=1e-3) and y[2] == pytest.approx(2.0, rel=1e-6)
    assert y[1] == pytest.approx(2 * 0.5 ** math.log(10) + 1e-7)


# ----------------------------------------------------------------------------- noise
def test_filtered_noise_shape_level_and_alignment():
    """Shapes: [B, T, M] -> [B, T * hop], FIRs of 2 (M - 1) taps. Flat magnitudes m make a
    (windowed) unit impulse, delay removed: the output is the uniform noise in [-1, 1) times m,
    RMS m / sqrt(3), sample-aligned with its frame. One loud frame (m 0.5) among silent ones
    sounds only in its own hop: nothing leaks before or after; frames at m 1 and m 0.1 differ
    by 20 dB."""
    mags = torch.rand(3, 40, N_NOISE_BANDS)
    out = filtered_noise(mags)
    assert out.shape == (3, 40 * HOP) and out.dtype == torch.float32
    assert torch.all(torch.isfinite(out))
    assert noise_impulse_responses(mags).shape == (3, 40, 2 * (N_NOISE_BANDS - 1))

    n_frames = 200
    mags = torch.full((1, n_frames, N_NOISE_BANDS), 0.5)
    audio = filtered_noise(mags, generator=torch.Generator().manual_seed(1))[0].double()
    rms = audio.square().mean().sqrt().item()
    print(f"flat m = 0.5: RMS {rms:.4f} (0.5 / sqrt(3) = {0.5 / math.sqrt(3):.4f})")
    assert 20 * math.log10(rms / (0.5 / math.sqrt(3))) == pytest.approx(0.0, abs=0.1)
    assert audio.abs().max().item() <= 0.5 + 1e-6

    single = torch.zeros(1, 30, N_NOISE_BANDS)
    single[0, 10] = 0.5
    burst = filtered_noise(single, generator=torch.Generator().manual_seed(2))[0]
    inside = burst[10 * HOP: 11 * HOP]
    assert inside.abs().max() > 0.4 and inside.square().mean().sqrt() > 0.2
    outside = torch.cat([burst[: 10 * HOP], burst[11 * HOP:]])
    assert outside.abs().max() < 1e-6

    steps = torch.ones(1, n_frames, N_NOISE_BANDS)
    steps[0, n_frames // 2:] = 0.1
    stepped = filtered_noise(steps, generator=torch.Generator().manual_seed(3))[0].double()
    half = n_frames // 2 * HOP
    ratio = stepped[:half].square().mean().sqrt() / stepped[half:].square().mean().sqrt()
    assert 20 * math.log10(ratio.item()) == pytest.approx(20.0, abs=0.3)


@pytest.mark.parametrize("frame_size", [100, 256, 383, 700])
def test_overlap_add_places_frames_a_hop_apart_and_sums_them(frame_size):
    """Against a plain loop over frames, and F.fold (col2im), the way it was done before:
    the same sums and the same gradients, for frames shorter and longer than a hop."""
    frames = torch.randn(3, 7, frame_size, dtype=torch.float64, requires_grad=True)
    hop = 256
    expected = torch.zeros(3, 6 * hop + frame_size, dtype=torch.float64)
    for t in range(7):
        expected[:, t * hop: t * hop + frame_size] += frames[:, t].detach()
    out = overlap_add(frames, hop)
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)
    folded = torch.nn.functional.fold(frames.transpose(1, 2), output_size=(1, out.shape[-1]),
                                      kernel_size=(1, frame_size), stride=(1, hop))
    weights = torch.randn_like(out)
    grad, = torch.autograd.grad((out * weights).sum(), frames)
    grad_folded, = torch.autograd.grad((folded.reshape(3, -1) * weights).sum(), frames)
    assert torch.allclose(grad, grad_folded, rtol=0, atol=1e-12)


def test_filtered_noise_is_reproducible_and_silent_for_zero_magnitudes():
    mags = torch.rand(1, 20, N_NOISE_BANDS)
    a = filtered_noise(mags, generator=torch.Generator().manual_seed(3))
    b = filtered_noise(mags, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.all(filtered_noise(torch.zeros(1, 20, N_NOISE_BANDS)) == 0)


def test_filtered_noise_low_pass():
    import scipy.signal

    n_frames = 430  # 5 s
    mags = torch.zeros(1, n_frames, N_NOISE_BANDS)
    mags[..., :10] = 1.0  # bands are SR / 2 / 64 = 172 Hz apart: pass up to ~1.55 kHz
    audio = filtered_noise(mags, generator=torch.Generator().manual_seed(0))[0].numpy()
    assert audio.shape == (n_frames * HOP,) and np.all(np.isfinite(audio))
    freqs, psd = scipy.signal.welch(audio, fs=SR, nperseg=2048)
    passband = psd[(freqs > 50) & (freqs < 1300)].mean()
    stop_mean = 10 * np.log10(psd[freqs > 2000].mean() / passband)
    stop_max = 10 * np.log10(psd[freqs > 2000].max() / passband)
    print(f"low-pass noise: above 2 kHz mean {stop_mean:.1f} dB, max {stop_max:.1f} dB "
          f"re. passband")
    assert stop_max < -30


def test_the_room_is_numpy_convolution_plus_the_dry_signal():
    """Tap 0 is the dry path, left out of the wet part; a per-sample wet gain scales only
    the wet part; the output keeps the input's length."""
    g = torch.Generator().manual_seed(1)
    audio, taps = torch.randn(2, 3000, generator=g), torch.randn(700, generator=g)
    wet_gain = torch.rand(1, 3000, generator=g)
    wet = np.stack([np.convolve(x, np.r_[0.0, taps.double().numpy()[1:]])[:3000]
                    for x in audio.double().numpy()])
    out = apply_room(audio, taps, wet_gain)
    assert out.dtype == torch.float32 and out.shape == audio.shape
    np.testing.assert_allclose(out.numpy(), audio.numpy() + wet_gain.numpy() * wet, atol=1e-4)
    np.testing.assert_allclose(apply_room(audio, taps).numpy(), audio.numpy() + wet, atol=1e-4)
    assert torch.equal(apply_room(audio, taps, torch.zeros(1, 3000)), audio)
    changed_first_tap = torch.cat([torch.tensor([5.0]), taps[1:]])
    assert torch.equal(apply_room(audio, changed_first_tap), apply_room(audio, taps))


def test_an_untrained_room_is_near_dry_and_decays():
    """The room starts quiet (the wet part 37 dB under the dry) and short: taps decay with
    the initial time constant, so training, not the start, makes a room."""
    torch.manual_seed(0)
    room = RoomPart(ModelConfig(room=True))
    taps = room.impulse_response(room.initial_weights())
    assert taps.shape == (SAMPLE_RATE,)
    assert 10 * math.log10(float(torch.sum(taps[1:] ** 2))) < -30
    envelope = taps.abs().reshape(-1, 441).max(1).values  # 20 ms blocks
    assert envelope[10] < 0.05 * envelope[0]  # 200 ms: 4 time constants
