"""Growth: a learned timbre rendered in stages (stages.py), from the bare fundamental up to the
full sound. Each part of the model says how much it sounds in a stage (SynthPart.stage_gain)
and names the gain that fades it. The note is the file's own, as the trained decoder plays it
over the file's sustained frames (HeldNote), and its synthesizer controls are held still for
the whole render, so the note is steady by construction: no recurrent state drifts over a long
constant input. It is rendered once with continuous phase; only the stages' gains change,
crossfading at the boundaries, so nothing clicks.

    file features [T] -> HeldNote;  stages, HeldNote -> audio [sum of durations * sample_rate]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .audio import finish_render
from .config import SAMPLE_RATE
from .harmonic_part import harmonic_mask
from .model import check_render_inputs, evaluating, render_controls, unwrap_model
from .stages import GROWTH_STAGES, ROOM_STAGE, STAGE_FIELDS, stages_from_table
from .synth import noise_impulse_responses

CROSSFADE_SECONDS = 0.08  # between growth stages
SUSTAIN_WINDOW_DB = 6.0  # a file's sustained frames: voiced, within this of its loudest one
NOISE_UNIFORM_POWER = 1.0 / 3.0  # the synthesizer's noise source: uniform in [-1, 1]
# the controls a HeldNote names (those its measures read); any other part's are other_controls
HELD_FIELDS = ("amplitude", "harmonic_distribution", "noise_magnitudes")


def growth_stages(model) -> tuple:
    """The default growth of `model`: GROWTH_STAGES, then ROOM_STAGE if it has a room."""
    return GROWTH_STAGES + ((ROOM_STAGE,) if unwrap_model(model).config.room else ())


def stage_weights(stages, n_frames: int, frame_seconds: float,
                  crossfade_seconds: float = CROSSFADE_SECONDS) -> np.ndarray:
    """How much each stage sounds in each frame: [n_stages, n_frames], summing to 1 per frame.

    Neighbouring stages cross linearly over `crossfade_seconds` centred on their boundary."""
    times = np.arange(n_frames) * frame_seconds
    boundaries = np.cumsum([s.duration for s in stages])[:-1]
    width = max(crossfade_seconds, 1e-9)
    entered = [np.ones(n_frames)] + [np.clip((times - b) / width + 0.5, 0, 1) for b in boundaries]
    entered.append(np.zeros(n_frames))
    return np.stack([entered[i] - entered[i + 1] for i in range(len(stages))])


def stage_gains(stages, n_frames: int, parts, frame_seconds: float) -> dict:
    """Frame-rate gains for DDSPModel.synthesize, by its argument names: each of `parts`
    (DDSPModel.parts) its gain [1, T, C], how much it sounds in each stage (SynthPart.
    stage_gain) crossfaded between stages: harmonic_gain [1, T, H], noise_gain [1, T, 1] and,
    for a model with a room, room_gain [1, T, 1]. A stage that turns on what no part plays
    (the room, for a model without one): ValueError."""
    played = {part.stage_switch for part in parts}
    for stage in stages:
        for name in STAGE_FIELDS:
            if name not in played and name not in ("name", "duration") and getattr(stage, name):
                raise ValueError(f"stage {stage.name!r} turns the {name} on, but the model has "
                                 f"none (DDSPModel({name}=False))")
    weights = stage_weights(stages, n_frames, frame_seconds)
    gains = {}
    for part in parts:
        switches = np.stack([part.stage_gain(stage) for stage in stages])
        gain = torch.from_numpy((weights.T @ switches).astype(np.float32))
        gains[part.gain] = gain[None]
    return gains


@dataclass(frozen=True)
class HeldNote:
    """One note as the trained decoder plays a file, held still: f0 Hz (geometric mean over
    the sustained frames) and the synthesizer controls there (per-control medians): amplitude,
    harmonic_distribution [H] (sums to 1), noise_magnitudes [M], and `other_controls` {name:
    [size]}, those of any other part (held and played as these are); `frames`: how many of
    the file's frames were sustained, `source`: the file, `sample_rate`: the model's (Hz)."""

    f0: float
    amplitude: float
    harmonic_distribution: np.ndarray
    noise_magnitudes: np.ndarray
    frames: int
    source: str = ""
    other_controls: dict = field(default_factory=dict)
    sample_rate: int = SAMPLE_RATE

    @property
    def n_harmonics(self) -> int:
        return len(self.harmonic_distribution)

    def harmonic_amplitudes(self) -> np.ndarray:
        """[H] each harmonic's sine amplitude."""
        return self.amplitude * self.harmonic_distribution

    def noise_impulse(self) -> torch.Tensor:
        """[2 * (M - 1)] the noise filter's FIR, as the synthesizer builds it."""
        return noise_impulse_responses(torch.from_numpy(self.noise_magnitudes)[None, None])[0, 0]

    def noise_adds_db(self) -> float:
        """How much louder the noise makes the held note (dB): mean-square power of harmonics
        plus noise over that of the harmonics alone. The harmonics' power is sum(a_k^2) / 2;
        the noise's is the source's power times the energy of its FIR."""
        harmonic = float(np.sum(self.harmonic_amplitudes() ** 2) / 2)
        noise = NOISE_UNIFORM_POWER * float(torch.sum(self.noise_impulse().double() ** 2))
        return 10 * math.log10((harmonic + noise) / max(harmonic, 1e-30))


def sustained_frames(features: dict) -> np.ndarray:
    """[T] bool: where a file's note sounds steadily: voiced frames within SUSTAIN_WINDOW_DB
    of the loudest voiced frame (all frames within it of the loudest, if none is voiced).
    `features`: file_features or extract_features (voiced [T], loudness [T] dB)."""
    loudness, voiced = np.asarray(features["loudness"]), np.asarray(features["voiced"], bool)
    pool = voiced if voiced.any() else np.ones_like(voiced)
    return pool & (loudness >= loudness[pool].max() - SUSTAIN_WINDOW_DB)


def held_note(model, features: dict) -> HeldNote:
    """The note to grow: the decoder run over the file's own frames (features: file_features
    or extract_features, f0 [T] Hz, voiced, loudness [T] dB, mfcc [T, N_MFCC]), its controls
    taken over the sustained frames (sustained_frames)."""
    keep = sustained_frames(features)
    with evaluating(model) as core:
        core.check_data(features, f"the features of {features.get('path') or 'the file'}")
        device = next(core.parameters()).device

        def frames(name):
            values = torch.as_tensor(np.asarray(features[name], dtype=np.float32), device=device)
            return values.reshape(1, len(keep), -1)

        inputs = frames("f0"), frames("loudness"), frames("mfcc")
        check_render_inputs(core, *inputs)
        controls = core.get_controls(*inputs)
    held = {name: np.median(value[0].double().cpu().numpy()[keep], axis=0)
            for name, value in controls.items()}
    amplitude, distribution, noise = (held.pop(name) for name in HELD_FIELDS)
    return HeldNote(
        f0=float(np.exp(np.mean(np.log(np.asarray(features["f0"], np.float64)[keep])))),
        amplitude=float(amplitude[0]),
        harmonic_distribution=distribution / max(distribution.sum(), 1e-30),
        noise_magnitudes=noise, frames=int(keep.sum()),
        source=str(features.get("path", "")), other_controls=held,
        sample_rate=core.config.sample_rate)


def held_controls(note: HeldNote, n_frames: int, device) -> tuple:
    """The held note as the synthesizer takes it: f0 [1, T, 1] Hz and controls {amplitude
    [1, T, 1], harmonic_distribution [1, T, H], noise_magnitudes [1, T, M], and any other
    part's [1, T, size]}."""
    def hold(values):
        values = torch.as_tensor(np.atleast_1d(values), dtype=torch.float32, device=device)
        return values.reshape(1, 1, -1).expand(1, n_frames, -1)

    named = {name: getattr(note, name) for name in HELD_FIELDS}
    return hold(note.f0), {name: hold(values)
                           for name, values in {**named, **note.other_controls}.items()}


def _frames_for(stages, sample_rate: int, hop_length: int) -> tuple[int, int]:
    """(samples, frames) that the stages last."""
    n_samples = int(round(sum(s.duration for s in stages) * sample_rate))
    return n_samples, -(-n_samples // hop_length)


def grow_timbre(model, note: HeldNote, stages=None, seed: int = 0) -> np.ndarray:
    """Render `stages` back to back from one held note (held_note): float32
    [sum of durations * the model's sample_rate].

    The note's controls and its phase run continuously and only the stage gains change,
    crossfading at boundaries, so nothing clicks; short fades at both ends; the level is the
    model's own. `stages`: anything stages_from_table takes; None: growth_stages(model)."""
    core = unwrap_model(model)
    stages = stages_from_table(growth_stages(core) if stages is None else stages)
    sample_rate, hop_length = core.config.sample_rate, core.config.hop_length
    n_samples, n_frames = _frames_for(stages, sample_rate, hop_length)
    device = next(core.parameters()).device
    f0, controls = held_controls(note, n_frames, device)
    gains = stage_gains(stages, n_frames, core.parts, hop_length / sample_rate)
    audio = render_controls(model, f0, controls, seed,
                            **{name: gain.to(device) for name, gain in gains.items()})
    return finish_render(audio[0, :n_samples])


def stage_levels(audio: np.ndarray, stages, guard_seconds: float = 0.06,
                 sample_rate: int = SAMPLE_RATE) -> list:
    """Listening with numbers: per stage of a growth render [N] at `sample_rate` (the model's),
    {"level_db": RMS level dBFS, "centroid_hz": spectral centroid} over the stage's window,
    `guard_seconds` clear of the crossfades (CROSSFADE_SECONDS / 2 each side of a boundary) and
    the edge fades."""
    stages = stages_from_table(stages)
    edges = np.concatenate([[0.0], np.cumsum([s.duration for s in stages])])
    result = []
    for start, end in zip(edges[:-1], edges[1:]):
        guard = min(guard_seconds, (end - start) / 4)
        window = np.asarray(audio[int((start + guard) * sample_rate):
                                  int((end - guard) * sample_rate)], dtype=np.float64)
        magnitude = np.abs(np.fft.rfft(window * np.hanning(len(window))))
        freqs = np.fft.rfftfreq(len(window), 1.0 / sample_rate)
        result.append({"level_db": 10 * math.log10(np.mean(window ** 2) + 1e-30),
                       "centroid_hz": float(np.sum(magnitude * freqs) / max(np.sum(magnitude),
                                                                              1e-30))})
    return result


def stage_controls(note: HeldNote, stages) -> list:
    """What sounds in each stage of grow_timbre's held note: one dict per stage with name,
    harmonic_frequencies [H] Hz, harmonic_amplitudes [H] (after the stage's harmonic mask),
    noise_frequencies [K] Hz and noise_response [K] (|FFT| of the noise FIR that sounds; zeros
    with noise off), K = N_NOISE_BANDS for the default model."""
    impulse = note.noise_impulse()
    response = torch.fft.rfft(impulse).abs().numpy()
    return [{"name": stage.name,
             "harmonic_frequencies": note.f0 * np.arange(1, note.n_harmonics + 1),
             "harmonic_amplitudes": note.harmonic_amplitudes() * harmonic_mask(stage,
                                                                               note.n_harmonics),
             "noise_frequencies": np.fft.rfftfreq(len(impulse), 1.0 / note.sample_rate),
             "noise_response": response * float(stage.noise)}
            for stage in stages_from_table(stages)]
