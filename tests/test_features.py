"""grown_timbres/features.py: pYIN f0, A-weighted loudness and MFCCs on the bundled tones and on
signals with known answers; the feature cache; padded batches and each file back out of one."""
import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from grown_timbres.audio import AudioInputError
from grown_timbres.config import HOP_LENGTH, LOUDNESS_FLOOR_DB, N_MFCC, SAMPLE_RATE
from grown_timbres import analysis as analysis_module
from grown_timbres import features as features_module
from grown_timbres.analysis import (F0_MAX_HZ, F0_MIN_HZ, MFCC_N_FFT, MFCC_N_MELS,
                                    VOICED_PROB_MIN, a_weighted_power, compute_loudness,
                                    compute_mfcc, estimate_f0)
from grown_timbres.features import (FEATURE_SETTINGS, Features, extract_features,
                                    feature_cache_path, read_cache_entry)
from grown_timbres.batching import file_features, load_multiple_files
from grown_timbres.pitch import hz_to_midi, midi_to_hz as package_midi_to_hz
from grown_timbres.feature_cache import FEATURE_KEYS, MANIFEST, file_digest
from conftest import (FIRST_MIDI, batch_from_features, cents, make_all_zero, make_empty,
                      make_missing, make_text, midi_to_hz)


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


def test_feature_shapes_and_dtypes(bundled_features, tone_paths):
    """Every bundled tone: audio is the wav's 16-bit samples / 32768, cut to whole frames; one
    feature frame per HOP_LENGTH samples, float32 and finite; f0 in range, loudness above the
    floor and, for these tones played mezzo-forte, between -45 and -5 dB in their voiced
    middle."""
    import soundfile as sf

    for path, feats in zip(tone_paths, bundled_features):
        n_frames = len(feats["f0"])
        samples, rate = sf.read(str(path), dtype="int16")
        assert rate == SAMPLE_RATE and n_frames == len(samples) // HOP_LENGTH
        np.testing.assert_array_equal(feats["audio"], samples[: n_frames * HOP_LENGTH] / 32768.0)
        assert feats["audio"].shape == (n_frames * HOP_LENGTH,)
        assert feats["voiced"].shape == (n_frames,) and feats["voiced"].dtype == bool
        assert feats["loudness"].shape == (n_frames,)
        assert feats["mfcc"].shape == (n_frames, N_MFCC)
        for key in ("audio", "f0", "loudness", "mfcc"):
            assert feats[key].dtype == np.float32, key
            assert np.all(np.isfinite(feats[key])), key
        assert np.all(feats["f0"] >= F0_MIN_HZ) and np.all(feats["f0"] <= F0_MAX_HZ)
        assert np.all(feats["loudness"] >= LOUDNESS_FLOOR_DB)
        voiced_loudness = feats["loudness"][feats["voiced"]]
        assert -45 < np.median(voiced_loudness) < -5, np.median(voiced_loudness)


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


def test_white_noise_has_no_pitch(tmp_path):
    path = tmp_path / "white_noise.wav"
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    sf.write(str(path), noise, SR, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="no pitched frames") as info:
        extract_features(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize("seed", [1])
def test_white_noise_without_viterbi_voicing_raises(tmp_path, seed):
    """Noise where pYIN's decoder happens to mark no frame voiced: the no-pitch path works."""
    path = tmp_path / "white_noise.wav"
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, SR).astype(np.float32)
    sf.write(str(path), noise, SR, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="no pitched frames") as info:
        extract_features(path)
    assert str(path) in str(info.value)


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


def test_hz_to_midi_numpy_and_torch():
    assert hz_to_midi(np.float64(440.0)) == pytest.approx(69.0)
    assert hz_to_midi(np.array([261.6256]))[0] == pytest.approx(60.0, abs=1e-3)
    assert torch.allclose(hz_to_midi(torch.tensor([220.0, 880.0])), torch.tensor([57.0, 81.0]))
    midi = np.array([0.0, 60.0, 69.5, 127.0])
    np.testing.assert_allclose(hz_to_midi(package_midi_to_hz(midi)), midi, rtol=0, atol=1e-9)


def test_features_read_by_their_old_keys(bundled_features):
    """extract_features gives a Features that reads as the dict it replaced: features["f0"],
    `in`, ** (older code copies and edits features so); a key it never had raises a KeyError
    naming the fields; from_mapping makes one from such a dict, with config's hop when the
    dict has none."""
    features = bundled_features[0]
    assert isinstance(features, Features)
    assert (features.sample_rate, features.hop_length) == (SAMPLE_RATE, HOP_LENGTH)
    assert features["f0"] is features.f0 and features["path"] == features.path
    assert set(features) == {"path", "audio", "f0", "voiced", "loudness", "mfcc"}  # the dict's
    edited = Features.from_mapping({**features, "f0": features.f0 * np.float32(2)})
    assert edited.f0[0] == 2 * features.f0[0] and edited.mfcc is features.mfcc
    with pytest.raises(KeyError, match=r"Features has no key 'pitch'.*\.f0, \.voiced"):
        features["pitch"]
    old = {key: features[key] for key in ("path", "audio", "f0", "voiced", "loudness", "mfcc")}
    assert Features.from_mapping(old).hop_length == HOP_LENGTH
    assert Features.from_mapping(features) is features


def cache_must_hit(monkeypatch):
    """A hit still reads the audio (the entry's must be the file's), but never runs pYIN."""
    monkeypatch.setattr(features_module, "estimate_f0",
                        lambda *a, **k: pytest.fail("cache missed"))


def test_feature_cache_hit_skips_extraction(tmp_path, tone_paths, monkeypatch):
    cache = tmp_path / "cache"
    first = extract_features(tone_paths[0], cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    cache_must_hit(monkeypatch)
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(tone_paths[0].read_bytes())
    second = extract_features(copy, cache_dir=cache)
    assert second["path"] == str(copy)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(first[key], second[key])


def test_feature_cache_misses_when_a_setting_changes(tmp_path, tone_paths, monkeypatch):
    before = feature_cache_path(tone_paths[0], tmp_path)
    monkeypatch.setitem(FEATURE_SETTINGS, "n_mfcc", 13)
    assert feature_cache_path(tone_paths[0], tmp_path) != before


def test_load_multiple_files_skips_bad_file(tmp_path, tone_paths, bundled_features):
    """One bad file and two good ones (one cut to 1 s): real extraction, one process."""
    bad = make_text(tmp_path)
    short = tmp_path / "short_A4.wav"
    sf.write(str(short), sf.read(str(tone_paths[9]), dtype="float32")[0][:SR], SR,
             subtype="FLOAT")
    with pytest.warns(UserWarning, match="notes.wav"):
        batch = load_multiple_files([tone_paths[0], bad, short], progress=False, n_workers=1)
    assert batch["file_paths"] == [str(tone_paths[0]), str(short)]
    assert list(batch["errors"]) == [str(bad)]
    assert "not a readable audio file" in batch["errors"][str(bad)]
    n_long, n_short = len(bundled_features[0]["f0"]), SR // HOP_LENGTH
    assert batch["lengths"].tolist() == [n_long, n_short]
    assert batch["f0"].shape == (2, n_long, 1) and batch["mfcc"].shape == (2, n_long, N_MFCC)
    assert batch["audio"].shape == (2, n_long * HOP_LENGTH)
    # the same features as extracted alone, and the padding as documented
    np.testing.assert_array_equal(batch["audio"][0].numpy(), bundled_features[0]["audio"])
    np.testing.assert_array_equal(batch["f0"][0, :, 0].numpy(), bundled_features[0]["f0"])
    assert np.all(batch["audio"][1, n_short * HOP_LENGTH:].numpy() == 0)
    assert np.all(batch["loudness"][1, n_short:].numpy() == LOUDNESS_FLOOR_DB)
    assert np.all(batch["f0"][1, n_short:].numpy() == batch["f0"][1, n_short - 1].numpy())
    assert not batch["voiced"][1, n_short:].any()


def test_load_multiple_files_in_worker_processes(tmp_path, tone_paths, bundled_features):
    """The default path (a process pool): bad files are reported from the workers too."""
    bad = make_all_zero(tmp_path)
    with pytest.warns(UserWarning, match="silent"):
        batch = load_multiple_files([bad, tone_paths[1]], progress=False, n_workers=2)
    assert batch["file_paths"] == [str(tone_paths[1])] and list(batch["errors"]) == [str(bad)]
    np.testing.assert_array_equal(batch["f0"][0, :, 0].numpy(), bundled_features[1]["f0"])


def test_load_multiple_files_all_bad_raises(tmp_path):
    paths = [make_empty(tmp_path), make_text(tmp_path), make_missing(tmp_path)]
    with pytest.warns(UserWarning):
        with pytest.raises(AudioInputError) as info:
            load_multiple_files(paths, progress=False, n_workers=1)
    message = str(info.value)
    assert "no usable audio file" in message
    for path in paths:
        assert path.name in message


def test_load_multiple_files_no_files_raises():
    with pytest.raises(AudioInputError, match="no files given"):
        load_multiple_files([], progress=False)


def test_collate_matches_features_and_file_features_undoes_it(bundled_features):
    """Files of different lengths in one batch: each file's valid frames and samples are its
    own features unchanged, and file_features gives them back; beyond them f0 and MFCC hold the last frame, loudness sits at the
    floor, audio is zero and nothing is voiced; lengths count the valid frames."""
    short = dict(bundled_features[2])
    n = 50
    short.update(path=short["path"] + "#short", audio=short["audio"][: n * HOP_LENGTH],
                 **{key: short[key][:n] for key in ("f0", "voiced", "loudness", "mfcc")})
    features = [bundled_features[0], short, bundled_features[1]]
    batch = batch_from_features(features)
    full = len(bundled_features[0]["f0"])
    assert batch["lengths"].tolist() == [full, n, len(bundled_features[1]["f0"])]
    assert batch["errors"] == {} and batch["file_paths"] == [f["path"] for f in features]
    assert batch["f0"].shape == (3, full, 1) and batch["mfcc"].shape == (3, full, N_MFCC)
    assert batch["audio"].shape == (3, full * HOP_LENGTH) and batch["voiced"].shape == (3, full)
    for i, feats in enumerate(features):
        m = len(feats["f0"])
        np.testing.assert_array_equal(batch["f0"][i, :m, 0].numpy(), feats["f0"])
        np.testing.assert_array_equal(batch["loudness"][i, :m, 0].numpy(), feats["loudness"])
        np.testing.assert_array_equal(batch["mfcc"][i, :m].numpy(), feats["mfcc"])
        np.testing.assert_array_equal(batch["voiced"][i, :m].numpy(), feats["voiced"])
        np.testing.assert_array_equal(batch["audio"][i, : m * HOP_LENGTH].numpy(),
                                      feats["audio"])
        back = file_features(batch, i)  # and each file comes back out as it went in
        assert back["path"] == feats["path"]
        for key in FEATURE_KEYS:
            assert back[key].dtype == feats[key].dtype
            np.testing.assert_array_equal(back[key], feats[key])
    assert torch.all(batch["f0"][1, n:, 0] == float(short["f0"][-1]))
    assert torch.all(batch["mfcc"][1, n:] == torch.from_numpy(short["mfcc"][-1]))
    assert torch.all(batch["loudness"][1, n:] == LOUDNESS_FLOOR_DB)
    assert torch.all(batch["audio"][1, n * HOP_LENGTH:] == 0)
    assert not batch["voiced"][1, n:].any()


# ---------------------------------------------- issue 14, item 1: long files, features in chunks
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


def test_long_file_cache_entry_round_trips(tmp_path, write_wav_file, monkeypatch):
    """A 2-minute file (beyond the old 30 s cut) is kept whole, and its cache entry passes
    read_cache_entry and is hit next time. pYIN is replaced by a steady 220 Hz: it is slow."""
    t = np.arange(120 * SR) / SR
    path = write_wav_file("two_minutes.wav", 0.3 * np.sin(2 * np.pi * 220 * t), SR, "PCM_16")
    features_module.compile_feature_kernels()  # before pYIN is replaced: it runs pYIN once
    monkeypatch.setattr(features_module, "estimate_f0", lambda audio, path, **options: (
        np.full(len(audio) // HOP_LENGTH, 220.0, np.float32),
        np.ones(len(audio) // HOP_LENGTH, bool)))
    cache = tmp_path / "cache"
    fresh = extract_features(path, cache)
    assert len(fresh["audio"]) == len(t) // HOP_LENGTH * HOP_LENGTH
    entry = feature_cache_path(path, cache)
    settings = json.dumps(FEATURE_SETTINGS, sort_keys=True)
    stored = read_cache_entry(entry, file_digest(path, settings), HOP_LENGTH)
    cache_must_hit(monkeypatch)
    hit = extract_features(path, cache)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(stored[key], fresh[key])
        np.testing.assert_array_equal(hit[key], fresh[key])


# ------------------------------------------ issue 13, class 2: the cache is only an optimization
def short_tone(write_wav_file, name="tone.wav", freq=330.0):
    """A 0.5 s sine file (pYIN on it is quick); different `freq`, different bytes and entry."""
    t = np.arange(SR // 2) / SR
    return write_wav_file(name, 0.4 * np.sin(2 * np.pi * freq * t))


def stored_arrays(entry) -> dict:
    """Every .npy member of an entry, read as numpy reads it."""
    import zipfile

    with zipfile.ZipFile(entry) as archive:
        return {name[:-4]: np.load(archive.open(name), allow_pickle=True)
                for name in archive.namelist() if name.endswith(".npy")}


def manifest_of(entry) -> dict:
    import zipfile

    with zipfile.ZipFile(entry) as archive:
        return json.loads(archive.read(MANIFEST))


def rewrite_entry(entry, manifest_changes=None, **changes):
    """Rewrite a cache entry with some arrays replaced, or dropped where the value is None; the
    manifest is rewritten with it (sizes of the arrays written) and then `manifest_changes`."""
    import zipfile

    arrays, manifest = stored_arrays(entry), manifest_of(entry)
    for key, value in changes.items():
        arrays.pop(key) if value is None else arrays.__setitem__(key, value)
    with zipfile.ZipFile(entry, "w") as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=True)
            manifest["sizes"][key] = archive.getinfo(f"{key}.npy").file_size
        for field, value in (manifest_changes or {}).items():  # sizes: only those named
            manifest[field] = {**manifest[field], **value} if field == "sizes" else value
        archive.writestr(MANIFEST, json.dumps(manifest))


def changed(key, change):
    """A damage that rewrites one array of the entry as change(array)."""
    def damage(entry):
        rewrite_entry(entry, **{key: change(stored_arrays(entry)[key].copy())})
    return damage


def nan_at(index):
    def change(array):
        array[index] = np.nan
        return array
    return change


def other_settings(entry):
    rewrite_entry(entry, {"settings": json.dumps({**FEATURE_SETTINGS, "n_mfcc": 13},
                                                 sort_keys=True)})


def old_format(entry):
    """The entry as the previous version wrote it: np.savez of the settings and the arrays."""
    arrays = stored_arrays(entry)
    with open(entry, "wb") as file:
        np.savez(file, settings=np.array(json.dumps(FEATURE_SETTINGS, sort_keys=True)), **arrays)


def fortran_mfcc(entry):
    """The entry with its mfcc member written in Fortran order (the same bytes' count)."""
    import io
    import zipfile

    with zipfile.ZipFile(entry) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(entry, "w") as archive:
        for name, data in members.items():
            if name == "mfcc.npy":
                with archive.open(name, "w") as member:
                    np.lib.format.write_array(member, np.asfortranarray(
                        np.load(io.BytesIO(data))))
            else:
                archive.writestr(name, data)


def broken_directory(entry):
    """The entry with the last record of its zip directory zeroed (its end record kept)."""
    data = entry.read_bytes()
    entry.write_bytes(data[:-60] + bytes(38) + data[-22:])


NO_DIRECTORY = "is no cache entry: it does not end with a zip directory"
DAMAGED_ENTRIES = {  # damage(entry), what the warning must say is wrong
    "truncated": (lambda e: e.write_bytes(e.read_bytes()[: e.stat().st_size // 2]), NO_DIRECTORY),
    "empty": (lambda e: e.write_bytes(b""), NO_DIRECTORY),
    "garbage": (lambda e: e.write_bytes(bytes(range(256)) * 40), NO_DIRECTORY),
    "single_array": (lambda e: np.save(e.open("wb"), np.zeros(3)), NO_DIRECTORY),
    "directory_cut": (lambda e: e.write_bytes(e.read_bytes()[:-30]), NO_DIRECTORY),
    "broken_directory": (broken_directory, "BadZipFile"),
    "many_members": (lambda e: e.write_bytes(zip_of({f"{i}.npy": b"" for i in range(1000)})),
                     "lists 1000 members; an entry has 6"),
    "short_f0": (changed("f0", lambda a: a[:10]), "f0.npy would inflate to 168 bytes (its "
                                                  "manifest says 168); 43 frames hold 300"),
    "f0_lies_about_its_size": (lambda e: rewrite_entry(e, {"sizes": {"f0": 300}},
                                                       f0=np.zeros(10, np.float32)),
                               "f0.npy would inflate to 168 bytes (its manifest says 300); 43 "
                               "frames hold 300"),
    "float64_loudness": (changed("loudness", lambda a: a.astype(np.float64)),
                         "loudness.npy would inflate to 472 bytes"),
    "voiced_as_uint8": (changed("voiced", lambda a: a.astype(np.uint8)),
                        "voiced is uint8 [43], expected bool [43]"),
    "mfcc_flat": (changed("mfcc", lambda a: a.reshape(-1)), "mfcc is float32 [860], expected "
                                                            "float32 [43, 20]"),
    "mfcc_fortran_order": (fortran_mfcc,
                           "mfcc is float32 [43, 20] in Fortran order, expected float32 [43, 20]"),
    "nan_mfcc": (changed("mfcc", nan_at((5, 3))),
                 "mfcc has 1 values that are NaN, infinite or outside [-10000, 10000]"),
    "nan_f0": (changed("f0", nan_at(7)), "f0 has 1 values that are NaN"),
    "huge_loudness": (changed("loudness", lambda a: a + 1e30), "loudness has 43 values"),
    "audio_beyond_full_scale": (changed("audio", lambda a: 3 * a), "audio has"),
    "too_few_frames": (lambda e: rewrite_entry(e, {"n_frames": 2}), "claims 2 frames; a file "
                                                                    "has 8 to 155039"),
    "no_voiced_frame": (changed("voiced", np.zeros_like), "has no voiced frame"),
    "missing_key": (lambda e: rewrite_entry(e, voiced=None), "lacks voiced.npy"),
    "extra_member": (lambda e: rewrite_entry(e, script=np.zeros(1)), "lists 7 members; an entry "
                                                                     "has 6"),
    "member_renamed": (lambda e: rewrite_entry(e, voiced=None, script=np.zeros(1)),
                       "lacks voiced.npy"),
    "no_manifest": (lambda e: e.write_bytes(zip_of({"f0.npy": b"x"})), "lacks manifest.json"),
    "manifest_not_an_object": (lambda e: e.write_bytes(zip_of({MANIFEST: b"[1]"})),
                               "manifest.json lacks one of digest"),
    "other_settings": (other_settings, "was made with other feature settings"),
    "pickled_object": (changed("mfcc", lambda a: np.array([a, "x"], dtype=object)),
                       "mfcc.npy would inflate to"),
}


def zip_of(members: dict) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(DAMAGED_ENTRIES))
def test_damaged_cache_entry_is_recomputed_and_replaced(tmp_path, write_wav_file, monkeypatch,
                                                        case):
    """Issue 13, class 2: a bad entry used to kill every run (BadZipFile, EOFError, KeyError,
    naming neither file) or to be trained on (10 frames of f0 for 43 of audio). Now the warning
    names the audio file, the entry and what is wrong; the features are recomputed, the entry
    is replaced, and the next run hits it."""
    damage, reason = DAMAGED_ENTRIES[case]
    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    fresh = extract_features(path, cache)
    entry = feature_cache_path(path, cache)
    assert len(fresh["f0"]) == 43 and sorted(cache.iterdir()) == [entry]
    damage(entry)
    with pytest.warns(UserWarning) as caught:
        again = extract_features(path, cache)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{path}: feature cache entry {entry} is unusable (")
    assert messages[0].endswith("); recomputing and replacing it") and reason in messages[0]
    print(f"{case}: {messages[0]}")
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(again[key], fresh[key])
    assert sorted(cache.iterdir()) == [entry]  # replaced in place, nothing left beside it
    cache_must_hit(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = extract_features(path, cache)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(hit[key], fresh[key])


def test_damaged_entries_do_not_stop_a_batch_in_workers(tmp_path, write_wav_file):
    """The batch path, in worker processes: the warning comes back from the worker that
    recomputed the entry, and every file is in the batch."""
    cache = tmp_path / "cache"
    paths = [short_tone(write_wav_file, f"tone_{f}.wav", f) for f in (220.0, 330.0, 440.0)]
    extract_features(paths[0], cache)
    entry = feature_cache_path(paths[0], cache)
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning) as caught:
        batch = load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=2)
    assert batch["file_paths"] == [str(p) for p in paths] and batch["errors"] == {}
    assert [str(w.message).split(" (")[0] for w in caught] == [
        f"{paths[0]}: feature cache entry {entry} is unusable"]
    assert len(list(cache.glob("*.npz"))) == 3 and not list(cache.glob(".*"))


def failing_writes(monkeypatch, error_number):
    """Cache writes fail as on a read-only file system (no temporary file can be made) or a
    full disk (half the entry is written, then ENOSPC)."""
    import errno
    import os

    error = OSError(error_number, os.strerror(error_number))
    if error_number == errno.EROFS:
        def refuse(*args, **kwargs):
            raise error
        monkeypatch.setattr("grown_timbres.audio.tempfile.mkstemp", refuse)
    else:
        def half_written(tmp, *args):
            with open(tmp, "wb") as file:
                file.write(b"PK\x03\x04 half an entry")
            raise error
        monkeypatch.setattr(features_module, "write_entry", half_written)


@pytest.mark.parametrize("n_workers", [1, 2])
@pytest.mark.parametrize("error_name", ["EROFS", "ENOSPC"])
def test_unwritable_cache_warns_once_and_keeps_the_features(tmp_path, write_wav_file,
                                                            monkeypatch, error_name, n_workers):
    """Issue 13, class 2: a read-only or full cache folder used to throw away features already
    computed. Now one warning for the whole batch (also from worker processes), every file's
    features, no partial entry."""
    import errno
    import os

    cache = tmp_path / "cache"
    cache.mkdir()
    paths = [short_tone(write_wav_file, f"tone_{f}.wav", f) for f in (220.0, 330.0, 440.0)]
    failing_writes(monkeypatch, getattr(errno, error_name))
    with pytest.warns(UserWarning) as caught:
        batch = load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=n_workers)
    reason = os.strerror(getattr(errno, error_name))
    assert [str(w.message) for w in caught] == [
        f"feature cache {cache} cannot be written ({reason}); features are computed without it"]
    assert batch["file_paths"] == [str(p) for p in paths] and batch["errors"] == {}
    assert list(cache.iterdir()) == []  # no entry, no temporary file
    monkeypatch.undo()  # the disk has room again: the next run fills the cache
    load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=1)
    assert len(list(cache.iterdir())) == 3


def test_read_only_cache_still_serves_its_entries(tmp_path, write_wav_file, monkeypatch):
    import errno

    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    fresh = extract_features(path, cache)
    failing_writes(monkeypatch, errno.EROFS)
    cache_must_hit(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = extract_features(path, cache)
    np.testing.assert_array_equal(hit["mfcc"], fresh["mfcc"])


def test_cache_folder_that_is_a_file_degrades_to_no_cache(tmp_path, write_wav_file):
    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    cache.write_text("not a folder")
    with pytest.warns(UserWarning, match=rf"^feature cache {cache} cannot be written \(File "
                                         r"exists\); features are computed without it$"):
        features = extract_features(path, cache)
    assert len(features["f0"]) == 43 and cache.read_text() == "not a folder"


def test_unreadable_file_fails_alone_while_the_batch_goes_on(tmp_path, write_wav_file,
                                                              monkeypatch):
    """Issue 13, class 2: an unreadable file used to raise PermissionError while the cache
    entries were looked up, before any worker started. Now it is one file's error."""
    from test_audio import locked

    paths = [short_tone(write_wav_file, f"tone_{f}.wav", f) for f in (220.0, 330.0, 440.0)]
    locked(monkeypatch, paths[1])
    with pytest.warns(UserWarning, match="cannot be read"):
        batch = load_multiple_files(paths, progress=False, cache_dir=tmp_path / "cache",
                                    n_workers=2)
    assert batch["file_paths"] == [str(paths[0]), str(paths[2])]
    assert batch["errors"] == {str(paths[1]): "cannot be read (Permission denied)"}
