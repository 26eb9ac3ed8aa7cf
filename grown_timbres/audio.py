"""Audio in and out: reading any sound file as mono float32 at SAMPLE_RATE, finishing a render,
writing 16-bit wav, and writing any file atomically."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .config import FFT_SIZES, SAMPLE_RATE

MIN_AUDIO_SAMPLES = max(FFT_SIZES)  # shorter input cannot fill the largest loss frame
MAX_AUDIO_SECONDS = 30.0  # longer files are cut here, with a warning, to bound memory
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a file is "silent"
EDGE_FADE_SECONDS = 0.01  # at the very start and end of a render


class AudioInputError(ValueError):
    """The one error for unusable input. `str(err)` is "<path>: <reason>"."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable: worker processes of load_multiple_files return these
        return type(self), (self.path, self.reason)


def load_audio(path, max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Read any soundfile-readable file as float32 mono at SAMPLE_RATE: [n_samples] in [-1, 1].

    Stereo is averaged, other rates resampled (soxr), samples beyond +/-1 rescaled with a
    warning, files longer than `max_seconds` cut with a warning (only that much is read).
    Raises AudioInputError for missing, empty, unreadable, non-finite, silent or too-short input.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioInputError(path, "file not found")
    if not path.is_file():
        raise AudioInputError(path, "not a regular file (a folder?)")
    if path.stat().st_size == 0:
        raise AudioInputError(path, "file is empty (0 bytes)")
    try:  # libsndfile reports a file it may not open as "System error"
        open(path, "rb").close()
    except OSError as err:
        raise AudioInputError(path, f"cannot be read ({err.strerror or err})") from None
    try:
        info = sf.info(str(path))
        max_frames = int(max_seconds * info.samplerate)
        data, file_rate = sf.read(str(path), frames=min(info.frames, max_frames),
                                  dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile reports every unreadable format its own way
        raise AudioInputError(path, f"not a readable audio file ({err})") from None
    if info.frames > max_frames:
        warnings.warn(f"{path}: {info.frames / info.samplerate:.1f} s long; "
                      f"only the first {max_seconds:.0f} s are used", stacklevel=2)
    if data.size == 0:
        raise AudioInputError(path, "contains no audio samples")
    audio = data.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise AudioInputError(path, "contains NaN or infinite samples")
    peak = float(np.max(np.abs(audio)))
    if peak < SILENCE_PEAK:
        raise AudioInputError(path, f"is silent (peak {20 * np.log10(peak + 1e-12):.0f} dBFS)")
    if peak > 1.0:
        warnings.warn(f"{path}: samples reach {peak:.2f} (beyond full scale); rescaled to 1.0",
                      stacklevel=2)
        audio = audio / peak
    if file_rate != SAMPLE_RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=file_rate, target_sr=SAMPLE_RATE,
                                 res_type="soxr_hq")
    if len(audio) < MIN_AUDIO_SAMPLES:
        raise AudioInputError(path, f"too short: {1000 * len(audio) / SAMPLE_RATE:.0f} ms, "
                                    f"needs at least {1000 * MIN_AUDIO_SAMPLES / SAMPLE_RATE:.0f} ms")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def fit_to_full_scale(audio: np.ndarray, peak: float = 0.99,
                      name: str = "audio") -> np.ndarray:
    """float32 audio [N] scaled down to `peak` if it would clip, untouched otherwise. A DDSP
    resynthesis matches the target's spectrum, not its phases, so its waveform can peak higher
    than the target's: scaling keeps the spectrum, clipping would add broadband distortion.

    Every sample played or written passes here. Raises ValueError naming `name` when any is NaN
    or infinite (as float32): scaling would turn the whole clip into NaN, and a wav writer
    into a constant full-scale value."""
    audio = np.asarray(audio, dtype=np.float32)
    bad = ~np.isfinite(audio)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: {int(bad.sum())} of {audio.size} samples are NaN or infinite "
                         f"(the first at sample {first}); "
                         "non-finite audio is never played or written")
    loudest = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio * (peak / loudest) if loudest > 1.0 else audio


def finish_render(audio: np.ndarray) -> np.ndarray:
    """A render ready to play: EDGE_FADE_SECONDS fades at both ends (no click where it starts
    or stops), scaled down if it would clip: float32 [N]. Non-finite samples: ValueError."""
    audio = np.asarray(audio, dtype=np.float64).copy()
    fade = min(int(EDGE_FADE_SECONDS * SAMPLE_RATE), len(audio) // 2)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    audio[:fade] *= ramp
    audio[len(audio) - fade:] *= ramp[::-1]
    return fit_to_full_scale(audio.astype(np.float32), name="render")


def atomic_write(path, write) -> Path:
    """Call write(tmp_path), then move tmp_path over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float audio [N] as 16-bit PCM wav, atomically (scaled down if it would clip).
    Audio with a NaN or infinite sample raises ValueError naming `path`, and nothing is
    written."""
    import soundfile as sf

    audio = fit_to_full_scale(audio, name=str(path))
    return atomic_write(path, lambda tmp: sf.write(tmp, audio, sample_rate, subtype="PCM_16",
                                                   format="WAV"))
