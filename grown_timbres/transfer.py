"""Timbre transfer: play new music with a learned timbre. A melody reaches the model as
frame-rate controls, f0 [T] Hz and loudness [T] dB, from notes (a note list or MIDI file) or from
another recording's f0 and loudness moved into the training range; the timbre is an MFCC vector
[N_MFCC], one file's or the mean over all files ("the whole model").

    notes or recording -> (f0 [T] Hz, loudness [T] dB) -> render_melody -> audio [T * HOP_LENGTH]
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from .audio import AudioInputError, finish_render
from .config import (FRAME_RATE, HOP_LENGTH, LOUDNESS_FLOOR_DB, MAX_RENDER_SECONDS,
                     REVERB_SECONDS, SAMPLE_RATE)
from .batching import file_features
from .features import extract_features
from .model import render, unwrap_model
from .notes import as_notes
from .pitch import midi_to_hz

MELODY_LOUDNESS_DB = -20.0  # a note list's level unless told (see training_ranges)
ATTACK_SECONDS = 0.03  # floor -> note level, linear in dB
RELEASE_SECONDS = 0.1  # note level -> floor, linear in dB
PORTAMENTO_SECONDS = 0.03  # legato glide between tied notes, linear in log frequency
VIBRATO_DELAY_SECONDS = 0.25  # after each note's onset, vibrato starts ...
VIBRATO_FADE_SECONDS = 0.15  # ... and reaches full depth this much later


def _frame_range(times: np.ndarray, start: float, end: float) -> slice:
    """Frames with start <= time < end."""
    return slice(int(np.searchsorted(times, start - 1e-9)),
                 int(np.searchsorted(times, end - 1e-9)))


def _describe(note) -> str:
    return f"{'a rest' if note.is_rest else f'MIDI {note.pitch_midi:g}'} for {note.duration:g} s"


def notes_to_controls(notes, loudness_db: float = MELODY_LOUDNESS_DB,
                      attack: float = ATTACK_SECONDS, release: float = RELEASE_SECONDS,
                      legato: bool = True, portamento: float = PORTAMENTO_SECONDS,
                      vibrato_rate: float = 0.0, vibrato_depth_cents: float = 0.0,
                      vibrato_delay: float = VIBRATO_DELAY_SECONDS,
                      vibrato_fade: float = VIBRATO_FADE_SECONDS,
                      pitch_shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Notes -> (f0 [T] Hz, loudness [T] dB), float32 at the model's FRAME_RATE (frame t at
    t / FRAME_RATE seconds), T covering every note plus the last note's release (the last frame
    is at or past its end, so the melody ends at the floor).

    notes: parse_note_list text, Notes, or dicts {pitch_midi, duration}.
    loudness: each phrase rises from LOUDNESS_FLOOR_DB to `loudness_db` over `attack` s and,
    after its last note ends, falls back to the floor over `release` s, both linear in dB (a
    phrase: one note, or with `legato` a run of notes with no rest between). Where a release
    and the next attack overlap the louder wins, so nothing jumps. `loudness_db`: for a trained
    model take a level it has heard, e.g. training_ranges(batch)["loudness_median_db"].
    f0: each note's pitch (+ `pitch_shift` semitones), held through rests and the release; within
    a legato phrase it glides to the next note over `portamento` s (linear in log frequency);
    without legato every note is re-attacked and pitch steps.
    vibrato: `vibrato_depth_cents` peak deviation (+/-) at `vibrato_rate` Hz, starting
    `vibrato_delay` s after each note's onset and fading in over `vibrato_fade` s."""
    notes = as_notes(notes)
    for name, value in dict(attack=attack, release=release, portamento=portamento,
                            vibrato_rate=vibrato_rate, vibrato_depth_cents=vibrato_depth_cents,
                            vibrato_delay=vibrato_delay, vibrato_fade=vibrato_fade).items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not (math.isfinite(loudness_db) and loudness_db > LOUDNESS_FLOOR_DB):
        raise ValueError(f"loudness_db must be above the floor ({LOUDNESS_FLOOR_DB:g} dB), "
                         f"got {loudness_db}")
    starts = np.concatenate([[0.0], np.cumsum([n.duration for n in notes])])
    pitched = [(starts[i], starts[i + 1], n.pitch_midi + pitch_shift)
               for i, n in enumerate(notes) if not n.is_rest]
    if not pitched:
        raise ValueError("the melody has no pitched note (only rests)")
    tied = [legato and i > 0 and pitched[i - 1][1] == pitched[i][0] for i in range(len(pitched))]
    end_time = max(starts[-1], pitched[-1][1] + release)
    last_frame = math.floor(MAX_RENDER_SECONDS * FRAME_RATE) - 1  # as render_melody counts
    if end_time * FRAME_RATE - 1e-6 > last_frame:  # refused before a single frame is built
        past = np.flatnonzero(starts[1:] * FRAME_RATE - 1e-6 > last_frame)
        culprit = (f"note {past[0] + 1} ({_describe(notes[past[0]])}) ends at "
                   f"{starts[past[0] + 1]:.4g} s" if len(past) else
                   f"with its release of {release:g} s it ends at {end_time:.4g} s")
        raise ValueError(f"the melody is too long: {culprit}, past MAX_RENDER_SECONDS="
                         f"{MAX_RENDER_SECONDS:g} s; render it in shorter parts")
    n_frames = math.ceil(end_time * FRAME_RATE - 1e-6) + 1  # the last frame ends the release
    times = np.arange(n_frames) / FRAME_RATE

    # f0 in MIDI: the latest note's pitch, glides into tied notes, vibrato per note
    note_starts = np.array([p[0] for p in pitched])
    current = np.clip(np.searchsorted(note_starts, times + 1e-9, side="right") - 1, 0, None)
    midi = np.array([p[2] for p in pitched])[current]
    for i, (start, end, pitch) in enumerate(pitched):
        if tied[i] and portamento > 0:
            glide = min(portamento, end - start)
            frames = _frame_range(times, start, start + glide)
            progress = (times[frames] - start) / glide
            midi[frames] = pitched[i - 1][2] + (pitch - pitched[i - 1][2]) * progress
    if vibrato_rate > 0 and vibrato_depth_cents > 0:
        since = times - note_starts[current] - vibrato_delay
        ramp = np.clip(since / max(vibrato_fade, 1e-9), 0.0, 1.0)
        midi = midi + (vibrato_depth_cents / 100.0) * ramp * np.sin(
            2 * np.pi * vibrato_rate * np.maximum(since, 0.0))

    # loudness in dB: per phrase, attack -> hold -> release; the louder phrase wins
    floor, span = LOUDNESS_FLOOR_DB, loudness_db - LOUDNESS_FLOOR_DB
    loudness = np.full(n_frames, floor)
    phrases = []
    for i, (start, end, _) in enumerate(pitched):
        if tied[i]:
            phrases[-1][1] = end
        else:
            phrases.append([start, end])
    for start, end in phrases:
        frames = _frame_range(times, start, end + release + 1.0 / FRAME_RATE)
        t = times[frames] - start
        rising = floor + span * np.clip(t / max(attack, 1e-9), 0.0, 1.0)
        reached = floor + span * min((end - start) / max(attack, 1e-9), 1.0)
        falling = reached - span * (t - (end - start)) / max(release, 1e-9)
        envelope = np.where(t <= end - start, rising, np.maximum(falling, floor))
        loudness[frames] = np.maximum(loudness[frames], envelope)
    return midi_to_hz(midi).astype(np.float32), loudness.astype(np.float32)


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
    if not isinstance(recording, Mapping):
        import soundfile as sf

        try:
            seconds = sf.info(str(recording)).duration
        except Exception:  # unreadable: extract_features says why, in the file's name
            seconds = 0.0
        if seconds > MAX_RENDER_SECONDS:
            raise AudioInputError(recording, f"{seconds:.0f} s long; a melody is at most "
                                             f"MAX_RENDER_SECONDS={MAX_RENDER_SECONDS:.0f} s: "
                                             "use a shorter excerpt of the recording")
    features = (recording if isinstance(recording, Mapping)
                else extract_features(recording, cache_dir))
    original_f0 = np.asarray(features["f0"], dtype=np.float64).reshape(-1)
    original_loudness = np.asarray(features["loudness"], dtype=np.float64).reshape(-1)
    voiced = np.asarray(features["voiced"], bool).reshape(-1)
    stats = None
    if training is not None:
        stats = training if isinstance(training, dict) and "f0_median_hz" in training else (
            training_ranges(training))
    own = training_ranges({"f0": original_f0, "loudness": original_loudness, "voiced": voiced},
                          (stats or {}).get("percentiles", (5.0, 95.0)))
    if isinstance(octave_shift, str):
        if octave_shift != "auto":
            raise ValueError(f"octave_shift must be 'auto' or a whole number, got {octave_shift!r}")
        octave_shift = 0 if stats is None else int(
            math.floor(math.log2(stats["f0_median_hz"] / own["f0_median_hz"]) + 0.5))
    elif int(octave_shift) != octave_shift:
        raise ValueError(f"octave_shift must be 'auto' or a whole number, got {octave_shift!r}")
    octave_shift = int(octave_shift)
    f0 = original_f0 * 2.0 ** (octave_shift + pitch_shift / 12.0)

    scale, offset = 1.0, 0.0
    if stats is not None and match_loudness:
        own_range = own["loudness_high_db"] - own["loudness_low_db"]
        train_range = stats["loudness_high_db"] - stats["loudness_low_db"]
        if own_range >= 1.0:
            scale = float(np.clip(train_range / own_range, 0.25, 4.0))
        own_mid = 0.5 * (own["loudness_high_db"] + own["loudness_low_db"])
        train_mid = 0.5 * (stats["loudness_high_db"] + stats["loudness_low_db"])
        offset = train_mid - own_mid * scale
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
    """Audio of a melody: f0 [T] Hz, loudness [T] dB, mfcc [N_MFCC] (held) or [T, N_MFCC] ->
    float32 [T * HOP_LENGTH] at the model's own level (see audio.finish_render), 10 ms fades
    at both ends; the noise seeded by `seed` (see model.render).

    `room`: with the model's learned room (True), dry (False), or as the model was trained
    (None); True for a model without a room is refused. A model with a room plays
    REVERB_SECONDS of silence after the melody, room or not: its room rings out there, and
    the dry and room renders differ by the room alone.
    Melodies longer than `max_seconds` (default MAX_RENDER_SECONDS) are refused (ValueError):
    the synthesizer's memory grows with length x harmonics, about 20 MB per second; render
    long pieces in parts."""
    core = unwrap_model(model)
    if room and not core.reverb:
        raise ValueError("room=True: this model has no room (DDSPModel(reverb=False))")
    device = next(core.parameters()).device

    def frames(x):
        return np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, np.float32)

    f0, loudness, mfcc = frames(f0).reshape(-1), frames(loudness).reshape(-1), frames(mfcc)
    n_frames = len(f0)
    if n_frames == 0 or len(loudness) != n_frames:
        raise ValueError(f"f0 [{n_frames}] and loudness [{len(loudness)}] need the same, "
                         "non-zero number of frames")
    seconds = n_frames * HOP_LENGTH / SAMPLE_RATE
    if seconds > max_seconds:
        raise ValueError(f"the melody lasts {seconds:.1f} s, more than max_seconds="
                         f"{max_seconds:g}: render it in shorter parts")
    n_mfcc = core.config["n_mfcc"]
    if mfcc.shape == (n_mfcc,):
        mfcc = np.broadcast_to(mfcc, (n_frames, n_mfcc))
    elif mfcc.shape != (n_frames, n_mfcc):
        raise ValueError(f"mfcc must be [{n_mfcc}] or [{n_frames}, {n_mfcc}], got {mfcc.shape}")
    gains = {}
    if core.reverb:  # the last frame held, at the floor: the decoder falls silent there
        tail = math.ceil(REVERB_SECONDS * FRAME_RATE)
        f0, mfcc = np.pad(f0, (0, tail), mode="edge"), np.pad(mfcc, ((0, tail), (0, 0)), "edge")
        loudness = np.pad(loudness, (0, tail), constant_values=LOUDNESS_FLOOR_DB)
        n_frames += tail
        if room is False:
            gains["room_gain"] = torch.zeros(1, n_frames, 1, device=device)
    audio = render(core, torch.from_numpy(f0).to(device).reshape(1, n_frames, 1),
                   torch.from_numpy(loudness).to(device).reshape(1, n_frames, 1),
                   torch.from_numpy(np.ascontiguousarray(mfcc)).to(device)[None], seed=seed,
                   **gains)
    return finish_render(audio[0])
