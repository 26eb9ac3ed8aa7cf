"""Features: pYIN f0, A-weighted loudness and MFCCs per frame, computed FEATURE_CHUNK_SECONDS at
a time and cached on disk; many files' features as one batch (batching.collate: training
examples and listening excerpts).

    audio [N] -> f0 [T] Hz, voiced [T], loudness [T] dB, mfcc [T, N_MFCC]   (N = T * HOP_LENGTH)
    files -> batching.collate(features of the usable files, errors {path: reason})
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .audio import MAX_AUDIO_SECONDS, MIN_AUDIO_SAMPLES, AudioInputError, load_audio
from .files import atomic_write
from .batching import collate
from .config import FRAME_RATE, HOP_LENGTH, LOUDNESS_FLOOR_DB, LOUDNESS_MAX_DB, N_MFCC, SAMPLE_RATE
from .feature_cache import OldFormatEntry, entry_path, file_digest, read_entry, write_entry
from .numba_cache import prepare_kernels
from .worker_pool import interrupted, run_jobs

F0_MIN_HZ = 65.41  # C2
F0_MAX_HZ = 2093.0  # C7
PYIN_FRAME_LENGTH = 2048
VOICED_PROB_MIN = 0.1  # pYIN's voicing: bundled tones >= 0.85 when voiced, white noise <= 0.01
LOUDNESS_N_FFT = 2048
MFCC_N_FFT = 1024
MFCC_N_MELS = 64
MFCC_MAX_ABS = 1e4  # MFCCs of audio within [-1, 1] stay within about +/-1200 (silence: -800)

# Features are computed FEATURE_CHUNK_SECONDS of frames at a time, each chunk from its audio
# with FEATURE_CONTEXT_SECONDS more on either side, so a long file's frame matrices stay small.
# The context covers half of every analysis window (PYIN_FRAME_LENGTH, LOUDNESS_N_FFT, a few
# frames), which makes the STFT frames exact; the rest is for pYIN's Viterbi decoding, which
# sees one segment: with context, its path through the chunk's own frames is the whole file's.
FEATURE_CHUNK_SECONDS = 30.0
FEATURE_CONTEXT_SECONDS = 2.0

FEATURE_SETTINGS = {  # what the features depend on besides the file's bytes: the cache key
    "version": 3,  # 2: each entry holds these settings; 3: long files computed in chunks
    "sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH,
    "max_audio_seconds": MAX_AUDIO_SECONDS, "f0_range_hz": (F0_MIN_HZ, F0_MAX_HZ),
    "pyin_frame_length": PYIN_FRAME_LENGTH, "loudness_n_fft": LOUDNESS_N_FFT,
    "loudness_floor_db": LOUDNESS_FLOOR_DB, "n_mfcc": N_MFCC, "mfcc_n_fft": MFCC_N_FFT,
    "mfcc_n_mels": MFCC_N_MELS, "chunk_seconds": FEATURE_CHUNK_SECONDS,
    "context_seconds": FEATURE_CONTEXT_SECONDS,
}


def hz_to_midi(f0):
    """Hz -> MIDI note number (float); works on numpy arrays and torch tensors."""
    log2 = torch.log2 if isinstance(f0, torch.Tensor) else np.log2
    return 12.0 * log2(f0 / 440.0) + 69.0


def in_chunks(frame_features, audio: np.ndarray, chunk_seconds: float | None = None) -> list:
    """Per-frame features of a signal, a chunk of frames at a time: frame_features(segment) ->
    arrays [..., 1 + len(segment) // HOP_LENGTH] (librosa's centred frames, the last one at the
    segment's end), run on each chunk's audio with its context -> the same arrays
    [..., 1 + len(audio) // HOP_LENGTH], each chunk's own frames end to end. Chunks are equal,
    at most `chunk_seconds` (default FEATURE_CHUNK_SECONDS); a signal no longer than one chunk
    is a single call on all of it."""
    chunk_seconds = FEATURE_CHUNK_SECONDS if chunk_seconds is None else chunk_seconds
    n_frames = 1 + len(audio) // HOP_LENGTH
    n_chunks = max(1, math.ceil(n_frames / (chunk_seconds * FRAME_RATE)))
    context = math.ceil(FEATURE_CONTEXT_SECONDS * FRAME_RATE)
    bounds = np.linspace(0, n_frames, n_chunks + 1).round().astype(int)
    parts = []
    for first, end in zip(bounds[:-1], bounds[1:]):
        start = max(first - context, 0)  # frame `start` is centred on the segment's sample 0
        segment = audio[start * HOP_LENGTH: (end + context) * HOP_LENGTH]
        parts.append([x[..., first - start: end - start] for x in frame_features(segment)])
    return [np.concatenate(arrays, axis=-1) for arrays in zip(*parts)]


def pyin_frames(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pYIN on a whole signal: audio [N] -> (f0 [1 + N // HOP_LENGTH] Hz, NaN where unvoiced;
    voiced [same] bool: pYIN's voicing with probability >= VOICED_PROB_MIN)."""
    import librosa

    f0, voiced, voiced_prob = librosa.pyin(audio, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ,
                                           sr=SAMPLE_RATE, frame_length=PYIN_FRAME_LENGTH,
                                           hop_length=HOP_LENGTH)
    return f0, voiced & np.isfinite(f0) & (voiced_prob >= VOICED_PROB_MIN)


def estimate_f0(audio: np.ndarray, path="<audio>",
                chunk_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """pYIN f0 per frame: audio [N] -> (f0 [N // HOP_LENGTH] Hz, voiced [same] bool), computed
    in chunks (in_chunks).

    Unvoiced frames are filled by linear interpolation between voiced ones of the whole signal
    (held at the edges), so f0 is never NaN. Raises AudioInputError when no frame is voiced.
    """
    n_frames = len(audio) // HOP_LENGTH
    f0, voiced = (x[:n_frames] for x in in_chunks(pyin_frames, audio, chunk_seconds))
    if not voiced.any():
        raise AudioInputError(path, f"no pitched frames (pYIN found no pitch between "
                                    f"{F0_MIN_HZ:.0f} and {F0_MAX_HZ:.0f} Hz)")
    frames = np.arange(n_frames)
    filled = np.interp(frames, frames[voiced], f0[voiced])
    return filled.astype(np.float32), voiced


def a_weighted_power(n_fft: int = LOUDNESS_N_FFT) -> np.ndarray:
    """Per-bin weights [n_fft // 2 + 1] turning |rfft|^2 of a Hann frame into mean-square power,
    A-weighted. Bins at DC and Nyquist count once, the others twice (one-sided spectrum)."""
    import librosa

    freqs = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    with np.errstate(divide="ignore"):  # log10(0) at DC: floored to -80 dB by librosa
        a_weight = 10.0 ** (librosa.A_weighting(freqs) / 10.0)
    one_sided = np.full(len(freqs), 2.0)
    one_sided[[0, -1]] = 1.0
    window = np.hanning(n_fft + 1)[:-1]
    return a_weight * one_sided / (n_fft * np.sum(window ** 2))


def compute_loudness(audio: np.ndarray, n_frames: int | None = None,
                     chunk_seconds: float | None = None) -> np.ndarray:
    """A-weighted loudness per frame: audio [N] -> [N // HOP_LENGTH] dB, floored at -80,
    computed in chunks (in_chunks).

    Power is averaged across frequency before taking dB, so a gain of g dB shifts loudness by
    exactly g dB (above the floor). A full-scale 1 kHz sine reads -3 dB.
    """
    import librosa

    weights = a_weighted_power()

    def power(segment):
        spectrum = librosa.stft(segment, n_fft=LOUDNESS_N_FFT, hop_length=HOP_LENGTH,
                                window="hann", center=True, pad_mode="constant")
        return [weights @ (np.abs(spectrum) ** 2)]

    n_frames = len(audio) // HOP_LENGTH if n_frames is None else n_frames
    loudness = 10.0 * np.log10(np.maximum(in_chunks(power, audio, chunk_seconds)[0], 1e-20))
    return np.maximum(loudness, LOUDNESS_FLOOR_DB)[:n_frames].astype(np.float32)


def compute_mfcc(audio: np.ndarray, n_frames: int | None = None,
                 chunk_seconds: float | None = None) -> np.ndarray:
    """MFCC per frame: audio [N] -> [N // HOP_LENGTH, N_MFCC]: librosa.feature.mfcc's, with
    the mel power spectrogram computed in chunks (in_chunks). Its dB are floored 80 dB below
    the loudest frame of the whole signal, so the conversion to dB waits for every chunk."""
    import librosa

    def mel_power(segment):
        return [librosa.feature.melspectrogram(y=segment, sr=SAMPLE_RATE, n_fft=MFCC_N_FFT,
                                               hop_length=HOP_LENGTH, n_mels=MFCC_N_MELS)]

    n_frames = len(audio) // HOP_LENGTH if n_frames is None else n_frames
    mel_db = librosa.power_to_db(in_chunks(mel_power, audio, chunk_seconds)[0])
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=N_MFCC)
    return mfcc.T[:n_frames].astype(np.float32)


def _settings_json() -> str:
    return json.dumps(FEATURE_SETTINGS, sort_keys=True)


def feature_cache_path(path, cache_dir) -> Path | None:
    """Where a file's features are cached: named by a digest of FEATURE_SETTINGS and its bytes,
    so an edited file or a changed setting misses, and a renamed or re-uploaded copy hits. None
    without `cache_dir` or for anything but a readable regular file (load_audio says why)."""
    digest = file_digest(path, _settings_json()) if cache_dir else None
    return None if digest is None else entry_path(cache_dir, digest)


def read_cache_entry(cached, digest: str) -> dict:
    """The arrays of a cache entry (FEATURE_KEYS): feature_cache.read_entry's, made for the
    audio file of this digest with today's settings, and their values finite and in range.
    Raises OldFormatEntry, ValueError (or zipfile's, json's or numpy's own errors) saying what
    is wrong."""
    arrays = read_entry(cached, digest, _settings_json())
    ranges = {"audio": (-1.0, 1.0), "voiced": (False, True),
              "f0": (np.float32(F0_MIN_HZ), np.float32(F0_MAX_HZ)),  # pYIN's, cast
              "loudness": (LOUDNESS_FLOOR_DB, LOUDNESS_MAX_DB),
              "mfcc": (-MFCC_MAX_ABS, MFCC_MAX_ABS)}
    for key, (low, high) in ranges.items():
        values = arrays[key]
        n_bad = np.count_nonzero(~(np.isfinite(values) & (values >= low) & (values <= high)))
        if n_bad:
            raise ValueError(f"{key} has {n_bad} values that are NaN, infinite or outside "
                             f"[{low:g}, {high:g}]")
    if not arrays["voiced"].any():
        raise ValueError("has no voiced frame")
    return arrays


def cached_features(path, cache_dir) -> tuple[Path | None, str | None, dict | None]:
    """(entry path, digest, its arrays, or None when there is no usable entry) for
    extract_features; an unusable entry is a warning, an earlier version's one a warning that
    names the cache folder only (it is given once per batch)."""
    digest = file_digest(path, _settings_json()) if cache_dir else None
    if digest is None:
        return None, None, None
    cached = entry_path(cache_dir, digest)
    try:
        return cached, digest, read_cache_entry(cached, digest)
    except (FileNotFoundError, NotADirectoryError):
        pass  # not cached yet; a cache folder that is a file is reported on writing
    except OldFormatEntry:
        warnings.warn(f"feature cache {cached.parent} holds entries of an earlier version; "
                      "they are recomputed and replaced", stacklevel=3)
    except Exception as err:  # a damaged entry fails in numpy's, zipfile's or our words
        warnings.warn(f"{path}: feature cache entry {cached} is unusable ({type(err).__name__}"
                      f": {err}); recomputing and replacing it", stacklevel=3)
    return cached, digest, None


def extract_features(path, cache_dir=None) -> dict:
    """One file's features (numpy): audio [N], f0 [T] Hz, voiced [T], loudness [T] dB,
    mfcc [T, N_MFCC], with N == T * HOP_LENGTH exactly (the last partial frame is dropped).

    With `cache_dir`, features are read from and written to `<cache_dir>/<digest>.npz`; a hit
    needs no librosa (a GPU box can train from carried caches), and its audio must be the
    file's own. An entry that fails read_cache_entry or holds other audio is recomputed and
    replaced, a cache that cannot be written is skipped, each with a warning: only the audio
    file itself makes this raise."""
    cached, digest, stored = cached_features(path, cache_dir)
    audio = load_audio(path)
    n_frames = len(audio) // HOP_LENGTH
    audio = audio[: n_frames * HOP_LENGTH]
    if stored is not None:  # within -100 dB: carried caches were decoded by another machine
        if stored["audio"].shape == audio.shape and np.allclose(stored["audio"], audio, 0, 1e-5):
            return {"path": str(path), **stored}
        warnings.warn(f"{path}: feature cache entry {cached} holds other audio than this file "
                      "(a forged or altered entry); recomputing and replacing it", stacklevel=2)
    compile_feature_kernels()  # once per process, under the lock that all processes share
    f0, voiced = estimate_f0(audio, path)
    features = {"path": str(path), "audio": audio, "f0": f0, "voiced": voiced,
                "loudness": compute_loudness(audio, n_frames),
                "mfcc": compute_mfcc(audio, n_frames)}
    try:  # a cache that cannot be written (read-only, full, a file) only makes re-runs slower
        if cached is not None:
            atomic_write(cached, lambda tmp: write_entry(tmp, digest, _settings_json(), features))
    except OSError as err:  # the system's reason, the same for every entry: one warning a batch
        reason = os.strerror(err.errno) if err.errno else str(err)
        warnings.warn(f"feature cache {cached.parent} cannot be written ({reason}); features "
                      "are computed without it", stacklevel=2)
    return features


_FEATURE_KERNELS_COMPILED = False


def run_feature_pipeline() -> None:
    """The feature pipeline once, on a short sine: librosa's numba kernels are compiled, or
    loaded from numba's cache (the probe of numba_cache.prepare_kernels runs this too)."""
    seconds = np.arange(4 * MIN_AUDIO_SAMPLES) / SAMPLE_RATE
    sine = (0.5 * np.sin(2 * np.pi * 220.0 * seconds)).astype(np.float32)
    estimate_f0(sine)
    compute_loudness(sine)
    compute_mfcc(sine)


def compile_feature_kernels() -> None:
    """Once per process: run_feature_pipeline here, under numba_cache.prepare_kernels (one
    process compiles at a time, a damaged cache is found by a probe and rebuilt), before
    workers fork and inherit the kernels."""
    global _FEATURE_KERNELS_COMPILED
    if not _FEATURE_KERNELS_COMPILED:
        prepare_kernels(run_feature_pipeline, "from grown_timbres.features import "
                                              "run_feature_pipeline; run_feature_pipeline()")
        _FEATURE_KERNELS_COMPILED = True


def _features_or_error(path, cache_dir) -> tuple:
    """extract_features for a worker: (features or the AudioInputError, its warnings as
    (category, message)); a worker's own warnings would reach its stderr, not the caller."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = extract_features(path, cache_dir)
        except AudioInputError as err:
            result = err
    return result, [(w.category, str(w.message)) for w in caught]


def load_multiple_files(file_paths, progress: bool = True, cache_dir=None,
                        n_workers: int | None = None) -> dict:
    """Features of many files as one batch (batching.collate: the keys).

    A file that fails is skipped with a warning and listed in `errors` {path: reason}.
    Raises AudioInputError only when no file is usable. `cache_dir`: see extract_features.
    Each distinct warning of the files is given once, here, also from workers. `n_workers` > 1
    extracts in that many processes (default: one per core, at most one per file not yet
    cached); 1 extracts here, in order. The stop button (KeyboardInterrupt) stops extraction
    at once, workers and all; it is raised again saying how many files' features the cache
    keeps."""
    from tqdm.auto import tqdm

    file_paths = [str(p) for p in file_paths]
    entries = [feature_cache_path(p, cache_dir) for p in file_paths]  # None: no cache, no file
    uncached = [entry for entry in entries if entry is None or not entry.is_file()]
    # one process per core, at most one per file to extract: cache hits need no pool
    n_workers = min(n_workers or os.cpu_count() or 1, max(len(uncached), 1))
    bar = tqdm(total=len(file_paths), desc="features", disable=not progress)
    try:
        if uncached and not _FEATURE_KERNELS_COMPILED:  # once per process, here, not per worker
            bar.set_description("features: compiling pYIN (slow on a new environment's first run)")
            compile_feature_kernels()
            bar.set_description("features")
        # the workers use numpy, soundfile and librosa only, never torch's OpenMP pool
        results = run_jobs(_features_or_error, [(p, cache_dir) for p in file_paths], n_workers,
                           bar.update)
    except BaseException as err:  # numba's SystemError too, when the stop came inside it
        if interrupted(err):
            raise KeyboardInterrupt(stopped_message(entries, cache_dir)) from None
        raise
    finally:
        bar.close()
    for message, category in {m: c for _, caught in results for c, m in caught}.items():
        warnings.warn(message, category, stacklevel=2)  # each distinct warning once
    features, errors = [], {}
    for path, (result, _) in zip(file_paths, results):
        if isinstance(result, AudioInputError):
            errors[path] = result.reason
            warnings.warn(str(result), stacklevel=2)
        else:
            features.append(result)
    if not features:
        detail = "; ".join(f"{Path(p).name}: {r}" for p, r in errors.items()) or "no files given"
        raise AudioInputError(", ".join(file_paths) or "<none>", f"no usable audio file ({detail})")
    return collate(features, errors)


def stopped_message(entries, cache_dir) -> str:
    """What a stop of load_multiple_files keeps: the files whose entries (feature_cache_path
    of each file, looked up before the stop) are in the cache now."""
    if not cache_dir:
        return "feature extraction stopped; without a cache folder no features are kept"
    kept = sum(entry is not None and entry.is_file() for entry in entries)
    return (f"feature extraction stopped; the features of {kept} of {len(entries)} files are "
            f"kept in the cache {cache_dir} and are not computed again")
