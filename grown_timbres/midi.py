"""MIDI files as melodies: one part's notes, tempo changes honoured, made monophonic.

    MIDI file -> [Note(pitch_midi or None for a rest, duration s), ...] (notes.py)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import MAX_MIDI_BYTES
from .notes import Note, check_note_count, checked_duration

PERCUSSION_CHANNEL = 9  # General MIDI drums (channel 10, 0-based 9): skipped unless asked for


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


def _open_midi(path: Path):
    """The mido.MidiFile at `path`, or ValueError naming it: missing, over MAX_MIDI_BYTES,
    not MIDI, or timed in SMPTE frames."""
    try:
        import mido
    except ImportError:
        raise ImportError("reading MIDI files needs mido: pip install mido") from None
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
    return midi


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
    path = Path(path)
    midi = _open_midi(path)
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
        checked_duration(note.duration, f"{path}: note {i} of the melody ("
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
    check_note_count(n_notes, f"{path}: the MIDI file")
