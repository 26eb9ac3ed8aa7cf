"""Audio in and out: reading any sound file as mono float32 at SAMPLE_RATE, finishing a render,
writing 16-bit wav, and writing any file atomically."""
from __future__ import annotations

import io
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .config import FFT_SIZES, SAMPLE_RATE

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

MIN_AUDIO_SAMPLES = max(FFT_SIZES)  # shorter input cannot fill the largest loss frame
MAX_AUDIO_SECONDS = 30.0  # longer files are cut here, with a warning, to bound memory
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a file is "silent"
EDGE_FADE_SECONDS = 0.01  # at the very start and end of a render
TEMPORARY_SUFFIX = ".tmp"  # atomic_write's temporary files: .<name>.<random><suffix>


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
    if not path.is_file():
        raise AudioInputError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioInputError(path, "file is empty (0 bytes)")
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


def fit_to_full_scale(audio: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """float32 audio [N] scaled down to `peak` if it would clip, untouched otherwise. A DDSP
    resynthesis matches the target's spectrum, not its phases, so its waveform can peak higher
    than the target's: scaling keeps the spectrum, clipping would add broadband distortion."""
    audio = np.asarray(audio, dtype=np.float32)
    loudest = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio * (peak / loudest) if loudest > 1.0 else audio


def finish_render(audio: np.ndarray) -> np.ndarray:
    """A render ready to play: EDGE_FADE_SECONDS fades at both ends (no click where it starts
    or stops), scaled down if it would clip: float32 [N]."""
    audio = np.asarray(audio, dtype=np.float64).copy()
    fade = min(int(EDGE_FADE_SECONDS * SAMPLE_RATE), len(audio) // 2)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    audio[:fade] *= ramp
    audio[len(audio) - fade:] *= ramp[::-1]
    return fit_to_full_scale(audio.astype(np.float32))


def not_written(path, err: BaseException) -> OSError | None:
    """The OSError "<path>: not written (<reason>)" for a write that failed on the file system,
    or None if `err` is no I/O failure. Some writers hide the system's reason behind their own
    error (torch's "enforce fail ... unexpected pos"): it is looked up in the error's chain."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    return OSError(err.errno, f"{path}: not written ({err.strerror or err})")


def lock(file, wait: bool) -> bool:
    """An exclusive lock on an open file, held until it is closed: False when another open
    file holds one, or the file system (or Windows) has no such locks."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def remove_abandoned_temporaries(path: Path) -> None:
    """Delete the temporary files of `path` that a killed save left behind. A live save holds a
    lock on its temporary file (atomic_write), so only abandoned ones can be locked here; on
    Windows a file still open elsewhere refuses to be deleted instead. On a file system without
    locks nothing is deleted: a save in progress cannot be told from an abandoned one."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]+{re.escape(TEMPORARY_SUFFIX)}")
    for tmp in path.parent.iterdir():
        if pattern.fullmatch(tmp.name):
            try:
                with open(tmp, "rb") as file:
                    if fcntl is None or lock(file, wait=False):
                        tmp.unlink()
            except OSError:  # in use on Windows, or already gone
                pass


def atomic_write(path, write) -> Path:
    """Call write(tmp_path), then move tmp_path over `path`: readers never see half a file.

    `write` must write through Python's file objects (or through a library that passes the
    system's error on), so that a full disk surfaces as an OSError. Any failure removes the
    temporary file and leaves `path` as it was; a file-system failure is raised as OSError
    "<path>: not written (<reason>)". Temporary files of `path` that a killed save left behind
    are removed first."""
    path = Path(path)
    tmp = held = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temporaries(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                   suffix=TEMPORARY_SUFFIX)
        held = open(fd, "rb")
        if not lock(held, wait=True):  # locked until the file is in place: "a save is running"
            held.close()  # Windows renames no file that is open anywhere
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        failure = not_written(path, err) if isinstance(err, Exception) else None
        if failure is None:  # an interrupt, or a failure that is not the file system's
            raise
        raise failure from err
    finally:
        if held is not None:
            held.close()
    return path


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float audio [N] as 16-bit PCM wav, atomically (scaled down if it would clip)."""
    import soundfile as sf

    wav = io.BytesIO()  # libsndfile hides why a write failed: the file itself is written by Python
    sf.write(wav, fit_to_full_scale(audio), sample_rate, subtype="PCM_16", format="WAV")
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(wav.getvalue()))
