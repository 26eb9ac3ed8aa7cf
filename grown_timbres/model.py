"""The model: an MFCC encoder and a magenta-style RNN/FC decoder that drive the synthesizer,
and the one way to render audio from it.

    f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, N_MFCC] -> audio [B, T * HOP_LENGTH]
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from .config import HOP_LENGTH, LOUDNESS_FLOOR_DB, LOUDNESS_MAX_DB, N_MFCC, SAMPLE_RATE
from .features import MFCC_MAX_ABS, hz_to_midi
from .synth import exp_sigmoid, filtered_noise, harmonic_synth, normalize_harmonic_distribution

N_HARMONICS = 64
N_NOISE_BANDS = 65  # noise filter: 65 magnitudes -> a 128-tap linear-phase FIR per frame
HIDDEN_SIZE = 512
Z_DIM = 16
NOISE_INITIAL_BIAS = -5.0  # magenta: start with quiet noise so harmonics are learned first


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
        if (sample_rate, hop_length) != (SAMPLE_RATE, HOP_LENGTH):
            raise ValueError(f"DDSPModel(sample_rate={sample_rate}, hop_length={hop_length}): "
                             f"features and targets are built at {SAMPLE_RATE} Hz with hop "
                             f"{HOP_LENGTH} (grown_timbres.config); the model must use the same")
        self.config = dict(n_harmonics=n_harmonics, n_noise_bands=n_noise_bands,
                           hidden_size=hidden_size, n_mfcc=n_mfcc, z_dim=z_dim,
                           sample_rate=sample_rate, hop_length=hop_length)
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


def _count_and_first(values: torch.Tensor, bad: torch.Tensor) -> tuple[str, str]:
    """("<n> of <total> values", "the first, <value>, at frame <t> [of item <b>]") for a
    [B, T, C] input and its mask of bad values."""
    item, frame = (int(i) for i in bad.nonzero()[0][:2])
    where = f"frame {frame}" + (f" of item {item}" if values.shape[0] > 1 else "")
    return (f"{int(bad.sum())} of {bad.numel()} values",
            f"the first, {float(values[bad][0]):g}, at {where}")


def _refuse(name: str, values: torch.Tensor, bad: torch.Tensor, problem: str) -> None:
    if bool(bad.any()):
        count, first = _count_and_first(values, bad)
        raise ValueError(f"render input {name}: {count} {problem}; {first}")


def check_render_inputs(model, f0, loudness, mfcc, **gains) -> None:
    """Refuse what would render NaN or garbage, before anything is rendered: ValueError naming
    the input (f0, loudness, mfcc, a gain or a weight of the model) and its first bad frame.

    f0 [B, T, 1] finite and > 0 Hz; loudness [B, T, 1] dB within [LOUDNESS_FLOOR_DB,
    LOUDNESS_MAX_DB]; mfcc [B, T, n_mfcc] finite within +/-MFCC_MAX_ABS (larger ones overflow
    the encoder's LayerNorm); gains finite and >= 0; every weight finite. Warns where f0 is at
    or above Nyquist: every harmonic is silenced there and only the quiet noise sounds."""
    core = unwrap_model(model)
    n_mfcc = core.config["n_mfcc"]
    if not (f0.ndim == 3 and f0.shape[-1] == 1 and f0.shape[1] > 0
            and loudness.shape == f0.shape and mfcc.shape == (*f0.shape[:2], n_mfcc)):
        raise ValueError(f"render inputs: f0 {list(f0.shape)}, loudness {list(loudness.shape)} "
                         f"and mfcc {list(mfcc.shape)} must be [B, T, 1], [B, T, 1] and "
                         f"[B, T, {n_mfcc}] with T > 0")
    _refuse("f0", f0, ~torch.isfinite(f0), "are NaN or infinite")
    _refuse("f0", f0, f0 <= 0, "are not above 0 Hz")
    _refuse("loudness", loudness, ~torch.isfinite(loudness), "are NaN or infinite")
    _refuse("loudness", loudness, (loudness < LOUDNESS_FLOOR_DB) | (loudness > LOUDNESS_MAX_DB),
            f"are outside [{LOUDNESS_FLOOR_DB:g}, {LOUDNESS_MAX_DB:g}] dB")
    _refuse("mfcc", mfcc, ~torch.isfinite(mfcc), "are NaN or infinite")
    _refuse("mfcc", mfcc, mfcc.abs() > MFCC_MAX_ABS, f"are beyond +/-{MFCC_MAX_ABS:g}")
    for name, gain in gains.items():
        _refuse(name, gain, ~torch.isfinite(gain) | (gain < 0), "are NaN, infinite or below 0")
    for name, weight in core.named_parameters():
        n_bad = int((~torch.isfinite(weight)).sum())
        if n_bad:
            raise ValueError(f"render input model weight {name}: {n_bad} NaN or infinite "
                             "values; load a checkpoint saved before training went non-finite")
    above = f0 >= SAMPLE_RATE / 2
    if bool(above.any()):
        count, first = _count_and_first(f0, above)
        warnings.warn(f"render input f0: {count} are at or above Nyquist "
                      f"({SAMPLE_RATE / 2:g} Hz; {first}): no harmonic sounds there, only the "
                      "noise (near-silence)", stacklevel=3)


def render(model, f0, loudness, mfcc, seed: int = 0, **gains) -> np.ndarray:
    """What the model plays for these inputs: f0 [B, T, 1] Hz, loudness [B, T, 1] dB,
    mfcc [B, T, N_MFCC] (on the model's device) -> float32 audio [B, T * HOP_LENGTH] (numpy).

    In eval mode (the model's mode is restored after), the noise seeded by `seed` without
    touching torch's global random state, so a render repeats exactly. `gains`: passed on to
    DDSPModel.synthesize (harmonic_gain, noise_gain). Every render passes here, and its inputs
    through check_render_inputs."""
    check_render_inputs(model, f0, loudness, mfcc, **gains)
    with evaluating(model) as core:
        generator = torch.Generator(device=f0.device).manual_seed(seed)
        audio = core.synthesize(f0, core.get_controls(f0, loudness, mfcc), generator=generator,
                                **gains)
    return audio.float().cpu().numpy()
