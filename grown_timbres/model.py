"""The model: an MFCC encoder and a magenta-style RNN/FC decoder that drive the synthesizer,
and the one way to render audio from it.

    f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, N_MFCC] -> audio [B, T * HOP_LENGTH]
"""
from __future__ import annotations

import operator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from .config import HOP_LENGTH, LOUDNESS_FLOOR_DB, MODEL_LIMITS, N_MFCC, SAMPLE_RATE
from .features import hz_to_midi
from .synth import exp_sigmoid, filtered_noise, harmonic_synth, normalize_harmonic_distribution

N_HARMONICS = 64
N_NOISE_BANDS = 65  # noise filter: 65 magnitudes -> a 128-tap linear-phase FIR per frame
HIDDEN_SIZE = 512
Z_DIM = 16
NOISE_INITIAL_BIAS = -5.0  # magenta: start with quiet noise so harmonics are learned first


def check_model_config(config) -> dict:
    """A model configuration (some or all of DDSPModel's arguments) checked before anything is
    built: known fields only, whole numbers within config.MODEL_LIMITS. Returns it as plain
    ints; raises ValueError naming the field, its value and the limit."""
    if not isinstance(config, dict):
        raise ValueError(f"a model configuration is a dict of DDSPModel's arguments, got "
                         f"{type(config).__name__}")
    unknown = sorted(map(str, set(config) - set(MODEL_LIMITS)))
    if unknown:
        raise ValueError(f"unknown model configuration field(s) {unknown}; DDSPModel takes "
                         + ", ".join(MODEL_LIMITS))
    checked = {}
    for field, value in config.items():
        low, high = MODEL_LIMITS[field]
        try:
            if isinstance(value, bool):
                raise TypeError
            checked[field] = operator.index(value)
        except TypeError:
            raise ValueError(f"model configuration {field}={value!r} is not a whole number"
                             ) from None
        if low == high and value != low:
            raise ValueError(f"model configuration {field}={value} is not {low}: features and "
                             f"targets are built at {SAMPLE_RATE} Hz with hop {HOP_LENGTH} "
                             "(grown_timbres.config); the model must use the same")
        if not low <= value <= high:
            raise ValueError(f"model configuration {field}={value} is outside {low}..{high} "
                             f"(MODEL_LIMITS[{field!r}] in grown_timbres.config)")
    return checked


def mlp(in_size: int, hidden_size: int, n_layers: int = 3) -> nn.Sequential:
    """magenta's fc_stack: n_layers x [Linear, LayerNorm, LeakyReLU]."""
    layers = []
    for i in range(n_layers):
        layers += [nn.Linear(in_size if i == 0 else hidden_size, hidden_size),
                   nn.LayerNorm(hidden_size), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class DDSPModel(nn.Module):
    """MFCC encoder + magenta-style RNN/FC decoder driving a harmonic-plus-noise synthesizer.

    Inputs f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, N_MFCC]. The encoder maps each
    frame's MFCCs to a timbre code z [B, T, Z_DIM]; f0 (as MIDI / 127), loudness (as db / 80 + 1)
    and z each pass through their own MLP, a GRU runs over time, and the output MLP sees the
    three MLP outputs beside the GRU's. Heads: overall amplitude (1), harmonic distribution (H),
    noise filter magnitudes (M).

    sample_rate and hop_length are recorded in the config (and so in checkpoints) but are not
    free: features and loss targets are built at config.SAMPLE_RATE and config.HOP_LENGTH, so
    any other value is refused rather than trained against mismatched frames.
    """

    def __init__(self, n_harmonics: int = N_HARMONICS, n_noise_bands: int = N_NOISE_BANDS,
                 hidden_size: int = HIDDEN_SIZE, n_mfcc: int = N_MFCC, z_dim: int = Z_DIM,
                 sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH):
        super().__init__()
        self.config = check_model_config(dict(
            n_harmonics=n_harmonics, n_noise_bands=n_noise_bands, hidden_size=hidden_size,
            n_mfcc=n_mfcc, z_dim=z_dim, sample_rate=sample_rate, hop_length=hop_length))
        self.n_harmonics, self.n_noise_bands = n_harmonics, n_noise_bands
        self.mfcc_norm = nn.LayerNorm(n_mfcc)
        self.encoder = nn.Linear(n_mfcc, z_dim)
        self.f0_mlp = mlp(1, hidden_size)
        self.loudness_mlp = mlp(1, hidden_size)
        self.z_mlp = mlp(z_dim, hidden_size)
        self.gru = nn.GRU(3 * hidden_size, hidden_size, batch_first=True)
        self.out_mlp = mlp(4 * hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, 1 + n_harmonics + n_noise_bands)

    def get_controls(self, f0, loudness, mfcc) -> dict:
        """Synthesizer controls at frame rate: amplitude [B, T, 1], harmonic_distribution
        [B, T, H] (sums to 1 below Nyquist), noise_magnitudes [B, T, M]."""
        stacks = [self.f0_mlp(hz_to_midi(f0) / 127.0),
                  self.loudness_mlp(loudness / -LOUDNESS_FLOOR_DB + 1.0),
                  self.z_mlp(self.encoder(self.mfcc_norm(mfcc)))]
        recurrent, _ = self.gru(torch.cat(stacks, dim=-1))
        out = self.out_proj(self.out_mlp(torch.cat(stacks + [recurrent], dim=-1))).float()
        amplitude, distribution, noise = out.split(
            [1, self.n_harmonics, self.n_noise_bands], dim=-1)
        return {
            "amplitude": exp_sigmoid(amplitude),
            "harmonic_distribution": normalize_harmonic_distribution(
                exp_sigmoid(distribution), f0.float(), SAMPLE_RATE),
            "noise_magnitudes": exp_sigmoid(noise + NOISE_INITIAL_BIAS),
        }

    def synthesize(self, f0, controls: dict, harmonic_gain=None, noise_gain=None, waves=None,
                   generator: torch.Generator | None = None):
        """Audio [B, T * hop] from controls, in float32 whatever autocast says. Optional gains
        at frame rate mute or fade parts of the sound: harmonic_gain [B or 1, T, H],
        noise_gain [B or 1, T, 1] (used by the growth stages). `waves`: see harmonic_synth;
        `generator`: the noise's random source (default: torch's global one)."""
        with torch.autocast(f0.device.type, enabled=False):
            harmonic = controls["amplitude"] * controls["harmonic_distribution"]
            noise = controls["noise_magnitudes"]
            if harmonic_gain is not None:
                harmonic = harmonic * harmonic_gain
            if noise_gain is not None:
                noise = noise * noise_gain
            return (harmonic_synth(f0, harmonic, SAMPLE_RATE, HOP_LENGTH, waves)
                    + filtered_noise(noise, HOP_LENGTH, generator))

    def forward(self, f0, loudness, mfcc, waves=None):
        """-> (audio [B, T * hop], harmonic controls {amplitude, harmonic_distribution},
        noise controls [B, T, M]). `waves`: harmonic_waves(f0, H), when precomputed."""
        controls = self.get_controls(f0, loudness, mfcc)
        audio = self.synthesize(f0, controls, waves=waves)
        harmonic = {k: controls[k] for k in ("amplitude", "harmonic_distribution")}
        return audio, harmonic, controls["noise_magnitudes"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module itself, also when `torch.compile(model)` wrapped it."""
    return getattr(model, "_orig_mod", model)


@contextmanager
def evaluating(model):
    """Yield the plain module in eval mode without autograd; its mode is restored after.
    Rendering calls get_controls and synthesize eagerly: a compiled forward would recompile."""
    core = unwrap_model(model)
    was_training = core.training
    core.eval()
    try:
        with torch.no_grad():
            yield core
    finally:
        core.train(was_training)


def render_controls(model, f0, controls: dict, seed: int = 0, **gains) -> np.ndarray:
    """What the synthesizer plays for these controls (get_controls' dict, [B, T, ...]) at
    f0 [B, T, 1] Hz -> float32 audio [B, T * HOP_LENGTH] (numpy). The noise is seeded by
    `seed` without touching torch's global random state, so a render repeats exactly.
    `gains`: passed on to DDSPModel.synthesize (harmonic_gain, noise_gain)."""
    with evaluating(model) as core:
        generator = torch.Generator(device=f0.device).manual_seed(seed)
        audio = core.synthesize(f0, controls, generator=generator, **gains)
    return audio.float().cpu().numpy()


def render(model, f0, loudness, mfcc, seed: int = 0, **gains) -> np.ndarray:
    """What the model plays for these inputs: f0 [B, T, 1] Hz, loudness [B, T, 1] dB,
    mfcc [B, T, N_MFCC] (on the model's device) -> float32 audio [B, T * HOP_LENGTH] (numpy),
    in eval mode (the model's mode is restored after); see render_controls."""
    with evaluating(model) as core:
        return render_controls(core, f0, core.get_controls(f0, loudness, mfcc), seed, **gains)
