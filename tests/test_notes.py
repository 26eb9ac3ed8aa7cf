"""grown_timbres/notes.py: note lists (names, accidentals, MIDI numbers, rests) and hand-written
notes as Notes, and the errors that name what is wrong (tests/test_midi.py: MIDI files)."""
import re

import numpy as np
import pytest

from grown_timbres.notes import Note, as_notes, parse_note_list
from grown_timbres.melody import notes_to_controls


# ----------------------------------------------------------------------------- note lists
@pytest.mark.parametrize("text, expected", [
    ("C4:0.5 E4:0.5 G4:1", [(60, 0.5), (64, 0.5), (67, 1.0)]),
    ("C#4:1 Db4:1 Bb3:0.25 E#4:1 Cb4:1 f#2:0.5", [(61, 1), (61, 1), (58, 0.25), (65, 1), (59, 1),
                                                  (42, 0.5)]),
    ("\u266f".join(["C", "4:1"]) + " D\u266d4:1", [(61, 1), (61, 1)]),
    ("60:0.5 61.5:1 0:0.1 127:0.1", [(60, 0.5), (61.5, 1), (0, 0.1), (127, 0.1)]),
    ("R:0.5 rest:1 r:0.2 C-1:1 G9:1", [(None, 0.5), (None, 1), (None, 0.2), (0, 1), (127, 1)]),
    ("  C4:0.5\n\tE4 : 0.5 ,G4:1,  ", [(60, 0.5), (64, 0.5), (67, 1.0)]),
])
def test_parse_note_list_accepts_names_accidentals_midi_numbers_rests_whitespace(text, expected):
    notes = parse_note_list(text)
    assert [(n.pitch_midi, n.duration) for n in notes] == [
        (None if p is None else float(p), float(d)) for p, d in expected]
    assert all(isinstance(n, Note) for n in notes)


@pytest.mark.parametrize("text, token, why", [
    ("C4:0.5 H4:1", "H4:1", "not a note"),
    ("C4:0.5 C4", "C4", "missing ':duration'"),
    ("C4:-1", "C4:-1", "> 0"),
    ("C4:0", "C4:0", "> 0"),
    ("C4:inf", "C4:inf", "finite"),
    ("E4:1 C4:abc", "C4:abc", "not a number"),
    ("C4:1:2", "C4:1:2", "too many"),
    ("C10:1", "C10:1", "outside 0..127"),
    ("128:1", "128:1", "outside 0..127"),
    ("C##4:1", "C##4:1", "not a note"),
    (":1", ":1", "not a note"),
])
def test_bad_note_list_names_the_token_and_why(text, token, why):
    with pytest.raises(ValueError, match=re.escape(repr(token))) as info:
        parse_note_list(text)
    assert why in str(info.value)


@pytest.mark.parametrize("text", ["", "   \n ", ", ,"])
def test_empty_note_list_is_an_error(text):
    with pytest.raises(ValueError, match="empty"):
        parse_note_list(text)


def test_notes_as_pairs_dicts_and_names():
    from_text = notes_to_controls("C4:0.4 R:0.2 Eb4:0.4")
    from_pairs = notes_to_controls([("C4", 0.4), (None, 0.2), (63, 0.4)])
    from_dicts = notes_to_controls([{"pitch_midi": 60, "duration": 0.4},
                                       {"pitch_midi": None, "duration": 0.2},
                                       {"pitch_midi": "D#4", "duration": 0.4}])
    for other in (from_pairs, from_dicts):
        for a, b in zip(from_text, other):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="outside"):
        notes_to_controls([(200, 1.0)])




@pytest.mark.parametrize("notes, message", [
    ([(60, 1.0), {"pitch_midi": 62}], "note 2 {'pitch_midi': 62}: a note is a Note, a dict"),
    ([{"pitch": 60, "duration": 1}], "note 1 {'pitch': 60, 'duration': 1}: a note is a Note"),
    ([(60, 1.0, 0.5)], "note 1 (60, 1.0, 0.5): a note is a Note, a dict {pitch_midi, duration} "
                       "or a (pitch, duration) pair"),
    ([60], "note 1 60: a note is a Note"),
    ([(60, 1), ("H4", 1)], "note 2 ('H4', 1): 'H4' is not a note"),
    ([(200, 1)], "note 1 (200, 1): pitch 200 is outside MIDI 0..127"),
    ([(float("nan"), 1)], "note 1 (nan, 1): pitch nan is outside MIDI 0..127"),
    ([({}, 1)], "note 1 ({}, 1): pitch {} is not a MIDI number, a note name or R"),
    ([(True, 1)], "note 1 (True, 1): pitch True is not a MIDI number"),
    ([(None, "x")], "note 1 (None, 'x'): duration 'x' is not a number of seconds"),
    ([(60, 0)], "note 1 (60, 0): duration must be a finite number of seconds > 0"),
])
def test_hand_written_notes_are_refused_naming_the_note(notes, message):
    """Issue 13, class 6: a dict without a duration raised a bare KeyError, a triple a bare
    unpacking error, a bad pitch named no note."""
    with pytest.raises(ValueError) as info:
        as_notes(notes)
    assert str(info.value).startswith(message), str(info.value)
