"""Audio in and out: reading any sound file as mono float32 at SAMPLE_RATE, decoding a browser's
recording, finishing a render, writing float wav at true level (atomically: files.atomic_write)."""
from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path

import numpy as np

from .config import (FFT_SIZES, MAX_AUDIO_CHANNELS, MAX_AUDIO_SAMPLE_RATE, MAX_AUDIO_SECONDS,
                     MAX_RECORD_SECONDS, MAX_UPLOAD_BYTES, MIN_AUDIO_SAMPLE_RATE, SAMPLE_RATE)
from .files import atomic_write, file_kind

MIN_AUDIO_SAMPLES = max(FFT_SIZES)  # shorter input cannot fill the largest loss frame
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a file is "silent"
EDGE_FADE_SECONDS = 0.01  # at the very start and end of a render
READ_BLOCK_SECONDS = 10.0  # read at a time: 0.12 GB at most (MAX_AUDIO_CHANNELS, _SAMPLE_RATE)
# A browser starts recording a little after it is asked (0.04 s in headless Chromium): a recording
# this much shorter than asked, or than its file declares, lost its end on the way
RECORDING_SHORTFALL_SECONDS = 0.25
FFMPEG_ERROR = re.compile(r"\[(?:error|fatal|panic)\] (.*)")  # a line of -loglevel level+info
FFMPEG_DURATION = re.compile(r"^\[info\]\s+Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


class AudioInputError(ValueError):
    """The one error for unusable input. `str(err)` is "<path>: <reason>"."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable: worker processes of load_multiple_files return these
        return type(self), (self.path, self.reason)


def load_audio(path, max_seconds: float | None = None) -> np.ndarray:
    """Read any soundfile-readable file as float32 mono at SAMPLE_RATE: [n_samples] in [-1, 1].

    Stereo is averaged, other rates resampled (soxr), samples beyond +/-1 rescaled with a
    warning, files longer than `max_seconds` (default MAX_AUDIO_SECONDS) cut with a warning
    (only that much is read). Raises AudioInputError for missing, empty, unreadable, non-finite,
    silent or too-short input, and before reading for more than MAX_AUDIO_CHANNELS or
    MAX_AUDIO_SAMPLE_RATE (a small compressed file could otherwise decode to gigabytes) or a
    rate below MIN_AUDIO_SAMPLE_RATE (a few bytes could claim hours).
    """
    import soundfile as sf

    path = Path(path)
    limit = MAX_AUDIO_SECONDS if max_seconds is None else max_seconds
    if not path.exists():
        raise AudioInputError(path, "file not found")
    if not path.is_file():  # reading a FIFO or a device would wait, or never end
        raise AudioInputError(path, f"is {file_kind(path.stat().st_mode)}, not a regular file")
    if path.stat().st_size == 0:
        raise AudioInputError(path, "file is empty (0 bytes)")
    try:  # libsndfile reports a file it may not open as "System error"
        open(path, "rb").close()
    except OSError as err:
        raise AudioInputError(path, f"cannot be read ({err.strerror or err})") from None
    try:
        info = sf.info(str(path))
        if info.channels > MAX_AUDIO_CHANNELS or info.samplerate > MAX_AUDIO_SAMPLE_RATE:
            raise AudioInputError(path, f"{info.channels} channels at {info.samplerate} Hz; "
                                        f"at most MAX_AUDIO_CHANNELS={MAX_AUDIO_CHANNELS} at "
                                        f"MAX_AUDIO_SAMPLE_RATE={MAX_AUDIO_SAMPLE_RATE} Hz")
        if info.samplerate < MIN_AUDIO_SAMPLE_RATE:
            raise AudioInputError(path, f"sample rate {info.samplerate} Hz is below "
                                        f"MIN_AUDIO_SAMPLE_RATE={MIN_AUDIO_SAMPLE_RATE} Hz "
                                        "(telephone sound, the lowest rate of a recording)")
        max_frames = int(limit * info.samplerate)
        audio, n_read, peak = read_mono(path, info.samplerate, min(info.frames, max_frames))
    except AudioInputError:
        raise
    except Exception as err:  # libsndfile reports every unreadable format its own way
        raise AudioInputError(path, f"not a readable audio file ({err})") from None
    if info.frames > max_frames:
        name = "MAX_AUDIO_SECONDS" if max_seconds is None else "max_seconds"
        warnings.warn(f"{path}: {info.frames / info.samplerate:.1f} s long; only the first "
                      f"{limit:g} s are used ({name}={limit:g} s is the longest file accepted)",
                      stacklevel=2)
    if n_read == 0:
        raise AudioInputError(path, "contains no audio samples")
    if not np.isfinite(peak):
        raise AudioInputError(path, "contains NaN or infinite samples")
    if peak < SILENCE_PEAK:
        raise AudioInputError(path, f"is silent (peak {20 * np.log10(peak + 1e-12):.0f} dBFS)")
    if peak > 1.0:
        warnings.warn(f"{path}: samples reach {peak:.2f} (beyond full scale); rescaled to 1.0",
                      stacklevel=2)
        audio /= np.float32(peak)  # resampling is linear: the same as scaling before it
    if len(audio) < MIN_AUDIO_SAMPLES:
        raise AudioInputError(path, f"too short: {1000 * len(audio) / SAMPLE_RATE:.0f} ms, "
                                    f"needs at least {1000 * MIN_AUDIO_SAMPLES / SAMPLE_RATE:.0f} ms")
    return np.clip(audio, -1.0, 1.0, out=audio)


def read_mono(path, file_rate: int, n_frames: int) -> tuple[np.ndarray, int, float]:
    """The first n_frames of a sound file, channels averaged, resampled to SAMPLE_RATE:
    (float32 [ceil(n_read * SAMPLE_RATE / file_rate)], n_read frames read, the mono signal's
    peak before resampling: NaN when a sample is not finite). Read, mixed down and resampled
    READ_BLOCK_SECONDS at a time: only the result is ever held whole, at SAMPLE_RATE (the
    streamed resampler gives librosa.resample's soxr_hq samples exactly)."""
    import soundfile as sf
    import soxr

    stream = None if file_rate == SAMPLE_RATE else soxr.ResampleStream(
        file_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    audio = np.zeros(math.ceil(n_frames * SAMPLE_RATE / file_rate), np.float32)
    n_read = n_out = 0
    peak, finite = 0.0, True
    block = max(1, int(READ_BLOCK_SECONDS * file_rate))

    def put(out):
        nonlocal n_out
        room = max(len(audio) - n_out, 0)
        audio[n_out: n_out + min(len(out), room)] = out[:room]
        n_out += len(out)

    with sf.SoundFile(str(path)) as file:
        while n_read < n_frames:
            data = file.read(min(block, n_frames - n_read), dtype="float32", always_2d=True)
            if len(data) == 0:  # fewer frames than the header said
                break
            n_read += len(data)
            mono = data.mean(axis=1)
            finite = finite and bool(np.all(np.isfinite(mono)))
            peak = max(peak, float(np.max(np.abs(mono)))) if finite else peak
            put(mono if stream is None else stream.resample_chunk(mono))
    if stream is not None:
        put(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    peak = peak if finite else float("nan")
    return audio[: math.ceil(n_read * SAMPLE_RATE / file_rate)], n_read, peak


def decode_recording(data: bytes, name: str = "recording",
                     expected_seconds: float | None = None) -> np.ndarray:
    """A browser's recording (WebM/Opus from Chrome or Firefox, MP4 from Safari: whatever ffmpeg
    reads) as float32 mono at SAMPLE_RATE [N], at its true level. soundfile reads none of these,
    so ffmpeg (Colab has it) decodes from a pipe; at most MAX_RECORD_SECONDS are decoded, since
    a few compressed bytes can stand for hours. Raises AudioInputError naming `name` when ffmpeg
    is missing, the data is over MAX_UPLOAD_BYTES, or it is no audio (with ffmpeg's reason);
    and when it is damaged or cut short, rather than keep part of it: ffmpeg met an error while
    decoding (exit status 0 or not), or the audio falls more than RECORDING_SHORTFALL_SECONDS
    short of the length the file declares or of `expected_seconds` (how long it was recorded)."""
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioInputError(name, "cannot be decoded: ffmpeg is not installed (Colab has it; "
                                    "elsewhere install it, e.g. apt-get install ffmpeg)")
    size = memoryview(data).nbytes
    if size > MAX_UPLOAD_BYTES:
        raise AudioInputError(name, f"{size} bytes, more than MAX_UPLOAD_BYTES={MAX_UPLOAD_BYTES}")
    # level+info: the input's declared duration, and every message tagged with its level
    result = subprocess.run(
        [ffmpeg, "-nostdin", "-nostats", "-hide_banner", "-loglevel", "level+info", "-i",
         "pipe:0", "-t", str(MAX_RECORD_SECONDS), "-ac", "1", "-ar", str(SAMPLE_RATE),
         "-f", "f32le", "pipe:1"], input=bytes(data), capture_output=True)
    log = result.stderr.decode(errors="replace").splitlines()
    errors = [match.group(1) for match in map(FFMPEG_ERROR.search, log) if match]
    if result.returncode != 0 or (errors and not result.stdout):
        said = errors[-1] if errors else f"exit status {result.returncode}"
        raise AudioInputError(name, f"not a decodable recording (ffmpeg: {said})")
    if not result.stdout:
        raise AudioInputError(name, "contains no audio samples")
    audio = finite_audio(np.frombuffer(result.stdout, dtype="<f4").astype(np.float32), name=name)
    decoded = len(audio) / SAMPLE_RATE
    if errors:
        raise AudioInputError(name, f"is damaged or cut short: ffmpeg decoded {decoded:.2f} s "
                                    f"and met {len(errors)} error(s), the first: {errors[0]}; "
                                    "record it again")
    declared = next((match for match in map(FFMPEG_DURATION.search, log) if match), None)
    if declared is not None:  # "Duration: N/A" (a live WebM, as Chrome's may be) matches not
        declared = 3600 * int(declared[1]) + 60 * int(declared[2]) + float(declared[3])
    for said, seconds in (("the file declares", declared), ("it was recorded for",
                                                            expected_seconds)):
        if (seconds is not None
                and decoded < min(seconds, MAX_RECORD_SECONDS) - RECORDING_SHORTFALL_SECONDS):
            raise AudioInputError(name, f"is cut short: {decoded:.2f} s of audio, but "
                                        f"{said} {seconds:.2f} s; record it again")
    return audio


def finite_audio(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """float32 audio [N], its level untouched. Every sample played or written passes here.
    Raises ValueError naming `name` when any is NaN or infinite (as float32): a player would
    fail on it and a wav writer would turn it into a constant full-scale value."""
    audio = np.asarray(audio, dtype=np.float32)
    bad = ~np.isfinite(audio)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: {int(bad.sum())} of {audio.size} samples are NaN or infinite "
                         f"(the first at sample {first}); "
                         "non-finite audio is never played or written")
    return audio


def finish_render(audio: np.ndarray) -> np.ndarray:
    """A render ready to play: EDGE_FADE_SECONDS fades at both ends (no click where it starts
    or stops), its level untouched: float32 [N]. A DDSP render matches a spectrum, not phases,
    so it may peak above 1.0: write_wav keeps that, players turn a whole table down together.
    Non-finite samples: ValueError."""
    audio = np.asarray(audio, dtype=np.float64).copy()
    fade = min(int(EDGE_FADE_SECONDS * SAMPLE_RATE), len(audio) // 2)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    audio[:fade] *= ramp
    audio[len(audio) - fade:] *= ramp[::-1]
    return finite_audio(audio, name="render")


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, name: str = "audio") -> bytes:
    """Float audio [N] as the bytes of a 32-bit float wav. Float, not 16-bit: a render that
    peaks above 1.0 keeps its true level instead of being scaled down or clipped. Audio with a
    NaN or infinite sample raises ValueError naming `name`."""
    import soundfile as sf

    wav = io.BytesIO()  # libsndfile hides why a write failed: files are written by Python
    sf.write(wav, finite_audio(audio, name=name), sample_rate, subtype="FLOAT", format="WAV")
    return wav.getvalue()


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float audio [N] as a 32-bit float wav (wav_bytes), atomically. Audio with a NaN or
    infinite sample raises ValueError naming `path`, and nothing is written."""
    data = wav_bytes(audio, sample_rate, name=str(path))
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def read_wav(path) -> np.ndarray:
    """A wav that write_wav wrote, as float32 [N] at its true level (no rescaling, unlike
    load_audio, which takes anyone's file to the model's input range)."""
    import soundfile as sf

    return sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1)
