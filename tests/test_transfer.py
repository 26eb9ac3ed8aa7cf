"""grown_timbres/transfer.py: notes as controls (attack, release, legato, vibrato), melodies
rendered in the learned timbre, training ranges and another recording's pitch and loudness
moved into them."""
import numpy as np
import pytest
import torch

from grown_timbres.config import FRAME_RATE, HOP_LENGTH, LOUDNESS_FLOOR_DB, N_MFCC, SAMPLE_RATE
from grown_timbres.batching import collate
from grown_timbres.analysis import estimate_f0
from grown_timbres.pitch import hz_to_midi
from grown_timbres.model import DDSPModel, render
from grown_timbres.notes import Note, parse_note_list
from grown_timbres.melody import MELODY_LOUDNESS_DB, notes_to_controls
from grown_timbres.transfer import (notes_to_melody, recording_to_controls, render_melody,
                                    timbre_mfcc,
                                    training_ranges)
from conftest import cents, midi_to_hz


FRAME = 1.0 / FRAME_RATE  # seconds per control frame


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return DDSPModel(hidden_size=32)


def frame_times(n_frames):
    return np.arange(n_frames) / FRAME_RATE


def test_only_rests_cannot_become_controls():
    with pytest.raises(ValueError, match="no pitched note"):
        notes_to_controls("R:1 R:0.5")


# ----------------------------------------------------------------------------- note shapes
def test_attack_rises_from_floor_and_release_falls_within_their_times():
    level, attack, release = -20.0, 0.03, 0.1
    f0, loudness = notes_to_controls("C4:0.5 R:0.5 E4:0.5", loudness_db=level, attack=attack,
                                        release=release)
    times = frame_times(len(loudness))
    assert f0.dtype == loudness.dtype == np.float32 and f0.shape == loudness.shape
    assert times[-1] >= 1.5 + release  # the last note's release fits
    for start, end in ((0.0, 0.5), (1.0, 1.5)):
        before = (times < start) & (times > start - 0.2)
        assert np.all(loudness[before] == LOUDNESS_FLOOR_DB)  # from the floor ...
        rising = (times >= start) & (times < start + attack)
        assert rising.sum() >= 2 and np.all(np.diff(loudness[rising]) > 0)
        np.testing.assert_allclose(  # ... linearly in dB ...
            loudness[rising], -80 + 60 * (times[rising] - start) / attack, atol=1e-3)
        held = (times >= start + attack) & (times <= end)
        assert np.allclose(loudness[held], level)  # at the note level within the attack time
        falling = (times > end) & (times < end + release)
        assert np.all(np.diff(loudness[falling]) < 0) and np.all(loudness[falling] < level)
        after = (times >= end + release) & (times < end + 0.4)
        assert np.all(loudness[after] == LOUDNESS_FLOOR_DB)  # at the floor within release
    assert loudness[-1] == LOUDNESS_FLOOR_DB


def test_legato_keeps_loudness_up_and_glides_in_log_frequency():
    portamento = 0.03
    f0, loudness = notes_to_controls("C4:0.5 E4:0.5", loudness_db=-20, portamento=portamento)
    times = frame_times(len(f0))
    inside = (times >= 0.03) & (times <= 1.0)
    assert np.all(loudness[inside] == -20.0)  # no dip between tied notes
    midi = hz_to_midi(f0.astype(np.float64))
    glide = (times >= 0.5) & (times < 0.5 + portamento)
    assert glide.sum() >= 2 and np.all(np.diff(midi[glide]) > 0)
    np.testing.assert_allclose(midi[glide], 60 + 4 * (times[glide] - 0.5) / portamento, atol=1e-4)
    np.testing.assert_allclose(midi[(times >= 0.5 + portamento) & (times <= 1.0)], 64, atol=1e-4)
    np.testing.assert_allclose(midi[times < 0.5], 60, atol=1e-4)


def test_without_legato_notes_are_reattacked_and_pitch_steps():
    f0, loudness = notes_to_controls("C4:0.5 E4:0.5", loudness_db=-20, legato=False)
    times = frame_times(len(f0))
    around = (times > 0.45) & (times < 0.55)
    assert loudness[around].min() < -30  # a dip between the notes
    midi = hz_to_midi(f0.astype(np.float64))
    np.testing.assert_allclose(midi[times >= 0.5 - 1e-9][:5], 64, atol=1e-4)


def test_vibrato_rate_and_depth():
    rate, depth, delay, fade = 5.5, 40.0, 0.3, 0.2
    f0, _ = notes_to_controls("A4:3", vibrato_rate=rate, vibrato_depth_cents=depth,
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
        notes_to_controls("C4:1", attack=-0.1)
    with pytest.raises(ValueError, match="loudness_db"):
        notes_to_controls("C4:1", loudness_db=-90)
    f0, _ = notes_to_controls([{"pitch_midi": 60, "duration": 0.5}, Note(None, 0.2),
                                  (62, 0.3)], pitch_shift=12)
    assert cents(f0[0], midi_to_hz(72)) == pytest.approx(0, abs=1e-3)


# ----------------------------------------------------------------------------- rendering
def test_rendered_melody_has_the_notes_pitches(small_model):
    notes = parse_note_list("C4:0.5 E4:0.5 G4:0.5 C5:0.7")
    f0, loudness = notes_to_controls(notes, loudness_db=-20)  # no vibrato
    mfcc = np.zeros(N_MFCC, np.float32)
    with torch.no_grad():  # the untrained model does produce harmonic content
        controls = small_model.get_controls(torch.from_numpy(f0)[None, :, None],
                                            torch.from_numpy(loudness)[None, :, None],
                                            torch.zeros(1, len(f0), N_MFCC))
    harmonic = (controls["amplitude"] * controls["harmonic_distribution"]).sum(-1)
    assert float(harmonic.min()) > 0.05
    audio = render_melody(small_model, f0, loudness, mfcc)
    assert audio.dtype == np.float32 and len(audio) == len(f0) * HOP_LENGTH
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # not silent
    measured, voiced = estimate_f0(audio)
    start, errors = 0.0, []
    for note in notes:
        frames = slice(int(np.ceil((start + 0.2 * note.duration) * FRAME_RATE)),
                       int(np.floor((start + 0.8 * note.duration) * FRAME_RATE)) + 1)
        assert voiced[frames].mean() > 0.9
        errors.append(cents(np.median(measured[frames]), midi_to_hz(note.pitch_midi)))
        start += note.duration
    print("cents error per note:", np.round(errors, 2))
    assert np.all(np.abs(errors) < 20), errors


def test_render_melody_is_seeded_faded_bounded_and_restores_mode(small_model):
    f0, loudness = notes_to_controls("A3:0.3 C4:0.3", loudness_db=0)
    mfcc = np.random.default_rng(0).normal(size=(len(f0), N_MFCC)).astype(np.float32)
    small_model.train()
    state = torch.get_rng_state()
    first = render_melody(small_model, f0, loudness + 30, mfcc, seed=3)  # loud: level kept
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert small_model.training
    second = render_melody(small_model, f0, loudness + 30, mfcc, seed=3)
    np.testing.assert_array_equal(first, second)
    raw = render(small_model, torch.from_numpy(f0).reshape(1, -1, 1),
                 torch.from_numpy(loudness + 30).reshape(1, -1, 1),
                 torch.from_numpy(mfcc)[None], seed=3)[0]
    middle = slice(1000, len(raw) - 1000)  # clear of the 10 ms fades: the model's own samples
    np.testing.assert_allclose(first[middle], raw[middle], rtol=1e-5, atol=1e-6)
    assert first[0] == 0.0 and abs(first[-1]) < 1e-2
    with pytest.raises(ValueError, match="same"):
        render_melody(small_model, f0, loudness[:-1], mfcc[0])
    with pytest.raises(ValueError, match="mfcc"):
        render_melody(small_model, f0, loudness, mfcc[:, :5])


def test_timbre_mfcc_of_one_file_and_of_the_whole_model(bundled_features):
    """In a batch of a whole tone and a 60-frame cut of another (padded to the long one by
    holding its last MFCC frame): one file's timbre is the mean of its own MFCC frames, and the
    whole model's is the mean of the two files' means (each file counts once, whatever its
    length), the padding ignored."""
    short = dict(bundled_features[5])
    short.update(path=short["path"] + "#short", audio=short["audio"][: 60 * HOP_LENGTH],
                 **{key: short[key][:60] for key in ("f0", "voiced", "loudness", "mfcc")})
    batch = collate([bundled_features[0], short])
    long_mean = bundled_features[0]["mfcc"].astype(np.float64).mean(0)
    short_mean = bundled_features[5]["mfcc"][:60].astype(np.float64).mean(0)
    np.testing.assert_allclose(timbre_mfcc(batch, 0), long_mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(timbre_mfcc(batch, 1), short_mean, rtol=1e-5, atol=1e-4)
    whole = timbre_mfcc(batch)
    assert whole.shape == (N_MFCC,)
    np.testing.assert_allclose(whole, (long_mean + short_mean) / 2, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------- recordings
def octave_lower_batch(features):
    """A fake training batch: the same tones one octave lower."""
    return collate([{**f, "f0": f["f0"] * np.float32(0.5)} for f in features[:3]])


def test_training_ranges_over_valid_voiced_frames(bundled_features, bundled_batch):
    ranges = training_ranges(bundled_batch)
    voiced_f0 = np.concatenate([f["f0"][f["voiced"]] for f in bundled_features])
    assert ranges["f0_median_hz"] == pytest.approx(np.median(voiced_f0), rel=1e-6)
    assert ranges["n_frames"] == len(voiced_f0)
    assert ranges["loudness_low_db"] <= ranges["loudness_median_db"] <= ranges["loudness_high_db"]
    assert ranges["loudness_low_db"] > LOUDNESS_FLOOR_DB  # silence is not voiced
    assert training_ranges(bundled_features) == ranges  # a list of features works the same


def test_notes_as_a_melody_play_at_the_training_median_shifted_beside_their_plain_controls(
        bundled_batch):
    notes = parse_note_list("C4:0.4 E4:0.4")
    level = training_ranges(bundled_batch)["loudness_median_db"]
    melody = notes_to_melody(notes, bundled_batch, pitch_shift=2, loudness_shift=-3,
                             vibrato_rate=5, vibrato_depth_cents=15)
    f0, loudness = notes_to_controls(notes, loudness_db=level - 3, pitch_shift=2,
                                     vibrato_rate=5, vibrato_depth_cents=15)
    plain_f0, plain_loudness = notes_to_controls(notes, loudness_db=level)
    for key, expected in (("f0", f0), ("loudness", loudness), ("original_f0", plain_f0),
                          ("original_loudness", plain_loudness)):
        np.testing.assert_array_equal(melody[key], expected)
    by_ranges = notes_to_melody(notes, training_ranges(bundled_batch))
    np.testing.assert_array_equal(by_ranges["original_loudness"], plain_loudness)
    untrained = notes_to_melody(notes)["original_loudness"]
    assert untrained.max() == pytest.approx(MELODY_LOUDNESS_DB, abs=1e-4)


def test_recording_an_octave_above_training_shifts_down_one_octave(bundled_features):
    recording = bundled_features[0]  # C4
    training = octave_lower_batch(bundled_features)
    result = recording_to_controls(recording, training)
    assert result["octave_shift"] == -1
    np.testing.assert_allclose(result["f0"], recording["f0"] * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(result["original_f0"], recording["f0"])
    shifted = recording_to_controls(recording, training, pitch_shift=2)
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
    result = recording_to_controls({**recording, "loudness": loudness}, stats)
    own_low, own_high = np.percentile(loudness[voiced], [5, 95])
    assert result["octave_shift"] == 0
    assert result["loudness_scale"] == pytest.approx(10 / (own_high - own_low))
    mapped = result["loudness"][voiced]
    np.testing.assert_allclose(np.percentile(mapped, [5, 95]), [-20, -10], atol=1e-3)
    louder = recording_to_controls({**recording, "loudness": loudness}, stats,
                                      loudness_shift=3)
    np.testing.assert_allclose(louder["loudness"][voiced], mapped + 3, atol=1e-4)
    silent = loudness <= LOUDNESS_FLOOR_DB
    assert np.all(louder["loudness"][silent] == LOUDNESS_FLOOR_DB)


def test_recording_from_a_file_shifts_up_towards_training(write_wav_file):
    seconds = 0.6
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    path = write_wav_file("hum.wav", 0.3 * np.sin(2 * np.pi * 220.0 * t))
    stats = {"f0_median_hz": 880.0 * 2 ** (4 / 12), "loudness_low_db": -20.0,
             "loudness_high_db": -15.0}  # a major third above A5: still two octaves up
    result = recording_to_controls(path, stats)
    assert result["octave_shift"] == 2 and result["path"] == str(path)
    voiced = result["voiced"]
    assert cents(np.median(result["f0"][voiced]), 880.0) == pytest.approx(0, abs=10)
    assert recording_to_controls(path, None)["octave_shift"] == 0


def test_recording_transfer_renders_and_long_melodies_are_refused(small_model, bundled_features,
                                                                  bundled_batch):
    result = recording_to_controls(bundled_features[3], bundled_batch, pitch_shift=-12)
    assert result["octave_shift"] == 0
    audio = render_melody(small_model, result["f0"], result["loudness"],
                             timbre_mfcc(bundled_batch))
    assert len(audio) == len(result["f0"]) * HOP_LENGTH and np.abs(audio).max() > 0.01
    f0, loudness = notes_to_controls("C4:2")
    with pytest.raises(ValueError, match="max_seconds"):
        render_melody(small_model, f0, loudness, np.zeros(N_MFCC), max_seconds=1.0)


def test_a_melody_above_nyquist_warns(small_model):
    """Issue 13, class 5: notes above Nyquist used to render near-silence without a word."""
    f0, loudness = notes_to_controls("A4:0.2 G9:0.2")
    with pytest.warns(UserWarning, match=r"^render input f0: \d+ of \d+ values are at or above "
                                         r"Nyquist \(11025 Hz; the first, 12543\.\d, at frame "
                                         r"\d+\): no harmonic sounds there"):
        audio = render_melody(small_model, f0, loudness, np.zeros(N_MFCC, np.float32))
    assert np.isfinite(audio).all()


def test_the_lowest_and_highest_notes_render_and_a_shift_past_them_is_refused(small_model):
    """Issue 21, class 9: every note a note list or a MIDI file may name renders, with up to a
    semitone of vibrato around it (MIDI 0, C-1, is 8.18 Hz: a buzz, but a note); shifted
    further, the f0 is refused by name with its range, where it used to render near-silence."""
    mfcc = np.zeros(N_MFCC, np.float32)
    f0, loudness = notes_to_controls("C-1:0.2 G9:0.2", vibrato_rate=5.0,
                                     vibrato_depth_cents=90.0, vibrato_delay=0.0)
    assert f0.min() < midi_to_hz(0) and f0.max() > midi_to_hz(127)  # the vibrato goes past both
    with pytest.warns(UserWarning, match="at or above Nyquist"):  # G9 is above it
        assert np.isfinite(render_melody(small_model, f0, loudness, mfcc)).all()
    f0, loudness = notes_to_controls("C-1:0.2", pitch_shift=-2)
    with pytest.raises(ValueError, match=r"^render input f0: \d+ of \d+ values are outside 7\.72 "
                                         r"to 13290 Hz \(every MIDI note, a semitone to spare; "
                                         r".*the first, 7\.28\d+, at frame 0$"):
        render_melody(small_model, f0, loudness, mfcc)


def test_a_melody_plays_dry_or_in_the_model_room_and_they_differ_by_the_room_alone(small_model):
    """A model with a room plays ROOM_SECONDS of silence after the melody, room or not, so
    the room rings out; dry and room renders are the same inputs with room_gain 0 and 1
    (whose difference is the room's wet part: test_model). A room asked of a model without
    one is refused."""
    from grown_timbres.audio import finish_render
    from grown_timbres.room_part import ROOM_SECONDS

    torch.manual_seed(0)
    roomy = DDSPModel(hidden_size=16, room=True)
    with torch.no_grad():
        roomy.room_level.fill_(0.05)
    f0, loudness = notes_to_controls("A3:0.3", loudness_db=-20)
    mfcc = np.zeros(N_MFCC, np.float32)
    tail = int(np.ceil(ROOM_SECONDS * FRAME_RATE))
    inputs = (torch.from_numpy(np.pad(f0, (0, tail), mode="edge")).reshape(1, -1, 1),
              torch.from_numpy(np.pad(loudness, (0, tail), constant_values=LOUDNESS_FLOOR_DB)
                               ).reshape(1, -1, 1),
              torch.zeros(1, len(f0) + tail, N_MFCC))
    dry = render_melody(roomy, f0, loudness, mfcc, room=False)
    room = render_melody(roomy, f0, loudness, mfcc, room=True)
    assert dry.shape == room.shape == ((len(f0) + tail) * HOP_LENGTH,)
    np.testing.assert_array_equal(render_melody(roomy, f0, loudness, mfcc), room)
    np.testing.assert_allclose(dry, finish_render(render(roomy, *inputs, room_gain=torch.zeros(
        1, len(f0) + tail, 1))[0]), atol=1e-6)
    np.testing.assert_allclose(room, finish_render(render(roomy, *inputs)[0]), atol=1e-6)
    assert np.max(np.abs(room - dry)) > 1e-3
    assert render_melody(small_model, f0, loudness, mfcc, room=False).shape == (
        len(f0) * HOP_LENGTH,)
    with pytest.raises(ValueError, match="room=True: this model has no room"):
        render_melody(small_model, f0, loudness, mfcc, room=True)


def test_a_recording_longer_than_a_melody_is_refused_before_its_features(write_wav_file,
                                                                           monkeypatch):
    """Files up to 30 minutes train, but a recording to play in the timbre is at most
    MAX_RENDER_SECONDS: a longer one is refused by name before pYIN spends minutes on it."""
    from grown_timbres.audio import AudioInputError
    from grown_timbres.config import SAMPLE_RATE

    path = write_wav_file("speech.wav", np.full(3 * SAMPLE_RATE, 0.1))
    monkeypatch.setattr("grown_timbres.transfer.MAX_RENDER_SECONDS", 2.0)
    monkeypatch.setattr("grown_timbres.transfer.extract_features",
                        lambda *a: pytest.fail("features computed for a refused recording"))
    with pytest.raises(AudioInputError, match=r"speech.wav: 3 s long; a melody is at most "
                                              r"MAX_RENDER_SECONDS=2 s"):
        recording_to_controls(path)
