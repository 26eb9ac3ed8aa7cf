"""The model: an MFCC encoder and a magenta-style RNN/FC decoder that drive the synthesizer,
and the one way to render audio from it.

    f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, N_MFCC] -> audio [B, T * HOP_LENGTH]
"""
from __future__ import annotations

import math
import operator
import warnings
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from .config import (HOP_LENGTH, LOUDNESS_FLOOR_DB, LOUDNESS_MAX_DB, MODEL_LIMITS,
                     MODEL_SWITCHES, N_MFCC, RENDER_F0_MAX_HZ, RENDER_F0_MIN_HZ, SAMPLE_RATE)
from .config import MFCC_MAX_ABS
from .pitch import hz_to_midi
from .synth import (ROOM_NOISE_LR_SCALE, exp_sigmoid, filtered_noise, harmonic_synth,
                    initial_room, normalize_harmonic_distribution, reverb,
                    room_impulse_response, upsample_frames)

N_HARMONICS = 64
N_NOISE_BANDS = 65  # noise filter: 65 magnitudes -> a 128-tap linear-phase FIR per frame
HIDDEN_SIZE = 512
Z_DIM = 16
NOISE_INITIAL_BIAS = -5.0  # magenta: start with quiet noise so harmonics are learned first
# What a render takes (check_synthesis_inputs). Controls: at most what get_controls outputs
# (exp_sigmoid tops out at 2; a harmonic's share of the distribution at 1). Gains mute or fade
# a part (0 to 1); louder parts are the model's to learn. Values may pass a bound by this much,
# relatively: a median or crossfade computed in float32 rounds.
CONTROL_MAX = {"amplitude": 2.0, "harmonic_distribution": 1.0, "noise_magnitudes": 2.0}
GAIN_MAX = 1.0
ROUNDING_SLACK = 1e-5
# The learned room: its wet part at most this far above the dry sound (for noise: the energy of
# its taps). The room BENCHMARKS.md measured learned is at +5 dB and a far seat in a large hall
# hears some +10 to +20 dB; a level like 1e30 is +600.
ROOM_MAX_GAIN_DB = 30.0


def check_model_config(config) -> dict:
    """A model configuration (some or all of DDSPModel's arguments) checked before anything is
    built: known fields only, whole numbers within config.MODEL_LIMITS, switches
    (config.MODEL_SWITCHES) True or False. Returns it as plain ints and bools; raises
    ValueError naming the field, its value and the limit."""
    if not isinstance(config, dict):
        raise ValueError(f"a model configuration is a dict of DDSPModel's arguments, got "
                         f"{type(config).__name__}")
    unknown = sorted(map(str, set(config) - set(MODEL_LIMITS) - set(MODEL_SWITCHES)))
    if unknown:
        raise ValueError(f"unknown model configuration field(s) {unknown}; DDSPModel takes "
                         + ", ".join([*MODEL_LIMITS, *MODEL_SWITCHES]))
    checked = {}
    for field, value in config.items():
        if field in MODEL_SWITCHES:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"model configuration {field}={value!r} is not True or False")
            checked[field] = bool(value)
            continue
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
    noise filter magnitudes (M). With `reverb`, a learned room follows the synthesizer
    (synth.reverb): an impulse response of REVERB_SECONDS, trained with everything else.

    sample_rate and hop_length are recorded in the config (and so in checkpoints) but are not
    free: features and loss targets are built at config.SAMPLE_RATE and config.HOP_LENGTH, so
    any other value is refused rather than trained against mismatched frames.
    """

    def __init__(self, n_harmonics: int = N_HARMONICS, n_noise_bands: int = N_NOISE_BANDS,
                 hidden_size: int = HIDDEN_SIZE, n_mfcc: int = N_MFCC, z_dim: int = Z_DIM,
                 sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH,
                 reverb: bool = False):
        super().__init__()
        self.config = check_model_config(dict(
            n_harmonics=n_harmonics, n_noise_bands=n_noise_bands, hidden_size=hidden_size,
            n_mfcc=n_mfcc, z_dim=z_dim, sample_rate=sample_rate, hop_length=hop_length,
            reverb=reverb))
        self.reverb = self.config["reverb"]
        self.n_harmonics, self.n_noise_bands = n_harmonics, n_noise_bands
        self.mfcc_norm = nn.LayerNorm(n_mfcc)
        self.encoder = nn.Linear(n_mfcc, z_dim)
        self.f0_mlp = mlp(1, hidden_size)
        self.loudness_mlp = mlp(1, hidden_size)
        self.z_mlp = mlp(z_dim, hidden_size)
        self.gru = nn.GRU(3 * hidden_size, hidden_size, batch_first=True)
        self.out_mlp = mlp(4 * hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, 1 + n_harmonics + n_noise_bands)
        if self.reverb:
            room = initial_room()
            self.room_noise, self.room_level, self.room_decay = (
                nn.Parameter(room[name]) for name in ("noise", "level", "decay"))

    def parameter_groups(self, lr: float) -> list[dict]:
        """The optimizer's parameter groups: everything at `lr`, but a room's noise taps at
        ROOM_NOISE_LR_SCALE * lr (synth.py says why)."""
        if not self.reverb:
            return [{"params": list(self.parameters()), "lr": lr}]
        rest = [p for p in self.parameters() if p is not self.room_noise]
        return [{"params": rest, "lr": lr},
                {"params": [self.room_noise], "lr": lr * ROOM_NOISE_LR_SCALE}]

    def room_taps(self) -> torch.Tensor:
        """The learned room's impulse response [REVERB_SECONDS * SR] (tap 0 is unused)."""
        return room_impulse_response(self.room_noise, self.room_level, self.room_decay)

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
                   generator: torch.Generator | None = None, room_gain=None):
        """Audio [B, T * hop] from controls, in float32 whatever autocast says. Optional gains
        at frame rate mute or fade parts of the sound (the growth stages use them):
        harmonic_gain [B or 1, T, H], noise_gain [B or 1, T, 1], room_gain [B or 1, T, 1] (the
        room's wet part; without it the full room; refused by a model without one).
        `waves`: see harmonic_synth;
        `generator`: the noise's random source (default: torch's global one)."""
        if room_gain is not None and not self.reverb:
            raise ValueError("room_gain: this model has no room (DDSPModel(reverb=False))")
        with torch.autocast(f0.device.type, enabled=False):
            harmonic = controls["amplitude"] * controls["harmonic_distribution"]
            noise = controls["noise_magnitudes"]
            if harmonic_gain is not None:
                harmonic = harmonic * harmonic_gain
            if noise_gain is not None:
                noise = noise * noise_gain
            audio = (harmonic_synth(f0, harmonic, SAMPLE_RATE, HOP_LENGTH, waves)
                     + filtered_noise(noise, HOP_LENGTH, generator))
            if not self.reverb:
                return audio
            if room_gain is not None:
                room_gain = upsample_frames(room_gain.float(), HOP_LENGTH)[..., 0]
            return reverb(audio, self.room_taps(), room_gain)

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


def check_render_inputs(model, f0, loudness, mfcc) -> None:
    """Refuse decoder inputs that would render NaN or garbage, before anything runs:
    ValueError naming the input (loudness, mfcc or a weight of the model) and its first bad
    frame. Shapes f0 [B, T, 1], loudness [B, T, 1], mfcc [B, T, n_mfcc]; loudness dB within
    [LOUDNESS_FLOOR_DB, LOUDNESS_MAX_DB]; mfcc finite within +/-MFCC_MAX_ABS (larger ones
    overflow the encoder's LayerNorm); every weight finite. f0: check_synthesis_inputs."""
    core = unwrap_model(model)
    n_mfcc = core.config["n_mfcc"]
    if not (f0.ndim == 3 and f0.shape[-1] == 1 and f0.shape[1] > 0
            and loudness.shape == f0.shape and mfcc.shape == (*f0.shape[:2], n_mfcc)):
        raise ValueError(f"render inputs: f0 {list(f0.shape)}, loudness {list(loudness.shape)} "
                         f"and mfcc {list(mfcc.shape)} must be [B, T, 1], [B, T, 1] and "
                         f"[B, T, {n_mfcc}] with T > 0")
    _refuse("loudness", loudness, ~torch.isfinite(loudness), "are NaN or infinite")
    _refuse("loudness", loudness, (loudness < LOUDNESS_FLOOR_DB) | (loudness > LOUDNESS_MAX_DB),
            f"are outside [{LOUDNESS_FLOOR_DB:g}, {LOUDNESS_MAX_DB:g}] dB")
    _refuse("mfcc", mfcc, ~torch.isfinite(mfcc), "are NaN or infinite")
    _refuse("mfcc", mfcc, mfcc.abs() > MFCC_MAX_ABS, f"are beyond +/-{MFCC_MAX_ABS:g}")
    for name, weight in core.named_parameters():
        n_bad = int((~torch.isfinite(weight)).sum())
        if n_bad:
            raise ValueError(f"render input model weight {name}: {n_bad} NaN or infinite "
                             "values; load a checkpoint saved before training went non-finite")


def check_synthesis_inputs(f0, controls: dict, room_taps=None, **gains) -> None:
    """Refuse synthesizer inputs that would render NaN or nonsense, naming the input, how many
    values and its first bad one, and the range it must be in: f0 [B, T, 1] within
    RENDER_F0_MIN_HZ..RENDER_F0_MAX_HZ; each control within 0..CONTROL_MAX and each gain
    within 0..GAIN_MAX (others finite and >= 0); room_taps [L] (DDSPModel.room_taps) whose
    wet part is at most ROOM_MAX_GAIN_DB above the dry sound. Warns where f0 is at or above
    Nyquist: every harmonic is silenced there and only the quiet noise sounds."""
    _refuse("f0", f0, ~torch.isfinite(f0), "are NaN or infinite")
    _refuse("f0", f0, (f0 < RENDER_F0_MIN_HZ) | (f0 > RENDER_F0_MAX_HZ),
            f"are outside {RENDER_F0_MIN_HZ:.2f} to {RENDER_F0_MAX_HZ:.0f} Hz (every MIDI note, "
            "a semitone to spare; an unvoiced frame keeps a pitch, its loudness silences it)")
    ranges = {**{name: (CONTROL_MAX.get(name, math.inf), "") for name in controls},
              **{name: (GAIN_MAX, ", a gain mutes or fades") for name in gains}}
    for name, values in {**controls, **gains}.items():
        high, why = ranges[name]
        _refuse(name, values, ~torch.isfinite(values), "are NaN or infinite")
        _refuse(name, values, (values < 0) | (values > high * (1 + ROUNDING_SLACK)),
                f"are outside 0 to {high:g}{why}")
    if room_taps is not None:
        wet_db = 10 * math.log10(max(float(torch.sum(room_taps[1:].double() ** 2)), 1e-300))
        if not wet_db <= ROOM_MAX_GAIN_DB:
            raise ValueError(f"render input room: its wet part is {wet_db:+.0f} dB against the "
                             f"dry sound, above ROOM_MAX_GAIN_DB=+{ROOM_MAX_GAIN_DB:g} dB: the "
                             "model's room weights are no room's; load a trained checkpoint")
    above = f0 >= SAMPLE_RATE / 2
    if bool(above.any()):
        count, first = _count_and_first(f0, above)
        warnings.warn(f"render input f0: {count} are at or above Nyquist "
                      f"({SAMPLE_RATE / 2:g} Hz; {first}): no harmonic sounds there, only the "
                      "noise (near-silence)", stacklevel=3)


def render_controls(model, f0, controls: dict, seed: int = 0, **gains) -> np.ndarray:
    """What the synthesizer plays for these controls (get_controls' dict, [B, T, ...]) at
    f0 [B, T, 1] Hz -> float32 audio [B, T * HOP_LENGTH] (numpy). The noise is seeded by
    `seed` without touching torch's global random state, so a render repeats exactly.
    `gains`: passed on to DDSPModel.synthesize (harmonic_gain, noise_gain, room_gain). Every
    render passes here, and its inputs (the model's room too) through check_synthesis_inputs."""
    with evaluating(model) as core:
        check_synthesis_inputs(f0, controls, core.room_taps() if core.reverb else None, **gains)
        generator = torch.Generator(device=f0.device).manual_seed(seed)
        audio = core.synthesize(f0, controls, generator=generator, **gains)
    return audio.float().cpu().numpy()


def render(model, f0, loudness, mfcc, seed: int = 0, **gains) -> np.ndarray:
    """What the model plays for these inputs: f0 [B, T, 1] Hz, loudness [B, T, 1] dB,
    mfcc [B, T, N_MFCC] (on the model's device) -> float32 audio [B, T * HOP_LENGTH] (numpy),
    in eval mode (the model's mode is restored after); see render_controls. Its inputs pass
    through check_render_inputs first."""
    check_render_inputs(model, f0, loudness, mfcc)
    with evaluating(model) as core:
        return render_controls(core, f0, core.get_controls(f0, loudness, mfcc), seed, **gains)
