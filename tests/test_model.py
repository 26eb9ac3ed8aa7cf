"""grown_timbres/model.py: DDSPModel's shapes and controls, the one sample rate and hop, and
render, the one way to play a model."""
import numpy as np
import pytest
import torch

from grown_timbres.config import HOP_LENGTH, N_MFCC, SAMPLE_RATE
from grown_timbres.model import DDSPModel, render
from grown_timbres.model_config import N_HARMONICS, N_NOISE_BANDS
from grown_timbres.synth import filtered_noise, harmonic_synth
from conftest import small_inputs

HOP = HOP_LENGTH


def room_taps(model):
    """The model's room impulse response [ROOM_SECONDS * sample_rate]."""
    room = model.part("room")
    return room.impulse_response(model.weights_of(room))


def test_forward_shapes_and_values():
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=64)
    f0, loudness, mfcc = small_inputs()
    audio, harmonic, noise = model(f0, loudness, mfcc)
    assert audio.shape == (2, 40 * HOP) and audio.dtype == torch.float32
    assert set(harmonic) == {"amplitude", "harmonic_distribution"}
    assert harmonic["amplitude"].shape == (2, 40, 1)
    assert harmonic["harmonic_distribution"].shape == (2, 40, N_HARMONICS)
    assert noise.shape == (2, 40, N_NOISE_BANDS)
    for tensor in (audio, harmonic["amplitude"], harmonic["harmonic_distribution"], noise):
        assert torch.all(torch.isfinite(tensor))
    assert torch.all(harmonic["amplitude"] > 0) and torch.all(noise > 0)
    torch.testing.assert_close(harmonic["harmonic_distribution"].sum(-1), torch.ones(2, 40))
    # the audio is the harmonic synthesizer (amplitude x distribution) plus the filtered noise
    torch.manual_seed(3)
    audio, harmonic, noise = model(f0, loudness, mfcc)
    torch.manual_seed(3)
    parts = (harmonic_synth(f0, harmonic["amplitude"] * harmonic["harmonic_distribution"]),
             filtered_noise(noise))
    torch.testing.assert_close(audio, parts[0] + parts[1], rtol=0, atol=1e-6)
    # an untrained model's noise starts ~60 dB below its harmonics (magenta's -5 bias)
    for i in range(2):
        noise_db = 10 * np.log10(parts[1][i].detach().double().square().mean().item()
                                 / parts[0][i].detach().double().square().mean().item())
        assert noise_db < -40, noise_db


def test_controls_respect_nyquist_and_config():
    model = DDSPModel(hidden_size=64, n_harmonics=32)
    f0 = torch.full((1, 10, 1), 1000.0)  # harmonics 12..32 are at or above 11025 Hz
    controls = model.get_controls(f0, torch.full((1, 10, 1), -20.0), torch.zeros(1, 10, N_MFCC))
    dist = controls["harmonic_distribution"]
    assert dist.shape == (1, 10, 32)
    assert torch.all(dist[..., 11:] == 0) and torch.all(dist[..., :11] > 0)
    assert model.config["hidden_size"] == 64 and model.config["n_harmonics"] == 32


def test_untrained_noise_starts_quiet():
    """magenta's -5 bias: the initial noise filter is far below the harmonic amplitude."""
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=64)
    controls = model.get_controls(*small_inputs())
    assert controls["noise_magnitudes"].mean() < 0.1 * controls["amplitude"].mean()


def test_a_model_plays_at_its_own_rates_and_refuses_data_at_others():
    """Issue 23: sample_rate and hop_length are the model's settings (issue 10 refused all but
    the config's): a model at 16 kHz with hop 64 renders 64 samples a frame and silences
    harmonics above its own Nyquist; data at other rates than the model's is refused, naming
    both."""
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=16, n_harmonics=8, sample_rate=16000, hop_length=64)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    assert render(model, f0, loudness, mfcc).shape == (1, 20 * 64)
    high = torch.full_like(f0, 2000.0)  # harmonics 4.. are at or above 8000 Hz
    distribution = model.get_controls(high, loudness, mfcc)["harmonic_distribution"]
    assert torch.all(distribution[..., 3:] == 0) and torch.all(distribution[..., :3] > 0)
    model.check_data({"sample_rate": 16000, "hop_length": 64})
    with pytest.raises(ValueError, match=f"the batch: made at {SAMPLE_RATE} Hz with hop {HOP}, the "
                                         "model at 16000 Hz with hop 64"):
        model.check_data({"f0": f0}, "the batch")  # a dict of before issue 23: config's rates
    from grown_timbres.growth import held_note

    features = {"f0": f0[0, :, 0].numpy(), "voiced": np.ones(20, bool), "path": "take.wav",
                "loudness": loudness[0, :, 0].numpy(), "mfcc": mfcc[0].numpy()}
    with pytest.raises(ValueError, match=f"the features of take.wav: made at {SAMPLE_RATE} Hz"):
        held_note(model, features)
    config = DDSPModel(hidden_size=16).config
    assert (config.sample_rate, config.hop_length) == (SAMPLE_RATE, HOP)
    for field, bad in (("hop_length", 8), ("sample_rate", 1000)):
        with pytest.raises(ValueError, match=f"{field}={bad} is outside"):
            DDSPModel(**{field: bad})


def test_render_is_seeded_leaves_the_global_rng_alone_and_restores_the_mode():
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=32)
    inputs = small_inputs(batch=1, n_frames=20)
    state = torch.get_rng_state()
    first = render(model, *inputs, seed=3)
    again = render(model, *inputs, seed=3)
    other = render(model, *inputs, seed=4)
    assert first.shape == (1, 20 * HOP) and first.dtype == np.float32
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert torch.equal(torch.get_rng_state(), state) and model.training


def test_render_gains_mute_what_they_name():
    model = DDSPModel(hidden_size=32)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    silent = render(model, f0, loudness, mfcc, harmonic_gain=torch.zeros(1, 20, N_HARMONICS),
                    noise_gain=torch.zeros(1, 20, 1))
    assert np.max(np.abs(silent)) == 0.0
    noise_only = render(model, f0, loudness, mfcc,
                        harmonic_gain=torch.zeros(1, 20, N_HARMONICS))
    harmonic_only = render(model, f0, loudness, mfcc, noise_gain=torch.zeros(1, 20, 1))
    both = render(model, f0, loudness, mfcc)
    assert np.max(np.abs(noise_only)) > 0 and np.max(np.abs(harmonic_only)) > 0
    np.testing.assert_allclose(both, noise_only + harmonic_only, atol=1e-6)



def test_the_room_adds_its_wet_part_and_nothing_else():
    """A model with a room: room_gain 0 renders the dry synthesizer, 1 (or none) adds the
    room's taps convolved with it; a model without a room refuses room_gain; the switch is
    True or False."""
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=32, room=True)
    with torch.no_grad():
        model.room_level.fill_(0.05)  # an audible room: the wet part is compared, not lost
    assert model.config.room is True and model.config["reverb"] is True  # the old name reads
    assert room_taps(model).shape == (SAMPLE_RATE,)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    dry = render(model, f0, loudness, mfcc, room_gain=torch.zeros(1, 20, 1))
    room = render(model, f0, loudness, mfcc, room_gain=torch.ones(1, 20, 1))
    taps = room_taps(model).detach().double().numpy()
    wet = np.convolve(dry[0].astype(np.float64), np.r_[0.0, taps[1:]])[: dry.shape[1]]
    np.testing.assert_allclose(room[0] - dry[0], wet, atol=1e-6)
    np.testing.assert_array_equal(render(model, f0, loudness, mfcc), room)
    with pytest.raises(ValueError, match="room_gain: this model has no room"):
        render(DDSPModel(hidden_size=8), f0, loudness, mfcc, room_gain=torch.ones(1, 20, 1))
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="room=.* is not True or False"):
            DDSPModel(hidden_size=8, room=bad)



@pytest.mark.parametrize("gain", [0.25, 0.5, 0.75])
def test_a_room_gain_between_0_and_1_scales_the_wet_part_linearly(gain):
    """The growth's room stage fades in: room_gain g in (0, 1) adds g times the full room's
    wet part (at 0 and 1 a gain applied twice would pass unseen; here it is off by g)."""
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=32, room=True)
    with torch.no_grad():
        model.room_level.fill_(0.05)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)

    def rendered(room_gain):
        return render(model, f0, loudness, mfcc, room_gain=torch.full((1, 20, 1), room_gain))[0]

    dry, full = rendered(0.0), rendered(1.0)
    assert np.abs(full - dry).max() > 1e-3  # the wet part is audible
    np.testing.assert_allclose(rendered(gain) - dry, gain * (full - dry), atol=1e-6)

# ------------------------------------------ issue 13, class 5: nothing non-finite is rendered
def poisoned(name, index, value):
    """small_inputs(batch=2, n_frames=20) with inputs[name][index] = value."""
    def make():
        inputs = dict(zip(("f0", "loudness", "mfcc"), small_inputs(batch=2, n_frames=20)))
        inputs[name] = inputs[name].clone()
        inputs[name][index] = value
        return inputs
    return make


F0_RANGE = ("outside 7.72 to 13290 Hz (every MIDI note, a semitone to spare; an unvoiced frame "
            "keeps a pitch, its loudness silences it)")
BAD_RENDER_INPUTS = {  # inputs, the whole message
    "nan_f0": (poisoned("f0", (0, 7, 0), float("nan")), "render input f0: 1 of 40 values are "
               "NaN or infinite; the first, nan, at frame 7 of item 0"),
    "zero_f0": (poisoned("f0", (1, 3, 0), 0.0), f"render input f0: 1 of 40 values are "
                f"{F0_RANGE}; the first, 0, at frame 3 of item 1"),
    "negative_f0": (poisoned("f0", (1, slice(5, None), 0), -440.0), "render input f0: 15 of 40 "
                    f"values are {F0_RANGE}; the first, -440, at frame 5 of item 1"),
    "tiny_f0": (poisoned("f0", (0, 2, 0), 1e-30), "render input f0: 1 of 40 values are "  # 21/9
                f"{F0_RANGE}; the first, 1e-30, at frame 2 of item 0"),
    "below_midi_0": (poisoned("f0", (0, 2, 0), 7.7), "render input f0: 1 of 40 values are "
                     f"{F0_RANGE}; the first, 7.7, at frame 2 of item 0"),
    "huge_f0": (poisoned("f0", (1, 0, 0), 1e6), "render input f0: 1 of 40 values are "
                f"{F0_RANGE}; the first, 1e+06, at frame 0 of item 1"),
    "huge_loudness": (poisoned("loudness", (0, 3, 0), 1e30), "render input loudness: 1 of 40 "
                      "values are outside [-80, 40] dB; the first, 1e+30, at frame 3 of item 0"),
    "inf_loudness": (poisoned("loudness", (1, 0, 0), float("inf")), "render input loudness: 1 "
                     "of 40 values are NaN or infinite; the first, inf, at frame 0 of item 1"),
    "loudness_below_floor": (poisoned("loudness", (0, 19, 0), -200.0), "render input "
                             "loudness: 1 of 40 values are outside [-80, 40] dB; the first, "
                             "-200, at frame 19 of item 0"),
    "nan_mfcc": (poisoned("mfcc", (1, 5, 2), float("nan")), "render input mfcc: 1 of 800 "
                 "values are NaN or infinite; the first, nan, at frame 5 of item 1"),
    "huge_mfcc": (poisoned("mfcc", (0, 9), 1e30), "render input mfcc: 20 of 800 values are "
                  "beyond +/-10000; the first, 1e+30, at frame 9 of item 0"),
}


@pytest.mark.parametrize("case", list(BAD_RENDER_INPUTS))
def test_render_refuses_a_bad_input_naming_it_and_its_first_frame(case):
    """A NaN timbre or a loudness of 1e30 dB used to render NaN audio in silence."""
    make, message = BAD_RENDER_INPUTS[case]
    with pytest.raises(ValueError) as info:
        render(DDSPModel(hidden_size=32), **make())
    assert str(info.value) == message


def test_render_refuses_mismatched_shapes_bad_gains_and_non_finite_weights():
    model = DDSPModel(hidden_size=32)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    with pytest.raises(ValueError) as info:
        render(model, f0, loudness[:, :10], mfcc)
    assert str(info.value) == ("render inputs: f0 [1, 20, 1], loudness [1, 10, 1] and mfcc "
                               "[1, 20, 20] must be [B, T, 1], [B, T, 1] and [B, T, 20] with T > 0")
    gain = torch.ones(1, 20, 1)
    gain[0, 12] = float("nan")
    with pytest.raises(ValueError, match=r"^render input noise_gain: 1 of 20 values are NaN "
                                         r"or infinite; the first, nan, at frame 12$"):
        render(model, f0, loudness, mfcc, noise_gain=gain)
    with torch.no_grad():
        model.out_proj.bias[3] = float("nan")
    with pytest.raises(ValueError) as info:
        render(model, f0, loudness, mfcc)
    assert str(info.value) == ("render input model weight out_proj.bias: 1 NaN or infinite "
                               "values; load a checkpoint saved before training went non-finite")


def test_every_midi_note_renders_and_the_f0_range_is_the_configs():
    """Issue 21, class 9: the f0 range a render takes holds every MIDI note (what note lists
    and MIDI files may name) with a semitone to spare; MIDI 0 and 127 render, without a word
    below Nyquist."""
    from grown_timbres.config import RENDER_F0_MAX_HZ, RENDER_F0_MIN_HZ
    from grown_timbres.pitch import midi_to_hz

    assert midi_to_hz(-1) == pytest.approx(RENDER_F0_MIN_HZ) and RENDER_F0_MIN_HZ < 7.73
    assert midi_to_hz(128) == pytest.approx(RENDER_F0_MAX_HZ) and RENDER_F0_MAX_HZ > 13289
    model = DDSPModel(hidden_size=16)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    for midi in (0, 124):  # C-1 (8.18 Hz) and the highest note below Nyquist (10548 Hz)
        audio = render(model, torch.full_like(f0, float(midi_to_hz(midi))), loudness, mfcc)
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0


# ------------------------------------------ issue 21, class 9: implausible but finite inputs
def controls_of(model, n_frames=20):
    """(f0 [1, T, 1], the model's controls for small_inputs) as render_controls takes them."""
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=n_frames)
    with torch.no_grad():
        return f0, model.get_controls(f0, loudness, mfcc)


@pytest.mark.parametrize("name, value, limit", [
    ("amplitude", 1e30, "2"), ("amplitude", 2.1, "2"), ("harmonic_distribution", 1.5, "1"),
    ("noise_magnitudes", 1e30, "2"), ("noise_magnitudes", -1.0, "2"),
    ("harmonic_gain", 1e30, "1, a gain mutes or fades"), ("noise_gain", 2.0, "1, a gain mutes "
     "or fades"), ("room_gain", -0.5, "1, a gain mutes or fades")])
def test_a_control_or_gain_outside_its_range_is_refused_naming_it_value_and_range(name, value,
                                                                                  limit):
    """Every control (at most what get_controls outputs) and every gain (0 to 1): a value like
    1e30 used to render at 1e30."""
    from grown_timbres.model import render_controls

    model = DDSPModel(hidden_size=16, room=True)
    f0, controls = controls_of(model)
    gains = {"harmonic_gain": torch.ones(1, 20, N_HARMONICS), "noise_gain": torch.ones(1, 20, 1),
             "room_gain": torch.ones(1, 20, 1)}
    values = {**controls, **gains}
    values[name] = values[name].clone()
    values[name][0, 7, 0] = value
    with pytest.raises(ValueError) as info:
        render_controls(model, f0, {k: values[k] for k in controls},
                        **{k: values[k] for k in gains})
    assert str(info.value) == (f"render input {name}: 1 of {values[name].numel()} values are "
                               f"outside 0 to {limit}; the first, {value:g}, at frame 7")


def test_a_room_far_louder_than_any_is_refused_and_a_learned_one_plays():
    """Issue 21, class 9: a room level of 1e30 used to render with a peak of 6e29. A room whose
    wet part is more than ROOM_MAX_GAIN_DB above the dry sound is refused by every render (the
    decoder's and the growth's); one as loud as BENCHMARKS.md's learned room plays."""
    from grown_timbres.growth import grow_timbre, held_note
    from grown_timbres.room_part import ROOM_MAX_GAIN_DB

    torch.manual_seed(0)
    model = DDSPModel(hidden_size=16, room=True)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    features = {"f0": f0[0, :, 0].numpy(), "voiced": np.ones(20, bool),
                "loudness": loudness[0, :, 0].numpy(), "mfcc": mfcc[0].numpy()}
    note = held_note(model, features)

    def wet_db():
        return 10 * np.log10(room_taps(model)[1:].detach().double().square().sum().item())

    with torch.no_grad():
        model.room_level.fill_(0.069)  # BENCHMARKS.md: level 0.069, decay 0.175 s
        model.room_decay.fill_(0.175)
    assert 0 < wet_db() < 10
    assert np.isfinite(render(model, f0, loudness, mfcc)).all()
    assert np.isfinite(grow_timbre(model, note, [("all", "all", 1, 0.2, 1)])).all()
    with torch.no_grad():
        model.room_level.fill_(1e30)
    assert wet_db() > 500
    for call in (lambda: render(model, f0, loudness, mfcc),
                 lambda: grow_timbre(model, note, [("all", "all", 1, 0.2, 1)])):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == (
            f"render input room: its wet part is {wet_db():+.0f} dB against the dry sound, "
            f"above ROOM_MAX_GAIN_DB=+{ROOM_MAX_GAIN_DB:g} dB: the model's room weights are no "
            "room's; load a trained checkpoint")


def test_render_warns_when_notes_are_above_nyquist():
    """Every harmonic of a note at or above Nyquist is silenced: the render is the quiet noise
    alone, which used to pass without a word."""
    model = DDSPModel(hidden_size=32)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    f0 = f0.clone()
    f0[0, 4:] = 12544.0  # about G9, MIDI 127
    with pytest.warns(UserWarning) as caught:
        audio = render(model, f0, loudness, mfcc)
    assert [str(w.message) for w in caught] == [
        "render input f0: 16 of 20 values are at or above Nyquist (11025 Hz; the first, "
        "12544, at frame 4): no harmonic sounds there, only the noise (near-silence)"]
    assert np.isfinite(audio).all()


def test_every_render_path_checks_its_inputs():
    """held_note, grow_timbre, render_melody and resynthesize all reach check_render_inputs
    (the decoder's inputs) or check_synthesis_inputs (the synthesizer's, which render_controls,
    the one way to play, applies): each names the bad input."""
    from grown_timbres.growth import HeldNote, grow_timbre, held_note
    from grown_timbres.scoring import resynthesize
    from grown_timbres.transfer import render_melody

    model = DDSPModel(hidden_size=32)
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    nan_mfcc = np.full(N_MFCC, np.nan, np.float32)
    features = {"f0": np.full(20, 261.6), "voiced": np.ones(20, bool),
                "loudness": np.full(20, -25.0), "mfcc": np.tile(nan_mfcc, (20, 1))}
    noisy = HeldNote(261.6, 0.1, np.full(64, 1 / 64), np.full(65, np.nan), frames=20)
    calls = {
        "held_note": lambda: held_note(model, features),
        "grow_timbre": lambda: grow_timbre(model, noisy),
        "render_melody": lambda: render_melody(model, f0[0, :, 0].numpy(),
                                               loudness[0, :, 0].numpy(), nan_mfcc),
        "resynthesize": lambda: resynthesize(model, {"f0": -f0, "loudness": loudness,
                                                     "mfcc": mfcc, "lengths": [20]}),
    }
    expected = {"held_note": "render input mfcc:", "grow_timbre": "render input noise_magnitudes:",
                "render_melody": "render input mfcc:", "resynthesize": "render input f0:"}
    for name, call in calls.items():
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(expected[name]), (name, str(info.value))
