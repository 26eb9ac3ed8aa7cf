"""grown_timbres/model.py: DDSPModel's shapes and controls, the one sample rate and hop, and
render, the one way to play a model."""
import numpy as np
import pytest
import torch

from grown_timbres.config import HOP_LENGTH, N_MFCC, SAMPLE_RATE
from grown_timbres.model import N_HARMONICS, N_NOISE_BANDS, DDSPModel, render
from grown_timbres.synth import filtered_noise, harmonic_synth
from conftest import small_inputs

HOP = HOP_LENGTH


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


def test_model_refuses_another_hop_or_sample_rate():
    """Changed on purpose (issue 10): DDSPModel(hop_length=128) used to be accepted and then
    trained against features and targets built with hop 256. The model's rate and hop are the
    features' (config.SAMPLE_RATE, config.HOP_LENGTH): any other value is refused."""
    with pytest.raises(ValueError, match=f"hop {HOP}"):
        DDSPModel(hop_length=128)
    with pytest.raises(ValueError, match=f"{SAMPLE_RATE} Hz"):
        DDSPModel(sample_rate=44100)
    config = DDSPModel(hidden_size=16).config
    assert (config["sample_rate"], config["hop_length"]) == (SAMPLE_RATE, HOP)


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
