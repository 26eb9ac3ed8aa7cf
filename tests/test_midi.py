"""grown_timbres/midi.py: MIDI files (tempo changes, types 0 and 1, overlaps, parts, drums) as
Notes, and the errors that name the file and what is wrong."""
import numpy as np
import pytest

from grown_timbres.midi import read_midi


def write_midi(path, tracks, ticks_per_beat=480, file_type=1):
    """tracks: lists of (delta ticks, kind, value...) -> a MIDI file (mido)."""
    import mido
    midi = mido.MidiFile(type=file_type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        for delta, kind, *args in events:
            if kind == "tempo":
                track.append(mido.MetaMessage("set_tempo", tempo=args[0], time=delta))
            elif kind == "on":
                track.append(mido.Message("note_on", note=args[0], velocity=args[1] if len(args) > 1
                                          else 90, channel=args[2] if len(args) > 2 else 0,
                                          time=delta))
            elif kind == "off":
                track.append(mido.Message("note_off", note=args[0], velocity=0,
                                          channel=args[1] if len(args) > 1 else 0, time=delta))
            elif kind == "program":
                track.append(mido.Message("program_change", program=args[0], time=delta))
        midi.tracks.append(track)
    midi.save(str(path))
    return path


def test_read_midi_pitches_and_durations_with_a_tempo_change(tmp_path):
    # conductor track: 120 bpm, 60 bpm from tick 480, 90 bpm from tick 2640. Melody (track 1):
    # C4 1 beat at 120 (0.5 s), E4 1 beat at 60 (1.0 s), rest 1/2 beat (0.5 s), G4 2 beats
    # (2.0 s, ended by a note_on of velocity 0), A4 1 beat at 60 + 1 beat at 90 (1.667 s).
    conductor = [(0, "tempo", 500000), (480, "tempo", 1000000), (2160, "tempo", 666667)]
    melody = [(0, "program", 71), (0, "on", 60), (480, "off", 60), (0, "on", 64), (480, "off", 64),
              (240, "on", 67), (960, "on", 67, 0), (0, "on", 69), (960, "off", 69)]
    path = write_midi(tmp_path / "melody.mid", [conductor, melody])
    notes = read_midi(path)
    expected = [(60, 0.5), (64, 1.0), (None, 0.5), (67, 2.0), (69, 1.0 + 0.666667)]
    assert [n.pitch_midi for n in notes] == [None if p is None else float(p) for p, _ in expected]
    np.testing.assert_allclose([n.duration for n in notes], [d for _, d in expected], atol=1e-3)


def test_read_midi_type0_and_leading_silence(tmp_path):
    events = [(0, "tempo", 400000), (960, "on", 62), (240, "off", 62), (0, "on", 65),
              (480, "off", 65)]
    notes = read_midi(write_midi(tmp_path / "t0.mid", [events], file_type=0))
    assert [(n.pitch_midi, round(n.duration, 4)) for n in notes] == [(62.0, 0.2), (65.0, 0.4)]


@pytest.mark.parametrize("overlap, expected", [
    ("highest", [(64, 1.0), (60, 0.5)]),
    ("latest", [(64, 0.5), (60, 1.0)]),
])
def test_read_midi_overlapping_notes_become_monophonic(tmp_path, overlap, expected):
    # 120 bpm: E4 from 0 to 1.0 s, C4 from 0.5 to 1.5 s
    events = [(0, "on", 64), (480, "on", 60), (480, "off", 64), (480, "off", 60)]
    notes = read_midi(write_midi(tmp_path / "poly.mid", [events]), overlap=overlap)
    assert [(n.pitch_midi, round(n.duration, 6)) for n in notes] == [
        (float(p), d) for p, d in expected]


def test_read_midi_takes_the_first_part_with_notes_unless_merged(tmp_path):
    bass = [(0, "on", 36, 90, 1), (960, "off", 36, 1)]
    lead = [(480, "on", 72, 90, 0), (480, "off", 72, 0)]
    path = write_midi(tmp_path / "two.mid", [[(0, "tempo", 500000)], bass, lead])
    assert [n.pitch_midi for n in read_midi(path)] == [36.0]
    assert [n.pitch_midi for n in read_midi(path, track=2)] == [72.0]
    assert [n.pitch_midi for n in read_midi(path, merge=True)] == [36.0, 72.0]
    with pytest.raises(ValueError, match="no notes in track 0"):
        read_midi(path, track=0)


def test_read_midi_skips_the_drum_channel_unless_asked(tmp_path):
    drums = [(0, "on", 36, 90, 9), (240, "off", 36, 9)]
    lead = [(240, "on", 67, 90, 0), (480, "off", 67, 0)]
    path = write_midi(tmp_path / "band.mid", [drums, lead])
    assert [n.pitch_midi for n in read_midi(path)] == [67.0]
    assert [n.pitch_midi for n in read_midi(path, channel=9)] == [36.0]


def test_read_midi_rejects_a_text_file_naming_it(tmp_path):
    path = tmp_path / "notes.mid"
    path.write_text("C4:0.5 E4:0.5 G4:1\n")
    with pytest.raises(ValueError, match=r"notes\.mid: not a readable MIDI file"):
        read_midi(path)


def test_read_midi_without_notes_names_the_file(tmp_path):
    path = write_midi(tmp_path / "silent.mid", [[(0, "tempo", 500000), (0, "program", 3)]])
    with pytest.raises(ValueError, match=r"silent\.mid: the MIDI file has no notes"):
        read_midi(path)


def test_read_midi_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_midi(tmp_path / "absent.mid")


@pytest.mark.parametrize("tracks", [
    [[(0, "tempo", 0), (0, "on", 60), (480, "off", 60)]],
    [[(0, "on", 60), (480, "off", 60), (960, "tempo", 0), (0, "on", 62), (480, "off", 62)]],
    [[(0, "tempo", 500000)], [(0, "on", 60), (480, "off", 60)], [(240, "tempo", 0)]],
])
def test_read_midi_with_a_tempo_of_zero_raises_naming_file_track_and_tick(tmp_path, tracks):
    """Issue 13, class 6: a tempo of 0 made every note last 0 s, and read_midi returned no
    notes and no error."""
    path = write_midi(tmp_path / "still.mid", tracks)
    with pytest.raises(ValueError, match="tempo of 0 microseconds per beat") as info:
        read_midi(path)
    track, tick = next((t, sum(e[0] for e in events[:i + 1]))
                       for t, events in enumerate(tracks)
                       for i, e in enumerate(events) if e[1] == "tempo" and e[2] == 0)
    assert str(info.value).startswith(f"{path}: track {track} ")
    assert f"at tick {tick}" in str(info.value)
