"""load_audio: channel mixing, resampling, sample formats, rescaling, cutting; write_wav."""
import warnings

import numpy as np
import pytest

import ddsp_helpers as dh
from conftest import cents, peak_frequency

SR = dh.SAMPLE_RATE


def tone(freq, seconds, rate, amplitude=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_is_averaged(write_wav_file):
    left, right = tone(440, 0.5, SR, 0.6), tone(660, 0.5, SR, 0.2)
    path = write_wav_file("stereo.wav", np.stack([left, right], axis=1))
    audio = dh.load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) == len(left)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("rate", [44100, 48000, 16000])
def test_other_rates_are_resampled_with_pitch_kept(write_wav_file, rate):
    n = int(1.5 * rate)
    path = write_wav_file(f"tone_{rate}.wav", tone(440.0, 1.5, rate), rate, "PCM_16")
    audio = dh.load_audio(path)
    expected = n * SR / rate
    assert abs(len(audio) - expected) <= 2, (len(audio), expected)
    measured = peak_frequency(audio[2000:-2000], SR)
    print(f"{rate} Hz -> {SR} Hz: {len(audio)} samples (expected {expected:.1f}), "
          f"peak {measured:.3f} Hz = {cents(measured, 440.0):+.3f} cents")
    assert abs(cents(measured, 440.0)) < 20
    assert 0.45 < np.max(np.abs(audio)) <= 0.55  # level kept by the resampler


@pytest.mark.parametrize("subtype, tolerance", [("PCM_U8", 1.0 / 64), ("PCM_16", 1e-4),
                                                 ("PCM_24", 1e-6), ("FLOAT", 1e-7),
                                                 ("DOUBLE", 1e-7)])
def test_sample_formats_accepted(write_wav_file, subtype, tolerance):
    data = tone(330, 0.5, SR, 0.7)
    path = write_wav_file(f"fmt_{subtype}.wav", data, SR, subtype)
    audio = dh.load_audio(path)
    assert audio.dtype == np.float32 and audio.shape == data.shape
    assert np.max(np.abs(audio - data)) < tolerance


def test_float_beyond_full_scale_is_rescaled_with_warning(write_wav_file):
    data = tone(330, 0.5, SR, 2.0)
    path = write_wav_file("hot.wav", data)
    with pytest.warns(UserWarning, match="beyond full scale"):
        audio = dh.load_audio(path)
    assert np.max(np.abs(audio)) <= 1.0
    np.testing.assert_allclose(audio, data / np.max(np.abs(data)), atol=1e-6)


def test_long_file_is_cut_with_warning(write_wav_file):
    path = write_wav_file("long.wav", tone(330, 3.0, SR))
    with pytest.warns(UserWarning, match="only the first"):
        audio = dh.load_audio(path, max_seconds=1.0)
    assert len(audio) == SR


def test_no_warning_for_a_plain_file(tone_paths):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio = dh.load_audio(tone_paths[0])
    assert audio.dtype == np.float32 and len(audio) == 2 * SR


def test_write_wav_round_trip(tmp_path):
    data = tone(440, 0.5, SR, 0.5)
    path = dh.write_wav(tmp_path / "sub" / "out.wav", data)
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["out.wav"]
    import soundfile as sf

    info = sf.info(str(path))
    assert info.samplerate == SR and info.subtype == "PCM_16" and info.channels == 1
    np.testing.assert_allclose(dh.load_audio(path), data, atol=1e-4)
