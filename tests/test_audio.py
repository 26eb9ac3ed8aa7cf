"""grown_timbres/audio.py: reading any sound file as mono float32 at SAMPLE_RATE (rates, formats,
stereo, clipping, length caps), decoding a browser's recording, the one error for unusable
input, and writing wav."""
import warnings

import numpy as np
import pytest

from grown_timbres import audio as audio_module
from grown_timbres.audio import (MAX_AUDIO_SECONDS, AudioInputError, decode_recording, load_audio,
                                 read_wav, write_wav)
from grown_timbres.config import SAMPLE_RATE
from grown_timbres.features import extract_features
from conftest import BAD_FILES, RECORDING_FIXTURE, cents, peak_frequency


SR = SAMPLE_RATE


def tone(freq, seconds, rate, amplitude=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_is_averaged(write_wav_file):
    left, right = tone(440, 0.5, SR, 0.6), tone(660, 0.5, SR, 0.2)
    path = write_wav_file("stereo.wav", np.stack([left, right], axis=1))
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) == len(left)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("rate", [44100, 48000, 16000])
def test_other_rates_are_resampled_with_pitch_kept(write_wav_file, rate):
    n = int(1.5 * rate)
    path = write_wav_file(f"tone_{rate}.wav", tone(440.0, 1.5, rate), rate, "PCM_16")
    audio = load_audio(path)
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
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.shape == data.shape
    assert np.max(np.abs(audio - data)) < tolerance


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_flac_and_ogg_are_accepted(tmp_path, fmt):
    """The decoded file is the tone that was written: FLAC sample for sample (to 16-bit
    quantisation), OGG (lossy) at the same pitch (1 cent) and level (0.2 dB) and aligned."""
    import soundfile as sf

    from conftest import cents, peak_frequency

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    written = 0.5 * np.sin(2 * np.pi * 330 * t)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(str(path), written, SAMPLE_RATE, format=fmt)
    audio = load_audio(path)
    assert abs(len(audio) - SAMPLE_RATE) < 1024 and np.isfinite(audio).all()
    assert audio.dtype == np.float32 and audio.ndim == 1
    n = min(len(audio), len(written))
    if fmt == "FLAC":
        assert len(audio) == len(written)
        np.testing.assert_allclose(audio, written, atol=1.5 / 32768)
    else:
        middle = slice(2048, n - 2048)
        level = 20 * np.log10(np.std(audio[middle]) / np.std(written[middle]))
        assert abs(level) < 0.2
        assert np.corrcoef(audio[middle], written[middle])[0, 1] > 0.99
    assert abs(cents(peak_frequency(audio[:n], SAMPLE_RATE), 330.0)) < 1


def test_float_beyond_full_scale_is_rescaled_with_warning(write_wav_file):
    data = tone(330, 0.5, SR, 2.0)
    path = write_wav_file("hot.wav", data)
    with pytest.warns(UserWarning, match="beyond full scale"):
        audio = load_audio(path)
    assert np.max(np.abs(audio)) <= 1.0
    np.testing.assert_allclose(audio, data / np.max(np.abs(data)), atol=1e-6)


def test_long_file_is_cut_with_warning(write_wav_file):
    path = write_wav_file("long.wav", tone(330, 3.0, SR))
    with pytest.warns(UserWarning, match="only the first"):
        audio = load_audio(path, max_seconds=1.0)
    assert len(audio) == SR


def write_long_wav(path, seconds, rate, channels):
    """A 16-bit wav of a 220 Hz sine (each channel its own level), written 10 s at a time."""
    import soundfile as sf

    with sf.SoundFile(str(path), "w", rate, channels, "PCM_16") as file:
        for start in range(0, int(seconds * rate), 10 * rate):
            t = np.arange(start, min(start + 10 * rate, int(seconds * rate))) / rate
            sine = 0.3 * np.sin(2 * np.pi * 220 * t)
            file.write(np.stack([sine * (1 - 0.5 * c) for c in range(channels)], axis=1))
    return path


def traced_peak(call):
    """(call(), the peak of memory traced while it ran, in bytes)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_ten_minute_file_is_read_whole_in_bounded_memory(tmp_path):
    """A 10-minute 44.1 kHz stereo file is no longer cut (MAX_AUDIO_SECONDS is 30 minutes) and
    is read, mixed down and resampled a block at a time: beyond the 53 MB of its result, only
    blocks are held (reading it whole would hold 212 MB of float32 stereo first)."""
    path = write_long_wav(tmp_path / "ten_minutes.wav", 600, 44100, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio, peak = traced_peak(lambda: load_audio(path))
    assert len(audio) == 600 * SAMPLE_RATE and audio.dtype == np.float32
    print(f"peak {peak / 2**20:.0f} MiB for a result of {audio.nbytes / 2**20:.0f} MiB")
    assert peak < audio.nbytes + 20 * 2**20, f"{peak / 2**20:.0f} MiB"
    assert abs(float(np.max(np.abs(audio[SR:-SR]))) - 0.225) < 0.01  # (0.3 + 0.15) / 2


def test_file_over_max_audio_seconds_is_cut_reading_only_the_maximum(tmp_path, monkeypatch):
    """Only MAX_AUDIO_SECONDS are read (made 30 s here): a full read of 10 minutes would
    allocate 53 MB of float32 samples."""
    monkeypatch.setattr(audio_module, "MAX_AUDIO_SECONDS", 30.0)
    path = write_long_wav(tmp_path / "ten_minutes.wav", 600, SAMPLE_RATE, 1)
    with pytest.warns(UserWarning, match=r"600.0 s long; only the first 30 s are used "
                                         r"\(MAX_AUDIO_SECONDS=30 s is the longest file"):
        audio, peak = traced_peak(lambda: load_audio(path))
    assert len(audio) == 30 * SAMPLE_RATE
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB"


def test_forty_seconds_are_no_longer_cut(write_wav_file):
    path = write_wav_file("forty_seconds.wav", tone(330, 40.0, SR), SR, "PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_audio(path)) == 40 * SR
    assert MAX_AUDIO_SECONDS == 30 * 60


def test_no_warning_for_a_plain_file(tone_paths):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio = load_audio(tone_paths[0])
    assert audio.dtype == np.float32 and len(audio) == 2 * SR


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("function", [load_audio, extract_features],
                         ids=["load_audio", "extract_features"])
def test_bad_file_raises_audio_input_error(tmp_path, case, function):
    make, reason = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(AudioInputError) as info:
        function(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert str(path) in str(err) and path.name in str(err)
    assert reason.lower() in str(err).lower(), str(err)
    assert err.path == str(path) and reason.lower() in err.reason.lower()
    print(f"{case}: {err}")


def test_audio_input_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(AudioInputError("/data/a.wav", "is silent")))
    assert isinstance(err, AudioInputError)
    assert (err.path, err.reason, str(err)) == ("/data/a.wav", "is silent", "/data/a.wav: is silent")


def test_write_wav_round_trip(tmp_path):
    data = tone(440, 0.5, SR, 0.5)
    path = write_wav(tmp_path / "sub" / "out.wav", data)
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["out.wav"]
    import soundfile as sf

    info = sf.info(str(path))
    assert info.samplerate == SR and info.subtype == "FLOAT" and info.channels == 1
    np.testing.assert_array_equal(read_wav(path), data.astype(np.float32))
    np.testing.assert_allclose(load_audio(path), data, atol=1e-6)


def test_write_wav_keeps_a_render_above_full_scale_at_its_level(tmp_path):
    """A resynthesis may peak above 1.0 (same spectrum as its target, other phases): the wav
    holds it exactly, neither scaled down nor clipped."""
    data = tone(440, 0.5, SR, 1.6)
    written = read_wav(write_wav(tmp_path / "loud.wav", data))
    assert np.max(np.abs(written)) == pytest.approx(1.6, rel=1e-6)
    np.testing.assert_array_equal(written, data.astype(np.float32))


def locked(monkeypatch, path):
    """Make `path` unreadable to this process and the workers it forks, as chmod 000 does for
    anyone but root (the tests may run as root): open() of it raises PermissionError."""
    import builtins
    import errno

    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    return path


@pytest.mark.parametrize("cache", [False, True], ids=["no_cache", "cache"])
def test_unreadable_file_is_refused_naming_it(tmp_path, write_wav_file, monkeypatch, cache):
    """Issue 13, class 2: a file this process may not read is the file's own fault, reported as
    an AudioInputError naming it, with or without a feature cache (which hashes the file)."""
    path = locked(monkeypatch, write_wav_file("locked.wav", tone(440, 0.5, SR)))
    for function in (load_audio, extract_features):
        args = {"cache_dir": tmp_path / "cache"} if cache and function is extract_features else {}
        with pytest.raises(AudioInputError) as info:
            function(path, **args)
        assert str(info.value) == f"{path}: cannot be read (Permission denied)"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_write_wav_refuses_non_finite_audio_and_writes_nothing(tmp_path, bad):
    """Issue 13, class 5: NaN audio used to become a wav of constant -1.0. Now ValueError
    naming the file, how many samples are bad and the first; no file, no temporary left."""
    data = tone(440, 0.5, SR, 0.5)
    data[[100, 2205, 3000]] = bad
    target = tmp_path / "out" / "nan.wav"
    with pytest.raises(ValueError) as info:
        write_wav(target, data)
    assert str(info.value) == (f"{target}: 3 of {len(data)} samples are NaN or infinite (the "
                               "first at sample 100); non-finite audio is never played or "
                               "written")
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_every_player_and_render_refuses_non_finite_audio():
    """The one gate (finite_audio) that write_wav, the notebooks' players and every
    finished render pass through."""
    from grown_timbres.audio import finish_render
    from grown_timbres.notebook import audio_player

    data = tone(440, 0.5, SR, 0.5)
    data[-1] = np.nan
    for function, name in ((audio_player, "audio player"), (finish_render, "render")):
        with pytest.raises(ValueError, match=rf"^{name}: 1 of {len(data)} samples are NaN or "
                                             "infinite"):
            function(data)
    assert np.isfinite(finish_render(tone(440, 0.5, SR, 2.0))).all()


# ------------------------------------------------------------------ a browser's recording
FIXTURE_SECONDS, FIXTURE_HZ, FIXTURE_RMS_DB = 1.5, 440.0, 20 * np.log10(0.125 / np.sqrt(2))  # -21.07


def test_a_browser_recording_decodes_to_mono_float32_at_the_sample_rate(ffmpeg):
    """tests/fixtures/recording_440hz.webm (8 KB) is what Chrome's MediaRecorder records
    (audio/webm;codecs=opus: Opus at 48 kHz in 20 ms frames, in a live WebM with no duration):
    1.5 s of lavfi's 440 Hz sine, amplitude 1/8. ffmpeg 5.1 with libopus made it, the same bytes
    every time, with

        ffmpeg -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=1.5" -ac 1 \\
          -c:a libopus -b:a 32k -frame_duration 20 -fflags +bitexact -map_metadata -1 \\
          -live 1 -f webm tests/fixtures/recording_440hz.webm

    Decoded: length within one Opus frame, pitch within 2 cents, level within 1 dB (away from
    the codec's edges, the first and last 0.1 s)."""
    audio = decode_recording(RECORDING_FIXTURE.read_bytes())
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.writeable
    assert abs(len(audio) - FIXTURE_SECONDS * SR) <= 0.02 * SR, len(audio)
    middle = audio[int(0.1 * SR): -int(0.1 * SR)].astype(np.float64)
    assert abs(cents(peak_frequency(middle, SR), FIXTURE_HZ)) < 2
    rms_db = 10 * np.log10(np.mean(middle ** 2))
    assert abs(rms_db - FIXTURE_RMS_DB) < 1.0, rms_db


def test_bytes_that_are_no_audio_are_refused_naming_the_recording_and_ffmpegs_reason(ffmpeg):
    with pytest.raises(AudioInputError, match=r"^take 1: not a decodable recording \(ffmpeg: .+"):
        decode_recording(b"<html>no audio here</html>" * 50, name="take 1")


def test_a_recording_over_the_upload_limit_is_refused_before_decoding(ffmpeg, monkeypatch):
    monkeypatch.setattr(audio_module, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(AudioInputError, match="8262 bytes, more than MAX_UPLOAD_BYTES=1000"):
        decode_recording(RECORDING_FIXTURE.read_bytes())


def test_a_recording_is_decoded_up_to_max_record_seconds_only(ffmpeg, monkeypatch):
    monkeypatch.setattr(audio_module, "MAX_RECORD_SECONDS", 0.5)
    assert abs(len(decode_recording(RECORDING_FIXTURE.read_bytes())) - 0.5 * SR) <= 0.02 * SR


def test_a_truncated_or_corrupt_recording_is_refused_not_kept_in_part(ffmpeg):
    """Issue 21, class 8: the fixture cut in half used to decode to its first 0.75 s without a
    word, and bytes garbled in its middle to 0.88 s. ffmpeg reports both as errors while still
    exiting with 0: any error it meets refuses the recording, naming it and the error."""
    data = RECORDING_FIXTURE.read_bytes()
    garbled = bytearray(data)
    garbled[2000:2100] = bytes(b ^ 0xFF for b in garbled[2000:2100])
    for damaged, error in ((data[: len(data) // 2], "File ended prematurely"),
                           (bytes(garbled), "Element at 0x[0-9a-f]+ ending at")):
        with pytest.raises(AudioInputError, match=rf"^take 2: is damaged or cut short: ffmpeg "
                                                  rf"decoded \d\.\d\d s and met \d+ error\(s\), "
                                                  rf"the first: {error}.*; record it again$"):
            decode_recording(damaged, name="take 2")


def test_a_recording_cut_cleanly_is_refused_against_its_declared_or_recorded_length(ffmpeg,
                                                                                    tmp_path):
    """A WebM whose segment is open-ended, as a streamed recording's is, cut where a cluster
    starts: ffmpeg meets no error, but the audio is shorter than the file declares. And one
    shorter than it was recorded for (`expected_seconds`, what record_microphone asked the
    browser for); up to RECORDING_SHORTFALL_SECONDS short is a browser's start-up, not a cut."""
    import subprocess

    from grown_timbres.audio import RECORDING_SHORTFALL_SECONDS

    path = tmp_path / "declared.webm"
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000:duration=1.5", "-ac", "1", "-c:a",
                    "libopus", "-cluster_time_limit", "250", "-fflags", "+bitexact", str(path)],
                   check=True)
    data = bytearray(path.read_bytes())
    segment = data.find(b"\x18\x53\x80\x67")  # the Segment's ID, then its 8-byte size
    assert data[segment + 4] == 0x01, "ffmpeg writes a Segment's size in 8 bytes"
    data[segment + 4: segment + 12] = b"\x01" + b"\xff" * 7  # size unknown: streamed
    clusters = [i for i in range(len(data)) if data[i: i + 4] == b"\x1f\x43\xb6\x75"]
    assert abs(len(decode_recording(bytes(data))) / SR - 1.5) < 0.02
    with pytest.raises(AudioInputError, match=r"^cut\.webm: is cut short: 0\.\d\d s of audio, "
                                              r"but the file declares 1\.5\d s; record it again$"):
        decode_recording(bytes(data[: clusters[len(clusters) // 2]]), name="cut.webm")
    fixture = RECORDING_FIXTURE.read_bytes()  # 1.5 s, no declared length
    assert len(decode_recording(fixture, expected_seconds=1.5 + RECORDING_SHORTFALL_SECONDS)) > 0
    with pytest.raises(AudioInputError, match=r"^recording: is cut short: 1\.50 s of audio, but "
                                              r"it was recorded for 2\.00 s; record it again$"):
        decode_recording(fixture, expected_seconds=2)


def test_without_ffmpeg_decoding_says_what_is_missing(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(AudioInputError, match="recording: cannot be decoded: ffmpeg is not "
                                              "installed"):
        decode_recording(b"anything")
