"""The model: an MFCC encoder and a magenta-style RNN/FC decoder that drive the synthesizer's
parts (DDSPModel.PARTS), and the one way to render audio from it.

    f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, n_mfcc] -> audio [B, T * hop_length]
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from .config import (HOP_LENGTH, LOUDNESS_FLOOR_DB, LOUDNESS_MAX_DB, RENDER_F0_MAX_HZ,
                     RENDER_F0_MIN_HZ, SAMPLE_RATE)
from .config import MFCC_MAX_ABS
from .harmonic_part import HarmonicPart
from .model_config import ModelConfig
from .noise_part import NoisePart
from .pitch import hz_to_midi
from .room_part import RoomPart

# What a render takes (check_synthesis_inputs). Gains mute or fade a part (0 to 1); louder
# parts are the model's to learn. Values may pass a bound by this much, relatively: a median or
# crossfade computed in float32 rounds.
GAIN_MAX = 1.0
ROUNDING_SLACK = 1e-5


def mlp(in_size: int, hidden_size: int, n_layers: int = 3) -> nn.Sequential:
    """magenta's fc_stack: n_layers x [Linear, LayerNorm, LeakyReLU]."""
    layers = []
    for i in range(n_layers):
        layers += [nn.Linear(in_size if i == 0 else hidden_size, hidden_size),
                   nn.LayerNorm(hidden_size), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class DDSPModel(nn.Module):
    """MFCC encoder + magenta-style RNN/FC decoder driving the synthesizer's parts.

    Inputs f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, n_mfcc]. The encoder maps each
    frame's MFCCs to a timbre code z [B, T, z_dim]; f0 (as MIDI / 127), loudness (as db / 80 + 1)
    and z each pass through their own MLP, a GRU runs over time, and the output MLP sees the
    three MLP outputs beside the GRU's. Its heads are the parts' controls (SynthPart.heads), in
    PARTS order; the parts then play in that order: harmonics, noise, and with `room` a learned
    room after them (room_part).

    DDSPModel(config=None, **fields): a ModelConfig, or its fields (`reverb` is the old name of
    `room`), or a config with some fields replaced. `model.config` is the ModelConfig.
    """

    PARTS = (HarmonicPart, NoisePart, RoomPart)  # play order; a new part is one more entry

    def __init__(self, config: ModelConfig | None = None, **fields):
        super().__init__()
        if config is None:
            config = ModelConfig.from_dict(fields)
        elif fields:
            config = config.replaced(**fields)
        self.config = config
        self.parts = [part(config) for part in self.PARTS
                      if part.switch is None or getattr(config, part.switch)]
        heads = {name: size for part in self.parts for name, size in part.heads().items()}
        hidden_size = config.hidden_size
        self.mfcc_norm = nn.LayerNorm(config.n_mfcc)
        self.encoder = nn.Linear(config.n_mfcc, config.z_dim)
        self.f0_mlp = mlp(1, hidden_size)
        self.loudness_mlp = mlp(1, hidden_size)
        self.z_mlp = mlp(config.z_dim, hidden_size)
        self.gru = nn.GRU(3 * hidden_size, hidden_size, batch_first=True)
        self.out_mlp = mlp(4 * hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, sum(heads.values()))
        self.head_sizes = heads
        for part in self.parts:  # top-level parameters: state_dict keys as the part names them
            for name, value in part.initial_weights().items():
                setattr(self, name, nn.Parameter(value))

    @property
    def n_harmonics(self) -> int:
        """config.n_harmonics: what the harmonic waves precomputed for training need."""
        return self.config.n_harmonics

    @property
    def reverb(self) -> bool:
        """The old name of config.room: whether the model has the learned room."""
        return self.config.room

    def part(self, name: str):
        """The part called `name` (SynthPart.name); KeyError naming the model's parts."""
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(f"this model has no {name} part; its parts: "
                       + ", ".join(part.name for part in self.parts))

    def weights_of(self, part) -> dict:
        """{name: parameter} of the weights `part` trains itself (SynthPart.initial_weights)."""
        return {name: getattr(self, name) for name in part.weight_names}

    @property
    def tail_seconds(self) -> float:
        """How long the model sounds on after its input stops: its parts' longest tail."""
        return max(part.tail_seconds for part in self.parts)

    def parameter_groups(self, lr: float) -> list[dict]:
        """The optimizer's parameter groups, each named: "model", everything at `lr`, then one
        group per weight a part trains at a multiple of it (SynthPart.lr_scales), named as the
        weight (the room's noise taps: "room_noise")."""
        scaled = {name: (getattr(self, name), scale)
                  for part in self.parts for name, scale in part.lr_scales.items()}
        special = [weight for weight, _ in scaled.values()]
        rest = [p for p in self.parameters() if not any(p is weight for weight in special)]
        return [{"name": "model", "params": rest, "lr": lr}] + [
            {"name": name, "params": [weight], "lr": lr * scale}
            for name, (weight, scale) in scaled.items()]

    def check_data(self, data, source: str = "the data") -> None:
        """Refuse data made at another sample rate or hop than the model's (ValueError naming
        both): its frames and audio would not line up with what the model plays. `data`: one
        file's features or a training batch, which carry their sample_rate and hop_length; a
        dict without them was made at config.SAMPLE_RATE and config.HOP_LENGTH, as every dict
        was before issue 23."""
        sample_rate, hop_length = (
            (data.get("sample_rate", SAMPLE_RATE), data.get("hop_length", HOP_LENGTH))
            if isinstance(data, dict) else (data.sample_rate, data.hop_length))
        ours = (self.config.sample_rate, self.config.hop_length)
        if (sample_rate, hop_length) != ours:
            raise ValueError(f"{source}: made at {sample_rate} Hz with hop {hop_length}, the model "
                             f"at {ours[0]} Hz with hop {ours[1]} (ModelConfig sample_rate, "
                             "hop_length): make the data at the model's rates, or the model "
                             "at the data's")

    def get_controls(self, f0, loudness, mfcc) -> dict:
        """Synthesizer controls at frame rate, each part's (SynthPart.controls): amplitude
        [B, T, 1], harmonic_distribution [B, T, H] (sums to 1 below Nyquist), noise_magnitudes
        [B, T, M]."""
        stacks = [self.f0_mlp(hz_to_midi(f0) / 127.0),
                  self.loudness_mlp(loudness / -LOUDNESS_FLOOR_DB + 1.0),
                  self.z_mlp(self.encoder(self.mfcc_norm(mfcc)))]
        recurrent, _ = self.gru(torch.cat(stacks, dim=-1))
        out = self.out_proj(self.out_mlp(torch.cat(stacks + [recurrent], dim=-1))).float()
        heads = dict(zip(self.head_sizes, out.split(list(self.head_sizes.values()), dim=-1)))
        return {name: control for part in self.parts
                for name, control in part.controls(heads, f0).items()}

    def synthesize(self, f0, controls: dict, waves=None, generator: torch.Generator | None = None,
                   **gains):
        """Audio [B, T * hop] from controls, in float32 whatever autocast says: each part
        plays in turn. `gains`: frame-rate fades by the parts' names for them (SynthPart.gain:
        harmonic_gain [B or 1, T, H], noise_gain [B or 1, T, 1], room_gain [B or 1, T, 1],
        the room's wet part; a part without one plays in full); a gain no part takes is
        refused. `waves`: see harmonic_synth; `generator`: the noise's random source (default:
        torch's global one)."""
        self.check_gain_names(gains)
        with torch.autocast(f0.device.type, enabled=False):
            audio = None
            for part in self.parts:
                audio = part.play(audio, f0, controls, gains.get(part.gain),
                                  self.weights_of(part), waves=waves, generator=generator)
            return audio

    def check_gain_names(self, gains: dict) -> None:
        """Refuse a gain no part of this model takes, naming the part it would fade."""
        taken = [part.gain for part in self.parts]
        for name in gains:
            if name not in taken:
                raise ValueError(f"{name}: this model has no {name.removesuffix('_gain')} "
                                 f"(its parts' gains: {', '.join(taken)})")

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


def check_synthesis_inputs(model, f0, controls: dict, **gains) -> None:
    """Refuse synthesizer inputs that would render NaN or nonsense, naming the input, how many
    values and its first bad one, and the range it must be in: f0 [B, T, 1] within
    RENDER_F0_MIN_HZ..RENDER_F0_MAX_HZ; each control within 0 and its part's control_max and
    each gain within 0..GAIN_MAX (others finite and >= 0); each part's own weights as the part
    checks them (SynthPart.check_weights: the room's loudness). Warns where f0 is at or above
    the model's Nyquist: every harmonic is silenced there and only the quiet noise sounds."""
    _refuse("f0", f0, ~torch.isfinite(f0), "are NaN or infinite")
    _refuse("f0", f0, (f0 < RENDER_F0_MIN_HZ) | (f0 > RENDER_F0_MAX_HZ),
            f"are outside {RENDER_F0_MIN_HZ:.2f} to {RENDER_F0_MAX_HZ:.0f} Hz (every MIDI note, "
            "a semitone to spare; an unvoiced frame keeps a pitch, its loudness silences it)")
    control_max = {name: high for part in model.parts for name, high in part.control_max.items()}
    ranges = {**{name: (control_max.get(name, math.inf), "") for name in controls},
              **{name: (GAIN_MAX, ", a gain mutes or fades") for name in gains}}
    for name, values in {**controls, **gains}.items():
        high, why = ranges[name]
        _refuse(name, values, ~torch.isfinite(values), "are NaN or infinite")
        _refuse(name, values, (values < 0) | (values > high * (1 + ROUNDING_SLACK)),
                f"are outside 0 to {high:g}{why}")
    for part in model.parts:
        part.check_weights(model.weights_of(part))
    nyquist = model.config.sample_rate / 2
    above = f0 >= nyquist
    if bool(above.any()):
        count, first = _count_and_first(f0, above)
        warnings.warn(f"render input f0: {count} are at or above Nyquist "
                      f"({nyquist:g} Hz; {first}): no harmonic sounds there, only the "
                      "noise (near-silence)", stacklevel=3)


def render_controls(model, f0, controls: dict, seed: int = 0, **gains) -> np.ndarray:
    """What the synthesizer plays for these controls (get_controls' dict, [B, T, ...]) at
    f0 [B, T, 1] Hz -> float32 audio [B, T * hop_length] (numpy). The noise is seeded by
    `seed` without touching torch's global random state, so a render repeats exactly.
    `gains`: passed on to DDSPModel.synthesize (harmonic_gain, noise_gain, room_gain). Every
    render passes here, and its inputs (the parts' weights too) through check_synthesis_inputs."""
    with evaluating(model) as core:
        core.check_gain_names(gains)
        check_synthesis_inputs(core, f0, controls, **gains)
        generator = torch.Generator(device=f0.device).manual_seed(seed)
        audio = core.synthesize(f0, controls, generator=generator, **gains)
    return audio.float().cpu().numpy()


def render(model, f0, loudness, mfcc, seed: int = 0, **gains) -> np.ndarray:
    """What the model plays for these inputs: f0 [B, T, 1] Hz, loudness [B, T, 1] dB,
    mfcc [B, T, n_mfcc] (on the model's device) -> float32 audio [B, T * hop_length] (numpy),
    in eval mode (the model's mode is restored after); see render_controls. Its inputs pass
    through check_render_inputs first."""
    check_render_inputs(model, f0, loudness, mfcc)
    with evaluating(model) as core:
        return render_controls(core, f0, core.get_controls(f0, loudness, mfcc), seed, **gains)
