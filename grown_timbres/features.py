"""Features: one audio file's f0, loudness and MFCCs (analysis.py) as a Features, cached on
disk; many files' features at once, in worker processes.

    path -> Features: audio [N], f0 [T] Hz, voiced [T], loudness [T] dB, mfcc [T, N_MFCC]
            (N = T * hop_length)
    paths -> ([Features of the usable files], errors {path: reason})
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis import (F0_MAX_HZ, F0_MIN_HZ, FEATURE_CHUNK_SECONDS, FEATURE_CONTEXT_SECONDS,
                       LOUDNESS_N_FFT, MFCC_N_FFT, MFCC_N_MELS, PYIN_FRAME_LENGTH,
                       compute_loudness, compute_mfcc, estimate_f0)
from .audio import MAX_AUDIO_SECONDS, MIN_AUDIO_SAMPLES, AudioInputError, load_audio
from .files import atomic_write
from .config import (HOP_LENGTH, LOUDNESS_FLOOR_DB, LOUDNESS_MAX_DB, MFCC_MAX_ABS, N_MFCC,
                     SAMPLE_RATE)
from .feature_cache import OldFormatEntry, entry_path, file_digest, read_entry, write_entry
from .numba_cache import prepare_kernels
from .old_keys import OldKeys
from .worker_pool import interrupted, run_jobs

FEATURE_SETTINGS = {  # what the features depend on besides the file's bytes: the cache key
    "version": 3,  # 2: each entry holds these settings; 3: long files computed in chunks
    "sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH,  # the hop: the data's own (Features)
    "max_audio_seconds": MAX_AUDIO_SECONDS, "f0_range_hz": (F0_MIN_HZ, F0_MAX_HZ),
    "pyin_frame_length": PYIN_FRAME_LENGTH, "loudness_n_fft": LOUDNESS_N_FFT,
    "loudness_floor_db": LOUDNESS_FLOOR_DB, "n_mfcc": N_MFCC, "mfcc_n_fft": MFCC_N_FFT,
    "mfcc_n_mels": MFCC_N_MELS, "chunk_seconds": FEATURE_CHUNK_SECONDS,
    "context_seconds": FEATURE_CONTEXT_SECONDS,
}


@dataclass(frozen=True, eq=False)
class Features(OldKeys):
    """One audio file's features (numpy), N == T * hop_length exactly (the last partial frame
    is dropped): audio [N] float32 at sample_rate, f0 [T] Hz float32 (unvoiced frames filled),
    voiced [T] bool, loudness [T] dB float32, mfcc [T, N_MFCC] float32. Reads as the dict it
    replaced too (features["f0"]; OldKeys)."""

    path: str
    audio: np.ndarray
    f0: np.ndarray
    voiced: np.ndarray
    loudness: np.ndarray
    mfcc: np.ndarray
    sample_rate: int
    hop_length: int
    OLD_KEYS = {name: name for name in ("path", "audio", "f0", "voiced", "loudness", "mfcc")}

    @classmethod
    def from_mapping(cls, features) -> Features:
        """A Features as it is, or one from a mapping of its fields (a dict of the keys
        extract_features returned before Features: path, audio, f0, voiced, loudness, mfcc;
        sample_rate and hop_length, when it lacks them, config's, the only ones then)."""
        if isinstance(features, cls):
            return features
        return cls(**{name: features[name] for name in cls.OLD_KEYS},
                   sample_rate=features.get("sample_rate", SAMPLE_RATE),
                   hop_length=features.get("hop_length", HOP_LENGTH))


def settings_json(hop_length: int) -> str:
    """FEATURE_SETTINGS with the data's hop, as the cache key's text."""
    return json.dumps({**FEATURE_SETTINGS, "hop_length": hop_length}, sort_keys=True)


def feature_cache_path(path, cache_dir, hop_length: int = HOP_LENGTH) -> Path | None:
    """Where a file's features are cached: named by a digest of FEATURE_SETTINGS and its bytes,
    so an edited file or a changed setting misses, and a renamed or re-uploaded copy hits. None
    without `cache_dir` or for anything but a readable regular file (load_audio says why)."""
    digest = file_digest(path, settings_json(hop_length)) if cache_dir else None
    return None if digest is None else entry_path(cache_dir, digest)


def read_cache_entry(cached, digest: str, hop_length: int) -> dict:
    """The arrays of a cache entry (FEATURE_KEYS): feature_cache.read_entry's, made for the
    audio file of this digest with today's settings, and their values finite and in range.
    Raises OldFormatEntry, ValueError (or zipfile's, json's or numpy's own errors) saying what
    is wrong."""
    arrays = read_entry(cached, digest, settings_json(hop_length), hop_length)
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


def cached_features(path, cache_dir,
                    hop_length: int) -> tuple[Path | None, str | None, dict | None]:
    """(entry path, digest, its arrays, or None when there is no usable entry) for
    extract_features; an unusable entry is a warning, an earlier version's one a warning that
    names the cache folder only (it is given once per batch)."""
    digest = file_digest(path, settings_json(hop_length)) if cache_dir else None
    if digest is None:
        return None, None, None
    cached = entry_path(cache_dir, digest)
    try:
        return cached, digest, read_cache_entry(cached, digest, hop_length)
    except (FileNotFoundError, NotADirectoryError):
        pass  # not cached yet; a cache folder that is a file is reported on writing
    except OldFormatEntry:
        warnings.warn(f"feature cache {cached.parent} holds entries of an earlier version; "
                      "they are recomputed and replaced", stacklevel=3)
    except Exception as err:  # a damaged entry fails in numpy's, zipfile's or our words
        warnings.warn(f"{path}: feature cache entry {cached} is unusable ({type(err).__name__}"
                      f": {err}); recomputing and replacing it", stacklevel=3)
    return cached, digest, None


def extract_features(path, cache_dir=None, hop_length: int = HOP_LENGTH) -> Features:
    """One file's Features, frames of `hop_length` samples (config's unless told).

    With `cache_dir`, features are read from and written to `<cache_dir>/<digest>.npz`; a hit
    needs no librosa (a GPU box can train from carried caches), and its audio must be the
    file's own. An entry that fails read_cache_entry or holds other audio is recomputed and
    replaced, a cache that cannot be written is skipped, each with a warning: only the audio
    file itself makes this raise."""
    cached, digest, stored = cached_features(path, cache_dir, hop_length)
    audio = load_audio(path)
    n_frames = len(audio) // hop_length
    audio = audio[: n_frames * hop_length]
    framing = {"path": str(path), "sample_rate": SAMPLE_RATE, "hop_length": hop_length}
    if stored is not None:  # within -100 dB: carried caches were decoded by another machine
        if stored["audio"].shape == audio.shape and np.allclose(stored["audio"], audio, 0, 1e-5):
            return Features(**framing, **stored)
        warnings.warn(f"{path}: feature cache entry {cached} holds other audio than this file "
                      "(a forged or altered entry); recomputing and replacing it", stacklevel=2)
    compile_feature_kernels()  # once per process, under the lock that all processes share
    f0, voiced = estimate_f0(audio, path, hop_length=hop_length)
    features = Features(**framing, audio=audio, f0=f0, voiced=voiced,
                        loudness=compute_loudness(audio, n_frames, hop_length=hop_length),
                        mfcc=compute_mfcc(audio, n_frames, hop_length=hop_length))
    try:  # a cache that cannot be written (read-only, full, a file) only makes re-runs slower
        if cached is not None:
            atomic_write(cached, lambda tmp: write_entry(tmp, digest, settings_json(hop_length),
                                                         features))
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


def _features_or_error(path, cache_dir, hop_length: int) -> tuple:
    """extract_features for a worker: (features or the AudioInputError, its warnings as
    (category, message)); a worker's own warnings would reach its stderr, not the caller."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = extract_features(path, cache_dir, hop_length)
        except AudioInputError as err:
            result = err
    return result, [(w.category, str(w.message)) for w in caught]


def extract_files(file_paths, progress: bool = True, cache_dir=None, n_workers: int | None = None,
                  hop_length: int = HOP_LENGTH) -> tuple[list, dict]:
    """Features of many files -> ([Features of the usable files], errors {path: reason}).

    A file that fails is skipped with a warning and listed in `errors`. Raises AudioInputError
    only when no file is usable. `cache_dir`, `hop_length`: see extract_features. Each distinct
    warning of the files is given once, here, also from workers. `n_workers` > 1 extracts in
    that many processes (default: one per core, at most one per file not yet cached); 1
    extracts here, in order. The stop button (KeyboardInterrupt) stops extraction at once,
    workers and all; it is raised again saying how many files' features the cache keeps."""
    from tqdm.auto import tqdm

    file_paths = [str(p) for p in file_paths]
    entries = [feature_cache_path(p, cache_dir, hop_length) for p in file_paths]  # None: none
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
        results = run_jobs(_features_or_error, [(p, cache_dir, hop_length) for p in file_paths],
                           n_workers, bar.update)
    except BaseException as err:  # numba's SystemError too, when the stop came inside it
        if interrupted(err):
            raise KeyboardInterrupt(stopped_message(entries, cache_dir)) from None
        raise
    finally:
        bar.close()
    for message, category in {m: c for _, caught in results for c, m in caught}.items():
        warnings.warn(message, category, stacklevel=3)  # each distinct warning once
    features, errors = [], {}
    for path, (result, _) in zip(file_paths, results):
        if isinstance(result, AudioInputError):
            errors[path] = result.reason
            warnings.warn(str(result), stacklevel=3)
        else:
            features.append(result)
    if not features:
        detail = "; ".join(f"{Path(p).name}: {r}" for p, r in errors.items()) or "no files given"
        raise AudioInputError(", ".join(file_paths) or "<none>", f"no usable audio file ({detail})")
    return features, errors


def stopped_message(entries, cache_dir) -> str:
    """What a stop of load_multiple_files keeps: the files whose entries (feature_cache_path
    of each file, looked up before the stop) are in the cache now."""
    if not cache_dir:
        return "feature extraction stopped; without a cache folder no features are kept"
    kept = sum(entry is not None and entry.is_file() for entry in entries)
    return (f"feature extraction stopped; the features of {kept} of {len(entries)} files are "
            f"kept in the cache {cache_dir} and are not computed again")
