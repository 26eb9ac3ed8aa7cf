"""The synthesizer's parts (part.py, harmonic_part.py, noise_part.py, room_part.py): what each
declares, and that a new part, written here as a second noise filter and added to the model's
list alone, reaches the decoder, the optimizer, growth, melodies and checkpoints."""
import math

import numpy as np
import torch

from grown_timbres.checkpoints import load_checkpoint, save_checkpoint
from grown_timbres.growth import grow_timbre, held_note, stage_gains
from grown_timbres.model import DDSPModel, render
from grown_timbres.part import SynthPart
from grown_timbres.room_part import ROOM_NOISE_LR_SCALE, ROOM_SECONDS
from grown_timbres.stages import GROWTH_STAGES
from grown_timbres.synth import exp_sigmoid, filtered_noise
from grown_timbres.step import make_optimizer
from grown_timbres.transfer import render_melody
from conftest import small_inputs

TINY = {"hidden_size": 8, "n_harmonics": 4, "n_noise_bands": 5, "z_dim": 2}


def test_each_part_declares_its_controls_gain_weights_and_tail():
    model = DDSPModel(room=True, **TINY)
    assert [part.name for part in model.parts] == ["harmonic", "noise", "room"]
    assert [p.name for p in DDSPModel(**TINY).parts] == ["harmonic", "noise"]
    assert {name: size for part in model.parts for name, size in part.heads().items()} == {
        "amplitude": 1, "harmonic_distribution": 4, "noise_magnitudes": 5}
    assert model.out_proj.out_features == 1 + 4 + 5
    assert [part.gain for part in model.parts] == ["harmonic_gain", "noise_gain", "room_gain"]
    assert [part.stage_switch for part in model.parts] == ["n_harmonics", "noise", "room"]
    room = model.part("room")
    assert list(model.weights_of(room)) == ["room_noise", "room_level", "room_decay"]
    assert list(model.state_dict())[:3] == ["room_noise", "room_level", "room_decay"]
    assert room.lr_scales == {"room_noise": ROOM_NOISE_LR_SCALE}
    assert model.tail_seconds == ROOM_SECONDS and DDSPModel(**TINY).tail_seconds == 0
    groups = model.parameter_groups(1e-3)
    assert [g["name"] for g in groups] == ["model", "room_noise"]
    assert groups[1]["params"][0] is model.room_noise


class SecondNoise(SynthPart):
    """A toy part: a second filtered noise, its own 3 bands and a trained level, switched with
    the noise in growth stages, ringing on for 0.1 s."""

    name = "second_noise"
    gain = "second_noise_gain"
    stage_switch = "noise"
    tail_seconds = 0.1
    weight_names = ("second_noise_level",)
    lr_scales = {"second_noise_level": 2.0}
    control_max = {"second_noise_magnitudes": 2.0}

    def heads(self):
        return {"second_noise_magnitudes": 3}

    def initial_weights(self):
        return {"second_noise_level": torch.tensor([0.5])}

    def controls(self, heads, f0):
        return {"second_noise_magnitudes": exp_sigmoid(heads["second_noise_magnitudes"])}

    def play(self, audio, f0, controls, gain, weights, waves=None, generator=None):
        magnitudes = controls["second_noise_magnitudes"] * weights["second_noise_level"]
        if gain is not None:
            magnitudes = magnitudes * gain
        return audio + filtered_noise(magnitudes, self.config.hop_length, generator)


class ModelWithSecondNoise(DDSPModel):
    PARTS = DDSPModel.PARTS + (SecondNoise,)  # the model's list, one entry more


def test_a_new_part_reaches_decoder_optimizer_growth_melodies_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = ModelWithSecondNoise(**TINY)
    assert model.out_proj.out_features == 1 + 4 + 5 + 3
    f0, loudness, mfcc = small_inputs(batch=1, n_frames=20)
    assert model.get_controls(f0, loudness, mfcc)["second_noise_magnitudes"].shape == (1, 20, 3)
    silent = render(model, f0, loudness, mfcc, second_noise_gain=torch.zeros(1, 20, 1))
    assert np.abs(render(model, f0, loudness, mfcc) - silent).max() > 0  # it plays

    groups = make_optimizer(model, lr=1e-3).param_groups
    assert [(g["name"], g["lr"]) for g in groups] == [("model", 1e-3),
                                                      ("second_noise_level", 2e-3)]

    gains = stage_gains(GROWTH_STAGES, 500, model.parts, 0.01)
    np.testing.assert_array_equal(gains["second_noise_gain"], gains["noise_gain"])
    features = {"f0": f0[0, :, 0].numpy(), "voiced": np.ones(20, bool),
                "loudness": loudness[0, :, 0].numpy(), "mfcc": mfcc[0].numpy()}
    note = held_note(model, features)
    assert note.other_controls["second_noise_magnitudes"].shape == (3,)
    assert np.isfinite(grow_timbre(model, note, GROWTH_STAGES[-1:])).all()

    melody = render_melody(model, f0[0, :, 0], loudness[0, :, 0], mfcc[0].mean(0))
    tail = math.ceil(0.1 * model.config.sample_rate / model.config.hop_length)
    assert melody.shape == ((20 + tail) * model.config.hop_length,)

    with torch.no_grad():
        model.second_noise_level.fill_(0.25)
    save_checkpoint(tmp_path / "second.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "second.pt", ModelWithSecondNoise(**TINY))
    assert loaded.second_noise_level.item() == 0.25
