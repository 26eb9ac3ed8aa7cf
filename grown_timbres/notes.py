"""Notes: melodies as data (Note), from note lists ("C4:0.5 E4:0.5 R:0.25 G4:1"); midi.py reads
MIDI files into the same Notes.

    text -> [Note(pitch_midi or None for a rest, duration s), ...]
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

import numpy as np

from .config import MAX_NOTE_LIST_CHARS, MAX_NOTES, MAX_RENDER_SECONDS

NOTE_OFFSETS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"": 0, "#": 1, "\u266f": 1, "b": -1, "\u266d": -1}
_NOTE_NAME = re.compile(r"^([A-Ga-g])([#b\u266f\u266d]?)(-?\d+)$")
_REST_NAMES = {"r", "rest"}


@dataclass(frozen=True)
class Note:
    """One note of a melody: pitch_midi (float MIDI number, 60 = C4; None for a rest) held for
    `duration` seconds (onset to release; the release tail follows, see notes_to_controls)."""

    pitch_midi: float | None
    duration: float

    @property
    def is_rest(self) -> bool:
        return self.pitch_midi is None


def note_to_midi(name: str) -> float:
    """'C4' -> 60, 'C#4' / 'Db4' -> 61, 'Bb3' -> 58, 'C-1' -> 0 (scientific pitch, letters in
    either case, one # or b), or a MIDI number as text ('60', '61.5'). Raises ValueError."""
    text = name.strip()
    match = _NOTE_NAME.match(text)
    if match:
        letter, accidental, octave = match.groups()
        midi = 12 * (int(octave) + 1) + NOTE_OFFSETS[letter.upper()] + _ACCIDENTALS[accidental]
    else:
        try:
            midi = float(text)
        except ValueError:
            raise ValueError(f"{name!r} is not a note: use a name A-G with optional # or b and "
                             "an octave (C4, F#3, Bb2), a MIDI number (60) or R for a rest"
                             ) from None
    if not 0 <= midi <= 127:
        raise ValueError(f"{name!r} is MIDI {midi:g}, outside 0..127 (C-1..G9)")
    return float(midi)


def parse_note_list(text: str) -> list:
    """'C4:0.5 E4:0.5 R:0.25 G4:1' -> [Note(60, 0.5), Note(64, 0.5), Note(None, 0.25), ...].

    Tokens are `pitch:seconds`, separated by whitespace or commas (spaces around ':' are fine).
    pitch: a note name (C4, c#4, Db4, Bb3, C-1), a MIDI number (60, 61.5) or R / rest.
    Raises ValueError naming the bad token and why (unknown pitch, missing, non-positive or
    over MAX_RENDER_SECONDS duration, empty list), or the limit that a long list passes
    (MAX_NOTE_LIST_CHARS, MAX_NOTES)."""
    if not isinstance(text, str):
        raise ValueError(f"a note list is text like 'C4:0.5 E4:1', got {type(text).__name__}")
    if len(text) > MAX_NOTE_LIST_CHARS:
        raise ValueError(f"the note list has {len(text)} characters, more than "
                         f"MAX_NOTE_LIST_CHARS={MAX_NOTE_LIST_CHARS}")
    tokens = [t for t in re.split(r"[\s,]+", re.sub(r"\s*:\s*", ":", text.strip())) if t]
    if not tokens:
        raise ValueError("the note list is empty: write notes like 'C4:0.5 E4:0.5 G4:1'")
    check_note_count(len(tokens))
    notes = []
    for i, token in enumerate(tokens, start=1):
        where = f"note {i} {token!r}"
        if token.count(":") != 1:
            raise ValueError(f"{where}: expected pitch:seconds (like C4:0.5), "
                             + ("missing ':duration'" if ":" not in token else "too many ':'"))
        pitch_text, duration_text = token.split(":")
        if pitch_text.lower() in _REST_NAMES:
            pitch = None
        else:
            try:
                pitch = note_to_midi(pitch_text)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        notes.append(Note(pitch, checked_duration(duration_text, where)))
    return notes


def check_note_count(count: int, where: str = "the melody") -> None:
    if count > MAX_NOTES:
        raise ValueError(f"{where} has more than MAX_NOTES={MAX_NOTES} notes and rests "
                         f"({count} counted)")


def as_notes(notes) -> list:
    """A note list given as text, Notes, dicts {pitch_midi, duration} or (pitch, duration)
    pairs; a pitch may be a MIDI number, a note name or None / 'R' for a rest. At most
    MAX_NOTES, counted as they come."""
    if isinstance(notes, str):
        return parse_note_list(notes)
    result = []
    for i, note in enumerate(notes, start=1):
        check_note_count(i)
        where = f"note {i} {note!r:.60}"
        if isinstance(note, Note):
            pitch, duration = note.pitch_midi, note.duration
        elif isinstance(note, dict) and "duration" in note and set(note) <= {"pitch_midi",
                                                                              "duration"}:
            pitch, duration = note.get("pitch_midi"), note["duration"]
        elif isinstance(note, (list, tuple, np.ndarray)) and len(note) == 2:
            pitch, duration = note
        else:
            raise ValueError(f"{where}: a note is a Note, a dict {{pitch_midi, duration}} or a "
                             "(pitch, duration) pair")
        result.append(Note(_pitch(pitch, where), checked_duration(duration, where)))
    return result


def _pitch(value, where: str) -> float | None:
    """A note's MIDI pitch from a number, a name or a rest ('R', None)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _REST_NAMES):
        return None
    if isinstance(value, str):
        try:
            return note_to_midi(value)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"{where}: pitch {value!r} is not a MIDI number, a note name or R")
    if not 0 <= value <= 127:
        raise ValueError(f"{where}: pitch {value!r} is outside MIDI 0..127")
    return float(value)


def checked_duration(value, where: str) -> float:
    """A note's seconds: finite, > 0, at most MAX_RENDER_SECONDS (no longer note renders)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: duration {value!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_RENDER_SECONDS):
        raise ValueError(f"{where}: duration must be a finite number of seconds > 0 and at "
                         f"most MAX_RENDER_SECONDS={MAX_RENDER_SECONDS:g}, got {value}")
    return seconds
