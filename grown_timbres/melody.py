"""Melodies from notes: a note list or MIDI file's notes as the frame-rate controls a model
plays, f0 and loudness, shaped by attack, release, legato glides and vibrato.

    notes -> f0 [T] Hz, loudness [T] dB at FRAME_RATE
"""
from __future__ import annotations

import math

import numpy as np

from .config import FRAME_RATE, LOUDNESS_FLOOR_DB, MAX_RENDER_SECONDS
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
    times = _melody_times(notes, starts, pitched[-1][1] + release, release)
    midi = _melody_midi(times, pitched, tied, portamento, vibrato_rate, vibrato_depth_cents,
                        vibrato_delay, vibrato_fade)
    loudness = _melody_loudness(times, pitched, tied, loudness_db, attack, release)
    return midi_to_hz(midi).astype(np.float32), loudness.astype(np.float32)


def _melody_times(notes, starts: np.ndarray, release_end: float, release: float) -> np.ndarray:
    """[T] the frames' times (s) of a melody whose notes start at `starts` (and the last ends
    at starts[-1]), its last phrase released at `release_end`: up to the frame at or past its
    end. A melody longer than MAX_RENDER_SECONDS is refused before a frame is built, naming the
    first note past it (or the release)."""
    end_time = max(starts[-1], release_end)
    last_frame = math.floor(MAX_RENDER_SECONDS * FRAME_RATE) - 1  # as render_melody counts
    if end_time * FRAME_RATE - 1e-6 > last_frame:  # refused before a single frame is built
        past = np.flatnonzero(starts[1:] * FRAME_RATE - 1e-6 > last_frame)
        culprit = (f"note {past[0] + 1} ({_describe(notes[past[0]])}) ends at "
                   f"{starts[past[0] + 1]:.4g} s" if len(past) else
                   f"with its release of {release:g} s it ends at {end_time:.4g} s")
        raise ValueError(f"the melody is too long: {culprit}, past MAX_RENDER_SECONDS="
                         f"{MAX_RENDER_SECONDS:g} s; render it in shorter parts")
    n_frames = math.ceil(end_time * FRAME_RATE - 1e-6) + 1  # the last frame ends the release
    return np.arange(n_frames) / FRAME_RATE


def _melody_midi(times, pitched: list, tied: list, portamento: float, vibrato_rate: float,
                 vibrato_depth_cents: float, vibrato_delay: float,
                 vibrato_fade: float) -> np.ndarray:
    """[T] f0 in MIDI at `times`: the latest (start, end, pitch) note's pitch, glides into tied
    notes, vibrato per note (see notes_to_controls)."""
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
    return midi


def _melody_loudness(times, pitched: list, tied: list, loudness_db: float, attack: float,
                     release: float) -> np.ndarray:
    """[T] loudness in dB at `times`: per phrase (tied notes joined), attack -> hold ->
    release from and to LOUDNESS_FLOOR_DB; the louder phrase wins (see notes_to_controls)."""
    floor, span = LOUDNESS_FLOOR_DB, loudness_db - LOUDNESS_FLOOR_DB
    loudness = np.full(len(times), floor)
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
    return loudness
