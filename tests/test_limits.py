"""Issue 13, class 3: every size a user or a file controls is refused against a named limit
(grown_timbres/config.py) before memory is spent on it; each message names the constant, the
value and where it came from. One test (or more) per row of the inventory in the issue's note.
The oversized cases would each allocate gigabytes if a check came too late."""
import time

import numpy as np
import pytest
import torch

from grown_timbres.audio import AudioInputError, load_audio
from grown_timbres.checkpoints import load_checkpoint
from grown_timbres.config import (MAX_AUDIO_CHANNELS, MAX_AUDIO_SAMPLE_RATE, MAX_AUDIO_SECONDS,
                                  MAX_CHECKPOINT_BYTES, MAX_FILE_NAME_BYTES, MAX_MIDI_BYTES,
                                  MAX_NOTE_LIST_CHARS, MAX_NOTES, MAX_RENDER_SECONDS,
                                  MAX_STAGE_SECONDS, MAX_STAGES, MAX_UPLOAD_BYTES,
                                  MIN_AUDIO_SAMPLE_RATE, MIN_STAGE_SECONDS,
                                  SAMPLE_RATE)
from grown_timbres.growth import HeldNote, grow_timbre
from grown_timbres.stages import Stage, stages_from_table
from grown_timbres.model import DDSPModel
from grown_timbres.model_config import MODEL_LIMITS, ModelConfig
from grown_timbres.notebook import save_uploads
from grown_timbres.midi import read_midi
from grown_timbres.notes import Note, as_notes, parse_note_list
from grown_timbres.melody import notes_to_controls
from grown_timbres.transfer import render_melody
from test_midi import write_midi


def refused_quickly(call, *patterns, seconds=2.0):
    """call() raises ValueError matching every pattern, within `seconds` (a check that came
    after the allocation would take far longer, or fail on memory)."""
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        call()
    assert time.perf_counter() - start < seconds
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))
    return str(info.value)


# ----------------------------------------------------------------------- notes and melodies
@pytest.mark.parametrize("melody, culprit", [
    ("C4:1e9", "note 1 'C4:1e9': duration"),
    ("C4:1e6", "note 1 'C4:1e6': duration"),
    ("C4:1 R:1e300 E4:1", "note 2 'R:1e300': duration"),
    ([(60, 1.0), (62, 1e308)], "note 2 (62, 1e+308): duration"),
    ([{"pitch_midi": 60, "duration": 121}], "note 1 {'pitch_midi': 60, 'duration': 121}"),
])
def test_a_note_longer_than_a_render_is_refused_naming_it(melody, culprit):
    refused_quickly(lambda: notes_to_controls(melody), culprit, "MAX_RENDER_SECONDS=120")


@pytest.mark.parametrize("melody, culprit", [
    (" ".join(["G4:1"] * 130), "note 120 (MIDI 67 for 1 s) ends at 120 s"),
    ("C4:100 R:100 E4:100", "note 2 (a rest for 100 s) ends at 200 s"),
    ([(60, 119.0)] * (MAX_NOTES - 1), "note 2 (MIDI 60 for 119 s) ends at 238 s"),
])
def test_melody_length_is_refused_before_any_frame_naming_the_note_that_passes(melody, culprit):
    refused_quickly(lambda: notes_to_controls(melody), culprit, "MAX_RENDER_SECONDS=120 s",
                    "shorter parts")


def test_a_release_past_the_limit_is_named():
    refused_quickly(lambda: notes_to_controls("C4:100", release=1e9), "release of 1e+09 s",
                    "MAX_RENDER_SECONDS")


def test_the_longest_melody_notes_to_controls_builds_is_one_render_melody_takes():
    """At the limit both agree on frames: notes_to_controls never builds what render_melody
    would refuse."""
    last = MAX_RENDER_SECONDS - 0.2
    f0, _ = notes_to_controls(f"C4:{last}")
    assert len(f0) * 256 / SAMPLE_RATE <= MAX_RENDER_SECONDS
    with pytest.raises(ValueError, match="MAX_RENDER_SECONDS"):
        notes_to_controls(f"C4:{MAX_RENDER_SECONDS}")


def test_render_melody_refuses_more_than_max_render_seconds_before_rendering():
    n_frames = int(MAX_RENDER_SECONDS * SAMPLE_RATE / 256) + 2
    model = DDSPModel(hidden_size=8)
    refused_quickly(lambda: render_melody(model, np.full(n_frames, 220.0),
                                          np.full(n_frames, -20.0), np.zeros(20)),
                    "more than max_seconds=120")


def test_note_count_is_limited_in_text_and_in_lists():
    refused_quickly(lambda: parse_note_list("C4:0.01 " * (MAX_NOTES + 1)),
                    f"MAX_NOTES={MAX_NOTES}", f"({MAX_NOTES + 1} counted)")
    endless = (Note(60.0, 0.001) for _ in iter(int, 1))  # a generator that never ends
    refused_quickly(lambda: as_notes(endless), f"MAX_NOTES={MAX_NOTES}")
    assert len(parse_note_list("C4:0.01 " * MAX_NOTES)) == MAX_NOTES


def test_note_list_text_length_is_limited():
    text = "C4:1" + " " * MAX_NOTE_LIST_CHARS
    refused_quickly(lambda: parse_note_list(text), f"MAX_NOTE_LIST_CHARS={MAX_NOTE_LIST_CHARS}",
                    f"{len(text)} characters")


# ----------------------------------------------------------------------------- MIDI files
def test_midi_tick_gap_longer_than_a_render_is_refused_naming_the_file(tmp_path):
    """The issue's 86 GiB file: one huge delta time between two notes at the slowest tempo."""
    path = write_midi(tmp_path / "gap.mid", [[(0, "tempo", 0xFFFFFF), (0, "on", 60),
                                              (1, "off", 60), (0x0FFFFFFF, "on", 62),
                                              (1, "off", 62)]], ticks_per_beat=1)
    refused_quickly(lambda: read_midi(path), f"{path}: note 2 of the melody (a rest): duration "
                    "must be a finite number of seconds > 0 and at most MAX_RENDER_SECONDS=120, "
                    "got 4503599342.15")  # 0x0FFFFFFF ticks of 16.777215 s


def test_midi_note_longer_than_a_render_is_refused(tmp_path):
    path = write_midi(tmp_path / "held.mid", [[(0, "on", 60), (480 * 2 * 121, "off", 60)]])
    refused_quickly(lambda: read_midi(path), "note 1 of the melody (MIDI 60): duration",
                    "MAX_RENDER_SECONDS=120, got 121.0")


def test_midi_note_count_is_counted_before_notes_are_built(tmp_path):
    events = [e for _ in range(MAX_NOTES + 1) for e in ((0, "on", 60), (1, "off", 60))]
    path = write_midi(tmp_path / "many.mid", [events])
    refused_quickly(lambda: read_midi(path), str(path), f"MAX_NOTES={MAX_NOTES}",
                    f"({MAX_NOTES + 1} counted)")


def test_midi_file_bytes_are_checked_before_parsing(tmp_path):
    path = tmp_path / "huge.mid"
    with open(path, "wb") as f:
        f.truncate(MAX_MIDI_BYTES + 1)
    refused_quickly(lambda: read_midi(path), str(path), f"MAX_MIDI_BYTES={MAX_MIDI_BYTES}")


# ------------------------------------------------------------------------------- growth
def test_stage_duration_bounds_name_the_stage_and_both_constants():
    for seconds in (MIN_STAGE_SECONDS / 2, MAX_STAGE_SECONDS + 1):
        with pytest.raises(ValueError, match="stage 'x'.*MIN_STAGE_SECONDS, MAX_STAGE_SECONDS"):
            Stage("x", 1, False, seconds)


def test_stages_in_total_are_limited_naming_the_stage_that_passes():
    model = DDSPModel(hidden_size=8)
    rows = [(f"s{i}", 1, "off", MAX_STAGE_SECONDS) for i in range(1, 11)]  # 300 s: 5.4 GB
    note = HeldNote(220.0, 0.1, np.full(64, 1 / 64), np.zeros(65), frames=1)
    refused_quickly(lambda: grow_timbre(model, note, rows),
                    "stage 's5' (row 5)", "150 s", "MAX_RENDER_SECONDS=120 s")
    assert len(stages_from_table(rows[:4])) == 4  # 120 s is allowed


def test_stage_count_is_limited():
    rows = ((f"s{i}", 1, "off", MIN_STAGE_SECONDS) for i in iter(int, 1))  # endless
    refused_quickly(lambda: stages_from_table(rows), f"MAX_STAGES={MAX_STAGES}")


# -------------------------------------------------------------------------- audio, uploads
def test_audio_length_is_cut_at_max_audio_seconds_naming_it(write_wav_file, monkeypatch):
    """Only MAX_AUDIO_SECONDS are read (made 3 s here; test_audio.py checks the memory of a
    10 minute file), and the warning states the limit."""
    from grown_timbres import audio

    monkeypatch.setattr(audio, "MAX_AUDIO_SECONDS", 3.0)
    path = write_wav_file("long.wav", np.full(4 * SAMPLE_RATE, 0.1))
    with pytest.warns(UserWarning, match=r"long.wav: 4.0 s long; only the first 3 s are used "
                                         r"\(MAX_AUDIO_SECONDS=3 s is the longest file "
                                         r"accepted\)"):
        assert len(load_audio(path)) == 3 * SAMPLE_RATE


def test_a_file_of_max_audio_seconds_fits_the_upload_limit():
    """The longest file accepted, as 48 kHz stereo 16-bit wav (its 44-byte header and a few
    kB of metadata chunks), can be uploaded; and a cache entry of it passes
    read_cache_entry's length check (it uses the same constant)."""
    assert MAX_AUDIO_SECONDS == 30 * 60
    assert 44 + 2**16 + MAX_AUDIO_SECONDS * 48_000 * 2 * 2 <= MAX_UPLOAD_BYTES


@pytest.mark.parametrize("channels, rate", [(MAX_AUDIO_CHANNELS + 1, SAMPLE_RATE),
                                            (1, MAX_AUDIO_SAMPLE_RATE + 1)])
def test_audio_channels_and_rate_are_refused_before_decoding(write_wav_file, channels, rate):
    """A small compressed file with many channels at a high rate decodes to gigabytes."""
    path = write_wav_file("wide.wav", np.full((4096, channels), 0.1), rate)
    with pytest.raises(AudioInputError, match=rf"wide.wav: {channels} channels at {rate} Hz; at "
                                              rf"most MAX_AUDIO_CHANNELS={MAX_AUDIO_CHANNELS} at "
                                              rf"MAX_AUDIO_SAMPLE_RATE={MAX_AUDIO_SAMPLE_RATE} Hz"):
        load_audio(path)
    assert len(load_audio(write_wav_file("ok.wav", np.full((40960, MAX_AUDIO_CHANNELS), 0.1),
                                         MAX_AUDIO_SAMPLE_RATE))) > 0


def test_a_rate_below_the_lowest_is_refused_before_reading(write_wav_file, monkeypatch):
    """Issue 21, class 7: 70 KiB of float samples at 10 Hz used to be read as 30 minutes of
    audio (40 M samples after resampling; 20 minutes of pYIN). A rate below
    MIN_AUDIO_SAMPLE_RATE is refused from the header, naming the file and its rate, by every
    reader of audio files (extract_features reads through load_audio); MIN_AUDIO_SAMPLE_RATE
    itself is read."""
    from grown_timbres import audio as audio_module
    from grown_timbres.features import extract_features

    assert MIN_AUDIO_SAMPLE_RATE == 8000
    path = write_wav_file("ten_hz.wav", np.full(30 * 60 * 10, 0.1, np.float32), 10)
    assert path.stat().st_size // 1024 == 70
    real_read_mono = audio_module.read_mono
    monkeypatch.setattr(audio_module, "read_mono", None)  # reading a sample would fail
    for call in (load_audio, extract_features):
        with pytest.raises(AudioInputError) as info:
            call(path)
        assert str(info.value) == (f"{path}: sample rate 10 Hz is below "
                                   "MIN_AUDIO_SAMPLE_RATE=8000 Hz (telephone sound, the lowest "
                                   "rate of a recording)")
    monkeypatch.setattr(audio_module, "read_mono", real_read_mono)
    for rate in (MIN_AUDIO_SAMPLE_RATE - 1, MIN_AUDIO_SAMPLE_RATE):  # one second each
        path = write_wav_file(f"{rate}.wav", np.full(rate, 0.1), rate)
        if rate < MIN_AUDIO_SAMPLE_RATE:
            with pytest.raises(AudioInputError, match=f"sample rate {rate} Hz is below"):
                load_audio(path)
        else:
            assert abs(len(load_audio(path)) - SAMPLE_RATE) <= 2


def test_upload_bytes_are_checked_before_copying(tmp_path):
    big = memoryview(bytearray(MAX_UPLOAD_BYTES + 1))
    with pytest.warns(UserWarning, match=f"'big.wav' skipped: {MAX_UPLOAD_BYTES + 1} bytes, "
                                         f"more than MAX_UPLOAD_BYTES={MAX_UPLOAD_BYTES}"):
        written = save_uploads([{"name": "big.wav", "content": big},
                                {"name": "ok.wav", "content": b"RIFF"}], tmp_path)
    assert [p.name for p in written] == ["ok.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.wav"]


def test_upload_names_are_cut_to_max_file_name_bytes(tmp_path):
    written = save_uploads({"\u00e9" * 200 + ".wav": b"1", "\u00e9" * 201 + ".wav": b"2"},
                           tmp_path)
    assert all(len(p.name.encode()) <= MAX_FILE_NAME_BYTES for p in written)
    assert [p.read_bytes() for p in written] == [b"1", b"2"] and written[0].suffix == ".wav"


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("field", sorted(MODEL_LIMITS))
def test_each_model_configuration_field_is_limited_before_building(field, tmp_path):
    """A tiny checkpoint whose config asks for a huge model is refused before a layer is
    built (hidden_size 4096 built 1.8 GB first); the same check guards DDSPModel itself."""
    low, high = MODEL_LIMITS[field]
    config = DDSPModel(hidden_size=8).config
    path = tmp_path / "tiny.pt"
    for bad in (high + 1, low - 1, 10**9):
        torch.save({"model_state_dict": {}, "config": {**config, field: bad}}, path)
        refused_quickly(lambda: load_checkpoint(path), str(path), f"{field}={bad}")
        with pytest.raises(ValueError, match=field):
            DDSPModel(**{field: bad})
    refused_quickly(lambda: ModelConfig(**{field: high + 1}),
                    f"outside {low}..{high}", f"MODEL_LIMITS[{field!r}]")
    ModelConfig(**{field: high})


def test_checkpoint_file_bytes_are_checked_before_loading(tmp_path):
    path = tmp_path / "huge.pt"
    with open(path, "wb") as f:
        f.truncate(MAX_CHECKPOINT_BYTES + 1)
    refused_quickly(lambda: load_checkpoint(path), str(path),
                    f"MAX_CHECKPOINT_BYTES={MAX_CHECKPOINT_BYTES}")


def test_the_largest_allowed_model_fits_the_checkpoint_limit():
    """MODEL_LIMITS and MAX_CHECKPOINT_BYTES agree: the largest model, saved with Adam's two
    moments, stays under the file limit (counted, not built)."""
    h, harmonics, bands, n_mfcc, z = (MODEL_LIMITS[k][1] for k in (
        "hidden_size", "n_harmonics", "n_noise_bands", "n_mfcc", "z_dim"))
    mlp = lambda n_in: n_in * h + h + 2 * (h * h + h) + 6 * h  # noqa: E731
    params = (2 * n_mfcc + n_mfcc * z + z + mlp(1) * 2 + mlp(z) + 3 * (3 * h * h + h * h + 2 * h)
              + mlp(4 * h) + h * (1 + harmonics + bands) + 1 + harmonics + bands)
    assert 3 * 4 * params < MAX_CHECKPOINT_BYTES
    assert set(MODEL_LIMITS) | {"room"} == set(DDSPModel(hidden_size=8).config.keys())
    assert MODEL_LIMITS["sample_rate"] == (MIN_AUDIO_SAMPLE_RATE, MAX_AUDIO_SAMPLE_RATE)
