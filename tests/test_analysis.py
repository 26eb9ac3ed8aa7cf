"""grown_timbres/analysis.py: pYIN f0, A-weighted loudness and MFCCs per frame, on the bundled
tones and on signals with known answers; long signals in chunks, as if computed at once."""
import numpy as np
import pytest

from grown_timbres import analysis as analysis_module
from grown_timbres.analysis import (F0_MAX_HZ, F0_MIN_HZ, MFCC_N_FFT, MFCC_N_MELS,
                                    VOICED_PROB_MIN, a_weighted_power, compute_loudness,
                                    compute_mfcc, estimate_f0)
from grown_timbres.config import HOP_LENGTH, LOUDNESS_FLOOR_DB, N_MFCC, SAMPLE_RATE
from conftest import FIRST_MIDI, cents, midi_to_hz

SR = SAMPLE_RATE


@pytest.mark.parametrize("index", range(12))
def test_f0_of_bundled_tone_within_20_cents(bundled_features, index):
    feats = bundled_features[index]
    voiced = feats["voiced"]
    assert voiced.mean() > 0.8, f"only {voiced.mean():.0%} voiced"
    nominal = midi_to_hz(FIRST_MIDI + index)
    error = cents(np.median(feats["f0"][voiced]), nominal)
    print(f"{feats['path'].split('/')[-1]}: median f0 {np.median(feats['f0'][voiced]):.2f} Hz, "
          f"nominal {nominal:.2f} Hz, error {error:+.2f} cents")
    assert abs(error) < 20


def test_feature_frame_t_is_centred_on_sample_t_times_hop():
    """A 440 Hz tone switched on at sample 100 x HOP after silence: loudness and MFCC frames
    up to ~4 frames (half the 2048-sample window; 2 for the 1024-sample MFCC) before it are at
    silence, frames from 4 after it at the tone's level, and loudness frame 100 (centred on the
    onset) sees half its window filled: 3 dB below the steady level, within 1 dB. pYIN's
    voicing starts within 10 frames of the onset."""
    sr, onset = SAMPLE_RATE, 100 * HOP_LENGTH
    t = np.arange(200 * HOP_LENGTH) / sr
    audio = (0.3 * np.sin(2 * np.pi * 440.0 * t) * (np.arange(len(t)) >= onset)).astype(np.float32)
    loudness = compute_loudness(audio)
    mfcc = compute_mfcc(audio)
    assert loudness.shape == (200,) and mfcc.shape == (200, N_MFCC)
    steady = float(np.median(loudness[120:190]))
    assert np.all(loudness[:95] == LOUDNESS_FLOOR_DB)
    np.testing.assert_allclose(loudness[105:195], steady, atol=0.2)
    assert loudness[100] == pytest.approx(steady - 3.0, abs=1.0)
    # MFCC frames are 1024 samples: 2 frames either side of the onset see some of both
    silent_mfcc, tone_c0 = mfcc[50], np.median(mfcc[120:190, 0])
    np.testing.assert_allclose(mfcc[:97], np.broadcast_to(silent_mfcc, (97, N_MFCC)), atol=1e-3)
    assert tone_c0 > silent_mfcc[0] + 30
    np.testing.assert_allclose(mfcc[103:197, 0], tone_c0, atol=2.0)
    f0, voiced = estimate_f0(audio)
    assert not voiced[:90].any() and voiced[110:190].all()


def test_f0_interpolates_unvoiced_frames():
    """A tone with a silent gap in the middle: f0 has no NaN and the gap holds the pitch."""
    sr = SAMPLE_RATE
    t = np.arange(sr * 2) / sr
    audio = (0.5 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    audio[int(0.8 * sr): int(1.2 * sr)] = 0.0
    audio = audio[: len(audio) // HOP_LENGTH * HOP_LENGTH]
    f0, voiced = estimate_f0(audio)
    assert f0.shape == voiced.shape == (len(audio) // HOP_LENGTH,)
    assert not voiced.all() and voiced.any()
    assert np.all(np.isfinite(f0))
    assert np.all(np.abs([cents(f, 330.0) for f in f0]) < 20)


def test_loudness_follows_gain_exactly(bundled_features):
    audio = bundled_features[0]["audio"] * 0.25  # stays below full scale after +6 dB
    louder = audio * 10 ** (6 / 20)
    assert np.max(np.abs(louder)) < 1.0
    base, raised = compute_loudness(audio), compute_loudness(louder)
    above = (base > LOUDNESS_FLOOR_DB + 10) & (raised > LOUDNESS_FLOOR_DB + 10)
    assert above.sum() > 0.5 * len(base)
    shift = float(np.median(raised[above] - base[above]))
    print(f"+6 dB gain -> loudness +{shift:.3f} dB")
    assert abs(shift - 6.0) < 0.5


def test_loudness_of_full_scale_1khz_sine():
    sr = SAMPLE_RATE
    t = np.arange(sr) / sr
    sine = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    loudness = compute_loudness(sine)
    assert loudness.shape == (sr // HOP_LENGTH,) and loudness.dtype == np.float32
    middle = float(np.median(loudness[10:-10]))
    print(f"full-scale 1 kHz sine: {middle:.3f} dB")
    assert abs(middle - (-3.0)) < 0.5


def test_loudness_is_a_weighted_100hz_reads_19_db_under_1khz():
    """Equal-amplitude sines at 100 Hz and 1 kHz: A-weighting is -19.1 dB at 100 Hz and 0 dB
    at 1 kHz (IEC 61672), so the 100 Hz sine's loudness is 19.1 dB lower, within 0.5 dB."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE

    def middle_loudness(frequency):
        sine = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
        return float(np.median(compute_loudness(sine)[10:-10]))

    low, high = middle_loudness(100.0), middle_loudness(1000.0)
    print(f"0.5-amplitude sines: 100 Hz {low:.2f} dB, 1 kHz {high:.2f} dB")
    assert high - low == pytest.approx(19.1, abs=0.5)


def test_loudness_floor_on_silence():
    assert np.all(compute_loudness(np.zeros(4096, np.float32)) == LOUDNESS_FLOOR_DB)


def reference_mfcc(audio):
    """MFCCs written out: centred zero-padded frames of MFCC_N_FFT with a periodic Hann window
    every HOP_LENGTH samples, power spectrum, MFCC_N_MELS Slaney mel bands (0 Hz to Nyquist),
    10 log10 (floor 1e-10, at most 80 dB below the loudest), orthonormal DCT-II, first N_MFCC."""
    import librosa
    import scipy.fft

    n_fft = MFCC_N_FFT
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(audio.astype(np.float64), n_fft // 2)
    frames = np.stack([padded[s: s + n_fft] * window
                       for s in range(0, len(audio) + 1, HOP_LENGTH)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=MFCC_N_MELS).T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return scipy.fft.dct(db, type=2, norm="ortho", axis=1)[:, : N_MFCC]


def test_mfcc_values():
    """compute_mfcc equals the MFCCs written out (within 1e-3 of coefficients of size ~100);
    +6 dB of gain moves only coefficient 0, by 6.02 x sqrt(MFCC_N_MELS) (the orthonormal DCT of
    a constant dB shift), and leaves the other 19 unchanged."""
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, 40 * HOP_LENGTH).astype(np.float32)
    t = np.arange(len(audio)) / SAMPLE_RATE
    audio += (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mfcc = compute_mfcc(audio)
    assert mfcc.shape == (40, N_MFCC) and mfcc.dtype == np.float32
    reference = reference_mfcc(audio)[:40]
    print(f"max |compute_mfcc - reference| {np.abs(mfcc - reference).max():.2e}, "
          f"coefficients up to {np.abs(reference).max():.0f}")
    np.testing.assert_allclose(mfcc, reference, rtol=0, atol=1e-3 * np.abs(reference).max())
    louder = compute_mfcc(audio * np.float32(2.0))
    shift = 20 * np.log10(2.0) * np.sqrt(MFCC_N_MELS)
    np.testing.assert_allclose(louder[:, 0] - mfcc[:, 0], shift, atol=1e-2)
    np.testing.assert_allclose(louder[:, 1:], mfcc[:, 1:], atol=1e-2)


def unchunked_features(audio):
    """Loudness and MFCCs as they were computed before chunking: each librosa call on all of
    the audio at once (unchunked_f0: f0 likewise)."""
    import librosa

    n = len(audio) // HOP_LENGTH
    spectrum = librosa.stft(audio, n_fft=2048, hop_length=HOP_LENGTH, center=True,
                            pad_mode="constant")
    power = a_weighted_power() @ (np.abs(spectrum) ** 2)
    loudness = np.maximum(10 * np.log10(np.maximum(power, 1e-20)), LOUDNESS_FLOOR_DB)[:n]
    mfcc = librosa.feature.mfcc(y=audio, sr=SR, n_mfcc=N_MFCC, n_fft=MFCC_N_FFT,
                                hop_length=HOP_LENGTH, n_mels=MFCC_N_MELS).T[:n]
    return loudness.astype(np.float32), mfcc.astype(np.float32)


def unchunked_f0(audio):
    import librosa

    n = len(audio) // HOP_LENGTH
    f0, voiced, prob = librosa.pyin(audio, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=SR,
                                    frame_length=2048, hop_length=HOP_LENGTH)
    voiced = (voiced & np.isfinite(f0) & (prob >= VOICED_PROB_MIN))[:n]
    frames = np.arange(n)
    return np.interp(frames, frames[voiced], f0[:n][voiced]).astype(np.float32), voiced


def test_bundled_tones_are_one_chunk_and_their_features_unchanged(bundled_features,
                                                                    monkeypatch):
    """A file no longer than FEATURE_CHUNK_SECONDS is computed as before chunking, bit for bit:
    one call on all of its audio (loudness and MFCC of all 12 tones, f0 of one)."""
    calls = []
    original = analysis_module.in_chunks

    def counted(frame_features, audio, hop_length, chunk_seconds=None):
        calls.append(len(audio))
        return original(lambda segment: calls.append(len(segment)) or frame_features(segment),
                        audio, hop_length, chunk_seconds)

    monkeypatch.setattr(analysis_module, "in_chunks", counted)
    for feats in bundled_features:
        audio = feats["audio"]
        loudness, mfcc = unchunked_features(audio)
        calls.clear()
        np.testing.assert_array_equal(compute_loudness(audio), loudness)
        np.testing.assert_array_equal(compute_mfcc(audio), mfcc)
        assert calls == [len(audio)] * 4  # in_chunks, and its one segment: all of the audio
        np.testing.assert_array_equal(feats["loudness"], loudness)
        np.testing.assert_array_equal(feats["mfcc"], mfcc)
    f0, voiced = unchunked_f0(bundled_features[4]["audio"])
    np.testing.assert_array_equal(bundled_features[4]["f0"], f0)
    np.testing.assert_array_equal(bundled_features[4]["voiced"], voiced)


@pytest.mark.parametrize("trim", [0, 100])  # report.py reads renders of any length
def test_chunked_loudness_and_mfcc_equal_unchunked(trim):
    """Nine chunks of 0.7 s: every frame, the first and the last included, as computed at once
    (the STFT frames are exact with the context; MFCCs take dB over the whole signal)."""
    rng = np.random.default_rng(0)
    t = np.arange(6 * SR - trim) / SR
    audio = (0.3 * np.sin(2 * np.pi * (220 * t + 30 * t ** 2)) * (1 + 0.8 * np.sin(t))
             + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    audio[2 * SR: 3 * SR] *= 0.001  # the loudest frame is not in every chunk
    loudness, mfcc = unchunked_features(audio)
    chunked_loudness = compute_loudness(audio, chunk_seconds=0.7)
    chunked_mfcc = compute_mfcc(audio, chunk_seconds=0.7)
    assert chunked_loudness.shape == (len(audio) // HOP_LENGTH,) == loudness.shape
    assert chunked_mfcc.shape == mfcc.shape == (len(audio) // HOP_LENGTH, N_MFCC)
    print(f"max |chunked - unchunked|: loudness {np.abs(chunked_loudness - loudness).max():.2e}"
          f" dB, MFCC {np.abs(chunked_mfcc - mfcc).max():.2e}")
    np.testing.assert_allclose(chunked_loudness, loudness, rtol=0, atol=1e-3)
    np.testing.assert_allclose(chunked_mfcc, mfcc, rtol=0, atol=1e-3)


def test_chunked_f0_follows_a_glide_across_chunk_edges(monkeypatch):
    """A 3 s glide from 200 to 400 Hz in four chunks (a context of 0.5 s, shorter than
    FEATURE_CONTEXT_SECONDS, so the edges are harder, and pYIN quicker): on every frame voiced
    in both, within 5 cents of pYIN on all of it; no jump at a chunk's edge (no step larger
    than one pitch bin); the voicing agrees on 99% of frames."""
    monkeypatch.setattr(analysis_module, "FEATURE_CONTEXT_SECONDS", 0.5)
    seconds = 3.0
    t = np.arange(int(seconds * SR)) / SR
    phase = 200 * seconds / np.log(2) * (2 ** (t / seconds) - 1)  # 200 Hz * 2^(t / 3 s)
    audio = (0.4 * np.sin(2 * np.pi * phase)).astype(np.float32)
    f0, voiced = unchunked_f0(audio)
    chunked, chunked_voiced = estimate_f0(audio, chunk_seconds=0.75)
    both = voiced & chunked_voiced
    error = np.abs(1200 * np.log2(chunked[both] / f0[both]))
    step = np.abs(np.diff(1200 * np.log2(chunked)))
    edges = np.linspace(0, len(audio) // HOP_LENGTH + 1, 5).round().astype(int)[1:-1]
    print(f"chunked vs unchunked: max {error.max():.2f} cents, voicing agrees on "
          f"{np.mean(voiced == chunked_voiced):.1%}; steps at the edges "
          f"{np.round(step[edges - 1], 2)} cents, at most {step[5:-5].max():.2f} elsewhere")
    assert both.mean() > 0.9 and error.max() < 5
    assert np.mean(voiced == chunked_voiced) >= 0.99
    # pYIN's pitch bins are 10 cents apart: a glide of 4.6 cents a frame steps 0 or 10 cents
    assert step[edges - 1].max() <= step[5:-5].max() <= 10 + 1e-3, step[edges - 1]


def test_silent_stretch_is_unvoiced_and_filled_over_the_whole_signal(monkeypatch):
    """330 Hz for 1 s, 2.5 s of silence, 440 Hz for 1 s, in chunks of 1 s: the middle chunks
    have no voiced frame and raise nothing; the tones stay voiced, the silence is unvoiced, and
    its f0 is interpolated from 330 to 440 Hz across the chunks."""
    monkeypatch.setattr(analysis_module, "FEATURE_CONTEXT_SECONDS", 0.5)
    t = np.arange(SR) / SR
    gap = np.zeros(int(2.5 * SR))
    audio = np.concatenate([0.4 * np.sin(2 * np.pi * 330 * t), gap,
                            0.4 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    f0, voiced = estimate_f0(audio, chunk_seconds=1.0)
    frame = SR / HOP_LENGTH
    first, silent, second = (slice(int(a * frame), int(b * frame))
                             for a, b in ((0.1, 0.9), (1.1, 3.4), (3.6, 4.4)))
    print(f"voiced: {voiced[first].mean():.0%} of the first tone, {voiced[silent].mean():.0%} of "
          f"the silence, {voiced[second].mean():.0%} of the second tone")
    assert voiced[first].all() and voiced[second].all() and not voiced[silent].any()
    assert np.all(np.abs([cents(f, 330.0) for f in f0[first]]) < 20)
    assert np.all(np.abs([cents(f, 440.0) for f in f0[second]]) < 20)
    assert np.all(np.diff(f0[silent]) > 0) and 330 < f0[silent].min() < f0[silent].max() < 440
