"""Notes: melodies as data (Note), from note lists ("C4:0.5 E4:0.5 R:0.25 G4:1") or MIDI files.

    text or MIDI file -> [Note(pitch_midi or None for a rest, duration s), ...]
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import MAX_MIDI_BYTES, MAX_NOTE_LIST_CHARS, MAX_NOTES, MAX_RENDER_SECONDS

PERCUSSION_CHANNEL = 9  # General MIDI drums (channel 10, 0-based 9): skipped unless asked for
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
    _check_count(len(tokens))
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
        notes.append(Note(pitch, _duration(duration_text, where)))
    return notes


def _check_count(count: int, where: str = "the melody") -> None:
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
        _check_count(i)
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
        result.append(Note(_pitch(pitch, where), _duration(duration, where)))
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


def _duration(value, where: str) -> float:
    """A note's seconds: finite, > 0, at most MAX_RENDER_SECONDS (no longer note renders)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: duration {value!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_RENDER_SECONDS):
        raise ValueError(f"{where}: duration must be a finite number of seconds > 0 and at "
                         f"most MAX_RENDER_SECONDS={MAX_RENDER_SECONDS:g}, got {value}")
    return seconds


def _tempo_map(tracks):
    """[(tick, tempo us per beat)] sorted, from set_tempo events (type 0/1: all tracks share
    them; type 2: each track has its own, so pass one track)."""
    changes = []
    for track in tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "set_tempo":
                changes.append((tick, message.tempo))
    changes.sort(key=lambda c: c[0])  # stable: the later of two at one tick wins below
    return [(0, 500000)] + changes  # 120 bpm until the first change (the MIDI default)


def _ticks_to_seconds(ticks: np.ndarray, tempo_map, ticks_per_beat: int) -> np.ndarray:
    """Absolute ticks [K] -> seconds [K] under a piecewise-constant tempo map."""
    change_ticks = np.array([c[0] for c in tempo_map], dtype=np.float64)
    tempos = np.array([c[1] for c in tempo_map], dtype=np.float64) / 1e6 / ticks_per_beat
    # seconds at each change: integrate the previous segment's seconds-per-tick
    starts = np.concatenate([[0.0], np.cumsum(np.diff(change_ticks) * tempos[:-1])])
    index = np.searchsorted(change_ticks, ticks, side="right") - 1
    return starts[index] + (ticks - change_ticks[index]) * tempos[index]


def _track_notes(track):
    """(start tick, end tick, pitch, channel) of every note in one track. A note still on at
    the track's end ends there; a re-struck sounding pitch ends the earlier note."""
    sounding, notes, tick = {}, [], 0
    for message in track:
        tick += message.time
        if message.type not in ("note_on", "note_off"):
            continue
        key = (message.channel, message.note)
        if key in sounding:  # note_off, note_on velocity 0, or a re-strike
            notes.append((sounding.pop(key), tick, message.note, message.channel))
        if message.type == "note_on" and message.velocity > 0:
            sounding[key] = tick
    notes += [(start, tick, note, channel) for (channel, note), start in sounding.items()]
    return [n for n in notes if n[1] > n[0]]


def _monophonic(intervals, overlap: str) -> list:
    """Overlapping (start s, end s, pitch) -> Notes with rests, one pitch at a time.

    Wherever notes overlap, `overlap="highest"` sounds the highest, "latest" the most recently
    started (falling back to a still-held earlier note when it ends). Leading silence is
    dropped."""
    if overlap not in ("highest", "latest"):
        raise ValueError(f"overlap must be 'highest' or 'latest', got {overlap!r}")
    starting, ending = {}, {}
    for i, (start, end, _) in enumerate(intervals):
        starting.setdefault(start, []).append(i)
        ending.setdefault(end, []).append(i)
    times = sorted(set(starting) | set(ending))
    active, chosen = set(), []  # chosen: [start, end, interval index or None]
    for start, end in zip(times[:-1], times[1:]):  # a sweep: polyphony stays small
        active.difference_update(ending.get(start, ()))
        active.update(starting.get(start, ()))
        if not active:
            pick = None
        elif overlap == "highest":
            pick = max(active, key=lambda i: (intervals[i][2], intervals[i][0]))
        else:
            pick = max(active, key=lambda i: (intervals[i][0], intervals[i][2]))
        if chosen and chosen[-1][2] == pick:
            chosen[-1][1] = end
        else:
            chosen.append([start, end, pick])
    return [Note(None if pick is None else float(intervals[pick][2]), end - start)
            for start, end, pick in chosen]


def read_midi(path, track: int | None = None, channel: int | None = None, merge: bool = False,
              overlap: str = "highest") -> list:
    """A MIDI file's melody as Notes (with rests), tempo changes honoured.

    Which notes: `track` / `channel` pick them; by default the first track with notes and, in
    it, the channel of its first note; `merge=True` takes every track and channel. The General
    MIDI drum channel (PERCUSSION_CHANNEL) is left out unless `channel` names it or it is all
    there is. The result is monophonic: where notes overlap, `overlap="highest"` keeps the
    highest, "latest" the most recently started. Velocities are ignored (the loudness curve
    comes from notes_to_controls). Needs `mido` (pip install mido). Raises ValueError naming
    the file when it is missing, not MIDI, has a tempo of 0 or no notes (in the chosen
    track/channel), or passes a limit: MAX_MIDI_BYTES, MAX_NOTES, or one note or rest longer
    than MAX_RENDER_SECONDS."""
    try:
        import mido
    except ImportError:
        raise ImportError("reading MIDI files needs mido: pip install mido") from None
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if path.stat().st_size > MAX_MIDI_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, more than MAX_MIDI_BYTES="
                         f"{MAX_MIDI_BYTES}")
    try:
        midi = mido.MidiFile(str(path))
    except Exception as err:  # mido raises OSError, EOFError, ValueError, KeyError ...
        raise ValueError(f"{path}: not a readable MIDI file ({type(err).__name__}: {err})"
                         ) from None
    if not 0 < midi.ticks_per_beat < 0x8000:
        raise ValueError(f"{path}: SMPTE time division is not supported (only ticks per beat)")
    _check_events(path, midi.tracks)
    shared_tempo = _tempo_map(midi.tracks) if midi.type != 2 else None
    intervals_by_part = {}  # (track, channel) -> [(start s, end s, pitch)]
    for index, midi_track in enumerate(midi.tracks):
        notes = _track_notes(midi_track)
        if not notes:
            continue
        tempo = shared_tempo or _tempo_map([midi_track])  # type 2: tracks keep their own
        ticks = np.array([[n[0], n[1]] for n in notes], dtype=np.float64)
        seconds = _ticks_to_seconds(ticks.ravel(), tempo, midi.ticks_per_beat).reshape(-1, 2)
        for (start, end), (_, _, pitch, chan) in zip(seconds, notes):
            intervals_by_part.setdefault((index, chan), []).append((start, end, pitch))
    parts = [p for p in intervals_by_part
             if (track is None or p[0] == track) and (channel is None or p[1] == channel)]
    if channel is None and any(p[1] != PERCUSSION_CHANNEL for p in parts):
        parts = [p for p in parts if p[1] != PERCUSSION_CHANNEL]  # drums have no melody
    if not parts:
        which = (f" in track {track}" if track is not None else "") + (
            f" on channel {channel}" if channel is not None else "")
        raise ValueError(f"{path}: the MIDI file has no notes{which}")
    if not merge:
        first_track = min(p[0] for p in parts)
        parts = [min((p for p in parts if p[0] == first_track),
                     key=lambda p: min(s for s, _, _ in intervals_by_part[p]))]
    intervals = sorted(i for p in parts for i in intervals_by_part[p])
    notes = _monophonic(intervals, overlap)
    while notes and notes[0].is_rest:
        notes.pop(0)
    for i, note in enumerate(notes, start=1):  # a tick gap of hours would become hours of frames
        _duration(note.duration, f"{path}: note {i} of the melody ("
                  + ("a rest" if note.is_rest else f"MIDI {note.pitch_midi:g}") + ")")
    return notes


def _check_events(path, tracks) -> None:
    """Refuse, before any note is built, a tempo of 0 (every note would last 0 s) and more
    than MAX_NOTES notes in the file."""
    n_notes = 0
    for index, track in enumerate(tracks):
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "set_tempo" and message.tempo <= 0:
                raise ValueError(f"{path}: track {index} sets a tempo of {message.tempo} "
                                 f"microseconds per beat at tick {tick}; a tempo must be > 0")
            n_notes += message.type == "note_on" and message.velocity > 0
    _check_count(n_notes, f"{path}: the MIDI file")
