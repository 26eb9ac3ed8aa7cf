"""Timbre transfer: play new music with a learned timbre. A melody reaches the model as
frame-rate controls, f0 [T] Hz and loudness [T] dB, from notes (melody.notes_to_controls) or from
another recording's f0 and loudness moved into the training range; the timbre is an MFCC vector
[n_mfcc], one file's or the mean over all files ("the whole model").

    notes or recording -> (f0 [T] Hz, loudness [T] dB) -> render_melody -> audio [T * hop_length]
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from .audio import AudioInputError, finish_render
from .config import LOUDNESS_FLOOR_DB, MAX_RENDER_SECONDS
from .batching import file_features
from .features import extract_features
from .melody import MELODY_LOUDNESS_DB, notes_to_controls
from .model import render, unwrap_model


def notes_to_melody(notes, training=None, pitch_shift: float = 0.0, loudness_shift: float = 0.0,
                    vibrato_rate: float = 0.0, vibrato_depth_cents: float = 0.0) -> dict:
    """Notes as a melody's controls, as recording_to_controls gives a recording's: {f0 [T] Hz,
    loudness [T] dB (notes_to_controls at the training's median loudness + `loudness_shift`,
    `pitch_shift` semitones and the vibrato), original_f0, original_loudness (the same notes
    plain, at that level)}. training: a training batch, a training_ranges dict, or None (then
    MELODY_LOUDNESS_DB)."""
    stats = training_stats(training)
    level = MELODY_LOUDNESS_DB if stats is None else stats["loudness_median_db"]
    f0, loudness = notes_to_controls(notes, loudness_db=level + loudness_shift,
                                     pitch_shift=pitch_shift, vibrato_rate=vibrato_rate,
                                     vibrato_depth_cents=vibrato_depth_cents)
    plain_f0, plain_loudness = notes_to_controls(notes, loudness_db=level)
    return {"f0": f0, "loudness": loudness, "original_f0": plain_f0,
            "original_loudness": plain_loudness}


def _voiced_frames(source) -> tuple[np.ndarray, np.ndarray]:
    """(f0 [K] Hz, loudness [K] dB), float64, of the voiced frames of a batch (valid frames
    only), of one extract_features dict, or of a list of them."""
    if isinstance(source, Mapping) and "lengths" in source:
        source = [file_features(source, i) for i in range(len(source["lengths"]))]
    elif isinstance(source, Mapping):
        source = [source]
    f0s, loudnesses = [np.zeros(0)], [np.zeros(0)]
    for features in source:
        voiced = np.asarray(features["voiced"], bool).reshape(-1)
        f0s.append(np.asarray(features["f0"]).reshape(-1)[voiced])
        loudnesses.append(np.asarray(features["loudness"]).reshape(-1)[voiced])
    f0, loudness = np.concatenate(f0s), np.concatenate(loudnesses)
    keep = np.isfinite(f0) & (f0 > 0) & np.isfinite(loudness)
    if not keep.any():
        raise ValueError("no voiced frames to take pitch and loudness ranges from")
    return f0[keep].astype(np.float64), loudness[keep].astype(np.float64)


def training_ranges(batch, percentiles: tuple = (5.0, 95.0)) -> dict:
    """Pitch and loudness ranges over the valid, voiced frames of a training batch (collate /
    load_multiple_files; also one extract_features dict or a list of them):
    {f0_median_hz, f0_low_hz, f0_high_hz, loudness_low_db, loudness_median_db,
    loudness_high_db, percentiles, n_frames}; low/high are the given percentiles."""
    f0, loudness = _voiced_frames(batch)
    low, high = percentiles
    return {"f0_median_hz": float(np.median(f0)),
            "f0_low_hz": float(np.percentile(f0, low)),
            "f0_high_hz": float(np.percentile(f0, high)),
            "loudness_low_db": float(np.percentile(loudness, low)),
            "loudness_median_db": float(np.median(loudness)),
            "loudness_high_db": float(np.percentile(loudness, high)),
            "percentiles": (float(low), float(high)), "n_frames": int(len(f0))}


def training_stats(training) -> dict | None:
    """`training` as training_ranges' dict: a training batch's ranges, a ranges dict as it is,
    or None for None."""
    if training is None or (isinstance(training, dict) and "f0_median_hz" in training):
        return training
    return training_ranges(training)


def recording_to_controls(recording, training=None, pitch_shift: float = 0.0,
                          loudness_shift: float = 0.0, octave_shift="auto",
                          match_loudness: bool = True, cache_dir=None) -> dict:
    """Another recording's f0 and loudness, moved into the model's training range.

    recording: an audio path (features via extract_features, `cache_dir` as there) or an
    extract_features dict. training: a training batch, a training_ranges dict (at least
    f0_median_hz, loudness_low_db, loudness_high_db), or None (no automatic moves). Steps,
    measured on the recording's voiced frames:
    1. octave_shift="auto": whole octaves k (round(log2(training median / recording median)))
       so the median f0 lands closest to the training median; an int forces k, 0 disables.
    2. match_loudness: loudness mapped linearly so the recording's loudness percentiles
       (training's `percentiles`, 5th..95th) land on the training ones; a recording with under
       1 dB of range is only shifted (midpoints matched); the scale is kept within 0.25..4.
    3. pitch_shift semitones and loudness_shift dB on top. Frames at the floor stay there;
       loudness is clipped below at LOUDNESS_FLOOR_DB.
    Returns {f0 [T] Hz, loudness [T] dB (float32, for render_melody), original_f0,
    original_loudness, voiced [T], octave_shift, pitch_shift, loudness_shift, loudness_scale,
    loudness_offset (loudness = original * scale + offset + shift), path}. Only pitch and
    loudness transfer: the timbre (MFCCs) comes from the model's side. A recording file longer
    than a melody may be (MAX_RENDER_SECONDS) is refused before its features are computed."""
    features = _recording_features(recording, cache_dir)
    original_f0 = np.asarray(features["f0"], dtype=np.float64).reshape(-1)
    original_loudness = np.asarray(features["loudness"], dtype=np.float64).reshape(-1)
    voiced = np.asarray(features["voiced"], bool).reshape(-1)
    stats = training_stats(training)
    own = training_ranges({"f0": original_f0, "loudness": original_loudness, "voiced": voiced},
                          (stats or {}).get("percentiles", (5.0, 95.0)))
    octave_shift = _octave_shift(octave_shift, own, stats)
    f0 = original_f0 * 2.0 ** (octave_shift + pitch_shift / 12.0)
    scale, offset = (_loudness_map(own, stats) if stats is not None and match_loudness
                     else (1.0, 0.0))
    loudness = original_loudness * scale + offset + loudness_shift
    loudness = np.where(original_loudness <= LOUDNESS_FLOOR_DB, LOUDNESS_FLOOR_DB,
                        np.maximum(loudness, LOUDNESS_FLOOR_DB))
    return {"f0": f0.astype(np.float32), "loudness": loudness.astype(np.float32),
            "original_f0": original_f0.astype(np.float32),
            "original_loudness": original_loudness.astype(np.float32), "voiced": voiced,
            "octave_shift": octave_shift, "pitch_shift": float(pitch_shift),
            "loudness_shift": float(loudness_shift), "loudness_scale": scale,
            "loudness_offset": offset, "training_ranges": stats,
            "path": str(features.get("path", "") if isinstance(recording, Mapping) else recording)}


def _recording_features(recording, cache_dir) -> dict:
    """An extract_features dict as is, or an audio file's features; a file longer than a
    melody may be (MAX_RENDER_SECONDS) is refused before they are computed."""
    if isinstance(recording, Mapping):
        return recording
    import soundfile as sf

    try:
        seconds = sf.info(str(recording)).duration
    except Exception:  # unreadable: extract_features says why, in the file's name
        seconds = 0.0
    if seconds > MAX_RENDER_SECONDS:
        raise AudioInputError(recording, f"{seconds:.0f} s long; a melody is at most "
                                         f"MAX_RENDER_SECONDS={MAX_RENDER_SECONDS:.0f} s: "
                                         "use a shorter excerpt of the recording")
    return extract_features(recording, cache_dir)


def _octave_shift(octave_shift, own: dict, stats: dict | None) -> int:
    """Whole octaves to move a recording by: "auto" moves its median f0 (own) closest to the
    training median (stats; none without them), a whole number is taken as it is."""
    if isinstance(octave_shift, str):
        if octave_shift != "auto":
            raise ValueError(f"octave_shift must be 'auto' or a whole number, got {octave_shift!r}")
        octave_shift = 0 if stats is None else int(
            math.floor(math.log2(stats["f0_median_hz"] / own["f0_median_hz"]) + 0.5))
    elif int(octave_shift) != octave_shift:
        raise ValueError(f"octave_shift must be 'auto' or a whole number, got {octave_shift!r}")
    return int(octave_shift)


def _loudness_map(own: dict, stats: dict) -> tuple[float, float]:
    """(scale, offset) that move the recording's loudness percentiles (own) onto the training
    ones (stats): a recording with under 1 dB of range is only shifted; the scale is kept
    within 0.25..4."""
    scale = 1.0
    own_range = own["loudness_high_db"] - own["loudness_low_db"]
    train_range = stats["loudness_high_db"] - stats["loudness_low_db"]
    if own_range >= 1.0:
        scale = float(np.clip(train_range / own_range, 0.25, 4.0))
    own_mid = 0.5 * (own["loudness_high_db"] + own["loudness_low_db"])
    train_mid = 0.5 * (stats["loudness_high_db"] + stats["loudness_low_db"])
    return scale, train_mid - own_mid * scale


def timbre_mfcc(batch: dict, index: int | None = None) -> np.ndarray:
    """The timbre to render with: [N_MFCC] mean MFCCs of file `index` over its own frames, or
    with index None the mean over all files' means ("the whole model", each file weighted
    equally)."""
    def file_mean(i):
        # torch's float32 mean: numpy sums in another order, and renders would move by an ulp
        return torch.from_numpy(file_features(batch, i)["mfcc"]).mean(0).numpy()

    if index is not None:
        return file_mean(index)
    return np.mean([file_mean(i) for i in range(len(batch["lengths"]))], axis=0)


def render_melody(model, f0, loudness, mfcc, seed: int = 0,
                  max_seconds: float = MAX_RENDER_SECONDS, room: bool | None = None) -> np.ndarray:
    """Audio of a melody: f0 [T] Hz, loudness [T] dB, mfcc [n_mfcc] (held) or [T, n_mfcc] at the
    model's frame rate -> float32 [T * hop_length] at the model's own level (see
    audio.finish_render), 10 ms fades at both ends; the noise seeded by `seed` (see
    model.render).

    `room`: with the parts that ring on after their input (the learned room: True), dry
    (False: their gains 0), or as the model was trained (None); True for a model without one is
    refused. A model whose parts ring on plays their longest tail (DDSPModel.tail_seconds) of
    silence after the melody, room or not: the dry and room renders differ by the room alone.
    Melodies longer than `max_seconds` (default MAX_RENDER_SECONDS) are refused (ValueError):
    the synthesizer's memory grows with length x harmonics, about 20 MB per second; render
    long pieces in parts."""
    core = unwrap_model(model)
    ringing = [part for part in core.parts if part.tail_seconds > 0]
    if room and not ringing:
        raise ValueError("room=True: this model has no room (DDSPModel(room=False))")
    device = next(core.parameters()).device
    f0, loudness, mfcc = _melody_frames(core, f0, loudness, mfcc, max_seconds)
    n_frames = len(f0)
    gains = {}
    if ringing:  # the last frame held, at the floor: the decoder falls silent there
        tail = math.ceil(core.tail_seconds * (core.config.sample_rate / core.config.hop_length))
        f0, mfcc = np.pad(f0, (0, tail), mode="edge"), np.pad(mfcc, ((0, tail), (0, 0)), "edge")
        loudness = np.pad(loudness, (0, tail), constant_values=LOUDNESS_FLOOR_DB)
        n_frames += tail
        if room is False:
            gains = {part.gain: torch.zeros(1, n_frames, 1, device=device) for part in ringing}
    audio = render(core, torch.from_numpy(f0).to(device).reshape(1, n_frames, 1),
                   torch.from_numpy(loudness).to(device).reshape(1, n_frames, 1),
                   torch.from_numpy(np.ascontiguousarray(mfcc)).to(device)[None], seed=seed,
                   **gains)
    return finish_render(audio[0])


def _melody_frames(core, f0, loudness, mfcc, max_seconds: float) -> tuple:
    """A melody's (f0 [T], loudness [T], mfcc [T, n_mfcc]) as float32 arrays, checked: the same,
    non-zero number of frames, at most `max_seconds` at the model's rates, mfcc held or per
    frame. ValueError naming what is wrong."""
    def frames(x):
        return np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, np.float32)

    f0, loudness, mfcc = frames(f0).reshape(-1), frames(loudness).reshape(-1), frames(mfcc)
    n_frames = len(f0)
    if n_frames == 0 or len(loudness) != n_frames:
        raise ValueError(f"f0 [{n_frames}] and loudness [{len(loudness)}] need the same, "
                         "non-zero number of frames")
    seconds = n_frames * core.config.hop_length / core.config.sample_rate
    if seconds > max_seconds:
        raise ValueError(f"the melody lasts {seconds:.1f} s, more than max_seconds="
                         f"{max_seconds:g}: render it in shorter parts")
    n_mfcc = core.config.n_mfcc
    if mfcc.shape == (n_mfcc,):
        mfcc = np.broadcast_to(mfcc, (n_frames, n_mfcc))
    elif mfcc.shape != (n_frames, n_mfcc):
        raise ValueError(f"mfcc must be [{n_mfcc}] or [{n_frames}, {n_mfcc}], got {mfcc.shape}")
    return f0, loudness, mfcc
