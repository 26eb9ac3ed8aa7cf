"""Timbre transfer (note lists, MIDI files, another recording's f0 and loudness) and growth
stages edited as data. Models are small and untrained: f0 is a synthesizer input, so pitch is
exact whatever the weights."""
import re

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import ddsp_helpers as dh  # noqa: E402
from conftest import cents, midi_to_hz  # noqa: E402

FRAME = 1.0 / dh.FRAME_RATE  # seconds per control frame


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return dh.DDSPModel(hidden_size=32)


def frame_times(n_frames):
    return np.arange(n_frames) / dh.FRAME_RATE


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
    notes = dh.parse_note_list(text)
    assert [(n.pitch_midi, n.duration) for n in notes] == [
        (None if p is None else float(p), float(d)) for p, d in expected]
    assert all(isinstance(n, dh.Note) for n in notes)


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
        dh.parse_note_list(text)
    assert why in str(info.value)


@pytest.mark.parametrize("text", ["", "   \n ", ", ,"])
def test_empty_note_list_is_an_error(text):
    with pytest.raises(ValueError, match="empty"):
        dh.parse_note_list(text)


def test_only_rests_cannot_become_controls():
    with pytest.raises(ValueError, match="no pitched note"):
        dh.notes_to_controls("R:1 R:0.5")


# ----------------------------------------------------------------------------- MIDI files
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
    notes = dh.read_midi(path)
    expected = [(60, 0.5), (64, 1.0), (None, 0.5), (67, 2.0), (69, 1.0 + 0.666667)]
    assert [n.pitch_midi for n in notes] == [None if p is None else float(p) for p, _ in expected]
    np.testing.assert_allclose([n.duration for n in notes], [d for _, d in expected], atol=1e-3)


def test_read_midi_type0_and_leading_silence(tmp_path):
    events = [(0, "tempo", 400000), (960, "on", 62), (240, "off", 62), (0, "on", 65),
              (480, "off", 65)]
    notes = dh.read_midi(write_midi(tmp_path / "t0.mid", [events], file_type=0))
    assert [(n.pitch_midi, round(n.duration, 4)) for n in notes] == [(62.0, 0.2), (65.0, 0.4)]


@pytest.mark.parametrize("overlap, expected", [
    ("highest", [(64, 1.0), (60, 0.5)]),
    ("latest", [(64, 0.5), (60, 1.0)]),
])
def test_read_midi_overlapping_notes_become_monophonic(tmp_path, overlap, expected):
    # 120 bpm: E4 from 0 to 1.0 s, C4 from 0.5 to 1.5 s
    events = [(0, "on", 64), (480, "on", 60), (480, "off", 64), (480, "off", 60)]
    notes = dh.read_midi(write_midi(tmp_path / "poly.mid", [events]), overlap=overlap)
    assert [(n.pitch_midi, round(n.duration, 6)) for n in notes] == [
        (float(p), d) for p, d in expected]


def test_read_midi_takes_the_first_part_with_notes_unless_merged(tmp_path):
    bass = [(0, "on", 36, 90, 1), (960, "off", 36, 1)]
    lead = [(480, "on", 72, 90, 0), (480, "off", 72, 0)]
    path = write_midi(tmp_path / "two.mid", [[(0, "tempo", 500000)], bass, lead])
    assert [n.pitch_midi for n in dh.read_midi(path)] == [36.0]
    assert [n.pitch_midi for n in dh.read_midi(path, track=2)] == [72.0]
    assert [n.pitch_midi for n in dh.read_midi(path, merge=True)] == [36.0, 72.0]
    with pytest.raises(ValueError, match="no notes in track 0"):
        dh.read_midi(path, track=0)


def test_read_midi_rejects_a_text_file_naming_it(tmp_path):
    path = tmp_path / "notes.mid"
    path.write_text("C4:0.5 E4:0.5 G4:1\n")
    with pytest.raises(ValueError, match=r"notes\.mid: not a readable MIDI file"):
        dh.read_midi(path)


def test_read_midi_without_notes_names_the_file(tmp_path):
    path = write_midi(tmp_path / "silent.mid", [[(0, "tempo", 500000), (0, "program", 3)]])
    with pytest.raises(ValueError, match=r"silent\.mid: the MIDI file has no notes"):
        dh.read_midi(path)


def test_read_midi_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        dh.read_midi(tmp_path / "absent.mid")


# ----------------------------------------------------------------------------- note shapes
def test_attack_rises_from_floor_and_release_falls_within_their_times():
    level, attack, release = -20.0, 0.03, 0.1
    f0, loudness = dh.notes_to_controls("C4:0.5 R:0.5 E4:0.5", loudness_db=level, attack=attack,
                                        release=release)
    times = frame_times(len(loudness))
    assert f0.dtype == loudness.dtype == np.float32 and f0.shape == loudness.shape
    assert times[-1] >= 1.5 + release  # the last note's release fits
    for start, end in ((0.0, 0.5), (1.0, 1.5)):
        before = (times < start) & (times > start - 0.2)
        assert np.all(loudness[before] == dh.LOUDNESS_FLOOR_DB)  # from the floor ...
        rising = (times >= start) & (times < start + attack)
        assert rising.sum() >= 2 and np.all(np.diff(loudness[rising]) > 0)
        np.testing.assert_allclose(  # ... linearly in dB ...
            loudness[rising], -80 + 60 * (times[rising] - start) / attack, atol=1e-3)
        held = (times >= start + attack) & (times <= end)
        assert np.allclose(loudness[held], level)  # at the note level within the attack time
        falling = (times > end) & (times < end + release)
        assert np.all(np.diff(loudness[falling]) < 0) and np.all(loudness[falling] < level)
        after = (times >= end + release) & (times < end + 0.4)
        assert np.all(loudness[after] == dh.LOUDNESS_FLOOR_DB)  # at the floor within release
    assert loudness[-1] == dh.LOUDNESS_FLOOR_DB


def test_legato_keeps_loudness_up_and_glides_in_log_frequency():
    portamento = 0.03
    f0, loudness = dh.notes_to_controls("C4:0.5 E4:0.5", loudness_db=-20, portamento=portamento)
    times = frame_times(len(f0))
    inside = (times >= 0.03) & (times <= 1.0)
    assert np.all(loudness[inside] == -20.0)  # no dip between tied notes
    midi = dh.hz_to_midi(f0.astype(np.float64))
    glide = (times >= 0.5) & (times < 0.5 + portamento)
    assert glide.sum() >= 2 and np.all(np.diff(midi[glide]) > 0)
    np.testing.assert_allclose(midi[glide], 60 + 4 * (times[glide] - 0.5) / portamento, atol=1e-4)
    np.testing.assert_allclose(midi[(times >= 0.5 + portamento) & (times <= 1.0)], 64, atol=1e-4)
    np.testing.assert_allclose(midi[times < 0.5], 60, atol=1e-4)


def test_without_legato_notes_are_reattacked_and_pitch_steps():
    f0, loudness = dh.notes_to_controls("C4:0.5 E4:0.5", loudness_db=-20, legato=False)
    times = frame_times(len(f0))
    around = (times > 0.45) & (times < 0.55)
    assert loudness[around].min() < -30  # a dip between the notes
    midi = dh.hz_to_midi(f0.astype(np.float64))
    np.testing.assert_allclose(midi[times >= 0.5 - 1e-9][:5], 64, atol=1e-4)


def test_vibrato_rate_and_depth():
    rate, depth, delay, fade = 5.5, 40.0, 0.3, 0.2
    f0, _ = dh.notes_to_controls("A4:3", vibrato_rate=rate, vibrato_depth_cents=depth,
                                 vibrato_delay=delay, vibrato_fade=fade)
    times = frame_times(len(f0))
    deviation = 1200 * np.log2(f0.astype(np.float64) / 440.0)
    assert np.all(np.abs(deviation[times < delay]) < 1e-3)  # delayed onset, then it fades in
    assert np.abs(deviation[(times > delay) & (times < delay + fade / 2)]).max() < depth / 2
    steady = (times >= delay + fade + 0.1) & (times <= 2.9)
    d, t = deviation[steady], times[steady]
    assert abs(np.abs(d).max() - depth) <= 0.1 * depth
    # rate from the upward zero crossings, interpolated between frames
    up = np.nonzero((d[:-1] < 0) & (d[1:] >= 0))[0]
    crossings = t[up] - d[up] * (t[up + 1] - t[up]) / (d[up + 1] - d[up])
    measured = 1.0 / np.mean(np.diff(crossings))
    assert abs(measured - rate) <= 0.1 * rate, measured


def test_note_shape_arguments_are_checked():
    with pytest.raises(ValueError, match="attack"):
        dh.notes_to_controls("C4:1", attack=-0.1)
    with pytest.raises(ValueError, match="loudness_db"):
        dh.notes_to_controls("C4:1", loudness_db=-90)
    f0, _ = dh.notes_to_controls([{"pitch_midi": 60, "duration": 0.5}, dh.Note(None, 0.2),
                                  (62, 0.3)], pitch_shift=12)
    assert cents(f0[0], midi_to_hz(72)) == pytest.approx(0, abs=1e-3)


# ----------------------------------------------------------------------------- rendering
def test_rendered_melody_has_the_notes_pitches(small_model):
    notes = dh.parse_note_list("C4:0.5 E4:0.5 G4:0.5 C5:0.7")
    f0, loudness = dh.notes_to_controls(notes, loudness_db=-20)  # no vibrato
    mfcc = np.zeros(dh.N_MFCC, np.float32)
    with torch.no_grad():  # the untrained model does produce harmonic content
        controls = small_model.get_controls(torch.from_numpy(f0)[None, :, None],
                                            torch.from_numpy(loudness)[None, :, None],
                                            torch.zeros(1, len(f0), dh.N_MFCC))
    harmonic = (controls["amplitude"] * controls["harmonic_distribution"]).sum(-1)
    assert float(harmonic.min()) > 0.05
    audio = dh.render_melody(small_model, f0, loudness, mfcc)
    assert audio.dtype == np.float32 and len(audio) == len(f0) * dh.HOP_LENGTH
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # not silent
    measured, voiced = dh.estimate_f0(audio)
    start, errors = 0.0, []
    for note in notes:
        frames = slice(int(np.ceil((start + 0.2 * note.duration) * dh.FRAME_RATE)),
                       int(np.floor((start + 0.8 * note.duration) * dh.FRAME_RATE)) + 1)
        assert voiced[frames].mean() > 0.9
        errors.append(cents(np.median(measured[frames]), midi_to_hz(note.pitch_midi)))
        start += note.duration
    print("cents error per note:", np.round(errors, 2))
    assert np.all(np.abs(errors) < 20), errors


def test_render_melody_is_seeded_faded_bounded_and_restores_mode(small_model):
    f0, loudness = dh.notes_to_controls("A3:0.3 C4:0.3", loudness_db=0)
    mfcc = np.random.default_rng(0).normal(size=(len(f0), dh.N_MFCC)).astype(np.float32)
    small_model.train()
    state = torch.get_rng_state()
    first = dh.render_melody(small_model, f0, loudness + 30, mfcc, seed=3)  # loud: peak limited
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert small_model.training
    second = dh.render_melody(small_model, f0, loudness + 30, mfcc, seed=3)
    np.testing.assert_array_equal(first, second)
    assert np.abs(first).max() <= 0.99 + 1e-6
    assert first[0] == 0.0 and abs(first[-1]) < 1e-2
    with pytest.raises(ValueError, match="same"):
        dh.render_melody(small_model, f0, loudness[:-1], mfcc[0])
    with pytest.raises(ValueError, match="mfcc"):
        dh.render_melody(small_model, f0, loudness, mfcc[:, :5])


def test_timbre_mfcc_of_one_file_and_of_the_whole_model(bundled_features):
    """In a batch of a whole tone and a 60-frame cut of another (padded to the long one by
    holding its last MFCC frame): one file's timbre is the mean of its own MFCC frames, and the
    whole model's is the mean of the two files' means (each file counts once, whatever its
    length), the padding ignored."""
    short = dict(bundled_features[5])
    short.update(path=short["path"] + "#short", audio=short["audio"][: 60 * dh.HOP_LENGTH],
                 **{key: short[key][:60] for key in ("f0", "voiced", "loudness", "mfcc")})
    batch = dh.collate([bundled_features[0], short])
    long_mean = bundled_features[0]["mfcc"].astype(np.float64).mean(0)
    short_mean = bundled_features[5]["mfcc"][:60].astype(np.float64).mean(0)
    np.testing.assert_allclose(dh.timbre_mfcc(batch, 0), long_mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dh.timbre_mfcc(batch, 1), short_mean, rtol=1e-5, atol=1e-4)
    whole = dh.timbre_mfcc(batch)
    assert whole.shape == (dh.N_MFCC,)
    np.testing.assert_allclose(whole, (long_mean + short_mean) / 2, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------- recordings
def octave_lower_batch(features):
    """A fake training batch: the same tones one octave lower."""
    return dh.collate([{**f, "f0": f["f0"] * np.float32(0.5)} for f in features[:3]])


def test_training_ranges_over_valid_voiced_frames(bundled_features, bundled_batch):
    ranges = dh.training_ranges(bundled_batch)
    voiced_f0 = np.concatenate([f["f0"][f["voiced"]] for f in bundled_features])
    assert ranges["f0_median_hz"] == pytest.approx(np.median(voiced_f0), rel=1e-6)
    assert ranges["n_frames"] == len(voiced_f0)
    assert ranges["loudness_low_db"] <= ranges["loudness_median_db"] <= ranges["loudness_high_db"]
    assert ranges["loudness_low_db"] > dh.LOUDNESS_FLOOR_DB  # silence is not voiced
    assert dh.training_ranges(bundled_features) == ranges  # a list of features works the same


def test_recording_an_octave_above_training_shifts_down_one_octave(bundled_features):
    recording = bundled_features[0]  # C4
    training = octave_lower_batch(bundled_features)
    result = dh.recording_to_controls(recording, training)
    assert result["octave_shift"] == -1
    np.testing.assert_allclose(result["f0"], recording["f0"] * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(result["original_f0"], recording["f0"])
    shifted = dh.recording_to_controls(recording, training, pitch_shift=2)
    np.testing.assert_allclose(shifted["f0"], recording["f0"] * 0.5 * 2 ** (2 / 12), rtol=1e-6)
    # the training tones are as loud as the recording: loudness barely moves on voiced frames
    voiced = recording["voiced"]
    assert np.abs(result["loudness"][voiced] - recording["loudness"][voiced]).max() < 1.0


def test_recording_loudness_percentiles_map_onto_training_ones(bundled_features):
    recording = bundled_features[5]
    voiced = recording["voiced"]
    loudness = recording["loudness"].copy()
    loudness[voiced] = np.linspace(-50, -30, voiced.sum())  # 20 dB of range
    stats = {"f0_median_hz": float(np.median(recording["f0"][voiced])), "loudness_low_db": -20.0,
             "loudness_high_db": -10.0, "percentiles": (5.0, 95.0)}
    result = dh.recording_to_controls({**recording, "loudness": loudness}, stats)
    own_low, own_high = np.percentile(loudness[voiced], [5, 95])
    assert result["octave_shift"] == 0
    assert result["loudness_scale"] == pytest.approx(10 / (own_high - own_low))
    mapped = result["loudness"][voiced]
    np.testing.assert_allclose(np.percentile(mapped, [5, 95]), [-20, -10], atol=1e-3)
    louder = dh.recording_to_controls({**recording, "loudness": loudness}, stats,
                                      loudness_shift=3)
    np.testing.assert_allclose(louder["loudness"][voiced], mapped + 3, atol=1e-4)
    silent = loudness <= dh.LOUDNESS_FLOOR_DB
    assert np.all(louder["loudness"][silent] == dh.LOUDNESS_FLOOR_DB)


def test_recording_from_a_file_shifts_up_towards_training(write_wav_file):
    seconds = 0.6
    t = np.arange(int(seconds * dh.SAMPLE_RATE)) / dh.SAMPLE_RATE
    path = write_wav_file("hum.wav", 0.3 * np.sin(2 * np.pi * 220.0 * t))
    stats = {"f0_median_hz": 880.0 * 2 ** (4 / 12), "loudness_low_db": -20.0,
             "loudness_high_db": -15.0}  # a major third above A5: still two octaves up
    result = dh.recording_to_controls(path, stats)
    assert result["octave_shift"] == 2 and result["path"] == str(path)
    voiced = result["voiced"]
    assert cents(np.median(result["f0"][voiced]), 880.0) == pytest.approx(0, abs=10)
    assert dh.recording_to_controls(path, None)["octave_shift"] == 0


def test_plot_transfer_before_and_after(bundled_features):
    """What the figure shows: on the f0 axis (log scale) the recording's f0 before (dashed) and
    after (solid) the shift, one octave apart, against time in seconds; on the loudness axis
    both loudness curves; the title names the octave shift."""
    import matplotlib.pyplot as plt

    result = dh.recording_to_controls(bundled_features[0], octave_lower_batch(bundled_features))
    fig = dh.plot_transfer(result)
    f0_ax, loud_ax = fig.axes
    assert "octave shift -1" in fig._suptitle.get_text() and f0_ax.get_yscale() == "log"
    (before_f0, after_f0), (before_loud, after_loud) = f0_ax.lines[:2], loud_ax.lines[:2]
    n = len(result["f0"])
    np.testing.assert_allclose(after_f0.get_xdata(), np.arange(n) * dh.HOP_LENGTH / dh.SAMPLE_RATE)
    np.testing.assert_array_equal(before_f0.get_ydata(), bundled_features[0]["f0"])
    np.testing.assert_array_equal(after_f0.get_ydata(), result["f0"])
    np.testing.assert_allclose(np.asarray(after_f0.get_ydata()) / before_f0.get_ydata(), 0.5,
                               rtol=1e-6)
    assert before_f0.get_linestyle() == "--" and after_f0.get_linestyle() == "-"
    np.testing.assert_array_equal(before_loud.get_ydata(), bundled_features[0]["loudness"])
    np.testing.assert_array_equal(after_loud.get_ydata(), result["loudness"])
    before = {"f0": result["original_f0"], "loudness": result["original_loudness"]}
    explicit = dh.plot_transfer(before, result)
    assert len(explicit.axes) == 2
    np.testing.assert_array_equal(explicit.axes[0].lines[1].get_ydata(), result["f0"])
    plt.close("all")


# ----------------------------------------------------------------------------- growth stages
FORM_ROWS = [
    {"name": "root", "n_harmonics": "1", "noise": "off", "duration": "0.3"},
    {"name": "five", "n_harmonics": 5, "noise": False, "duration": 0.25},
    ["breath", "all", "on", "0.45"],
]


def test_edited_stages_validate_and_render(small_model):
    stages = dh.stages_from_table(FORM_ROWS)
    assert stages == [
        {"name": "root", "n_harmonics": 1, "noise": False, "duration": 0.3},
        {"name": "five", "n_harmonics": 5, "noise": False, "duration": 0.25},
        {"name": "breath", "n_harmonics": None, "noise": True, "duration": 0.45},
    ]
    audio = dh.grow_timbre(small_model, 220.0, -20.0, np.zeros(dh.N_MFCC), stages=stages)
    assert len(audio) == round(1.0 * dh.SAMPLE_RATE)
    assert dh.stages_from_table(dh.stages_to_table(dh.GROWTH_STAGES)) == dh.GROWTH_STAGES


@pytest.mark.parametrize("field, value, why", [
    ("duration", "-1", "duration"), ("duration", "abc", "duration"), ("duration", 0, "duration"),
    ("duration", "1e9", "duration"), ("n_harmonics", "2.5", "n_harmonics"),
    ("n_harmonics", -3, "n_harmonics"), ("n_harmonics", "many", "n_harmonics"),
    ("noise", "maybe", "noise"), ("noise", 7, "noise"),
])
def test_bad_stage_values_name_the_stage(field, value, why):
    rows = [dict(r) if isinstance(r, dict) else r for r in FORM_ROWS]
    rows[1] = {**rows[1], field: value}
    with pytest.raises(ValueError, match=r"stage 'five'") as info:
        dh.stages_from_table(rows)
    assert why in str(info.value)
    with pytest.raises(ValueError, match="lacks"):
        dh.stages_from_table([{"name": "x", "noise": True, "duration": 1}])


def test_stage_controls_mask_harmonics_and_noise(small_model):
    stages = dh.stages_from_table(FORM_ROWS)
    info = dh.stage_controls(small_model, 220.0, -20.0, np.zeros(dh.N_MFCC), stages)
    assert [i["name"] for i in info] == ["root", "five", "breath"]
    root, five, breath = (i["harmonic_amplitudes"] for i in info)
    assert root[0] > 0 and np.all(root[1:] == 0)
    assert np.all(five[:5] > 0) and np.all(five[5:] == 0)
    assert np.count_nonzero(breath) > 5
    assert np.all(info[0]["noise_response"] == 0) and np.all(info[1]["noise_response"] == 0)
    assert info[2]["noise_response"].max() > 0
    assert len(info[2]["noise_frequencies"]) == len(info[2]["noise_response"])


def test_plot_stage_controls_has_an_axes_pair_per_stage(small_model):
    """Top row: one bar per harmonic at that stage's amplitude (the root stage: harmonic 1
    only; five: harmonics 1-5); bottom row: the noise filter's response (flat zero with noise
    off). The bars are the model's own harmonic amplitudes for the held note."""
    import matplotlib.pyplot as plt

    stages = dh.stages_from_table(FORM_ROWS)
    fig = dh.plot_stage_controls(small_model, 220.0, -20.0, np.zeros(dh.N_MFCC), stages)
    assert len(fig.axes) == 2 * len(stages)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split("\n")[0] for t in titles] == ["root", "five", "breath"]
    with torch.no_grad():
        f0, loudness, mfcc = dh.steady_note(small_model, 220.0, -20.0, np.zeros(dh.N_MFCC), 87)
        controls = small_model.get_controls(f0, loudness, mfcc)
    steady = (controls["amplitude"] * controls["harmonic_distribution"])[0, -1].numpy()
    rows = np.asarray(fig.axes).reshape(2, len(stages))  # subplots(2, n): row by row
    for column, count in enumerate((1, 5, None)):
        bars = np.array([patch.get_height() for patch in rows[0, column].patches])
        assert len(bars) == small_model.n_harmonics
        expected = steady * (np.arange(len(steady)) < (count or len(steady)))
        np.testing.assert_allclose(bars, expected, rtol=0.05, atol=1e-7)
        response = rows[1, column].lines[0].get_ydata()
        assert (np.max(response) > 0) == (count is None)
    plt.close(fig)


# ----------------------------------------------------------------------------- more edges
def test_read_midi_skips_the_drum_channel_unless_asked(tmp_path):
    drums = [(0, "on", 36, 90, 9), (240, "off", 36, 9)]
    lead = [(240, "on", 67, 90, 0), (480, "off", 67, 0)]
    path = write_midi(tmp_path / "band.mid", [drums, lead])
    assert [n.pitch_midi for n in dh.read_midi(path)] == [67.0]
    assert [n.pitch_midi for n in dh.read_midi(path, channel=9)] == [36.0]


def test_notes_as_pairs_dicts_and_names():
    from_text = dh.notes_to_controls("C4:0.4 R:0.2 Eb4:0.4")
    from_pairs = dh.notes_to_controls([("C4", 0.4), (None, 0.2), (63, 0.4)])
    from_dicts = dh.notes_to_controls([{"pitch_midi": 60, "duration": 0.4},
                                       {"pitch_midi": None, "duration": 0.2},
                                       {"pitch_midi": "D#4", "duration": 0.4}])
    for other in (from_pairs, from_dicts):
        for a, b in zip(from_text, other):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="outside"):
        dh.notes_to_controls([(200, 1.0)])


def test_recording_transfer_renders_and_long_melodies_are_refused(small_model, bundled_features,
                                                                  bundled_batch):
    result = dh.recording_to_controls(bundled_features[3], bundled_batch, pitch_shift=-12)
    assert result["octave_shift"] == 0
    audio = dh.render_melody(small_model, result["f0"], result["loudness"],
                             dh.timbre_mfcc(bundled_batch))
    assert len(audio) == len(result["f0"]) * dh.HOP_LENGTH and np.abs(audio).max() > 0.01
    f0, loudness = dh.notes_to_controls("C4:2")
    with pytest.raises(ValueError, match="max_seconds"):
        dh.render_melody(small_model, f0, loudness, np.zeros(dh.N_MFCC), max_seconds=1.0)
