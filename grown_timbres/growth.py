"""Growth: a learned timbre rendered in stages, from the bare fundamental up to the full sound.

A stage is data (Stage): a name, how many harmonics sound (None = all), whether the noise
sounds, and for how long. One steady note is rendered once with continuous phase; only the
stages' gains change, crossfading at the boundaries, so nothing clicks.

    stages, note (f0 Hz, loudness dB, mfcc [N_MFCC]) -> audio [sum of durations * SAMPLE_RATE]
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from .audio import finish_render
from .config import HOP_LENGTH, SAMPLE_RATE
from .model import check_render_inputs, evaluating, render, unwrap_model
from .synth import noise_impulse_responses

CROSSFADE_SECONDS = 0.08  # between growth stages
MAX_STAGE_SECONDS = 30.0  # the synthesizer holds [N, H] waves: this bounds a render's memory
_TRUE_WORDS = {"1", "true", "yes", "y", "on", "x"}
_FALSE_WORDS = {"0", "false", "no", "n", "off", ""}
_ALL_WORDS = {"", "all", "none", "*"}


@dataclass(frozen=True)
class Stage:
    """One growth stage: `name`, how many harmonics sound (`n_harmonics`, None = all), whether
    the `noise` sounds, and for how long (`duration`, seconds in (0, MAX_STAGE_SECONDS]).

    Values may come as a form gives them: n_harmonics '3' or 'all' (also '', None); noise
    on/off, yes/no, true/false, 1/0 (empty or None = off); duration '1.5'. They are checked and
    normalised here, the one place: ValueError names the stage and what is wrong."""

    name: str
    n_harmonics: int | None
    noise: bool
    duration: float

    def __post_init__(self):
        where = f"stage {self.name!r}"
        object.__setattr__(self, "n_harmonics", _harmonic_count(self.n_harmonics, where))
        object.__setattr__(self, "noise", _switch(self.noise, where))
        object.__setattr__(self, "duration", _seconds(self.duration, where))


def _harmonic_count(count, where: str) -> int | None:
    if count is None or (isinstance(count, str) and count.strip().lower() in _ALL_WORDS):
        return None
    try:
        value = float(count)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(count, bool) or not (math.isfinite(value) and value >= 0
                                       and value == int(value)):
        raise ValueError(f"{where}: n_harmonics must be a count >= 0 or 'all', got {count!r}")
    return int(value)


def _switch(noise, where: str) -> bool:
    if noise is None:
        return False
    if isinstance(noise, str) and noise.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return noise.strip().lower() in _TRUE_WORDS
    if isinstance(noise, (bool, np.bool_)) or (not isinstance(noise, str) and noise in (0, 1)):
        return bool(noise)
    raise ValueError(f"{where}: noise must be on or off, got {noise!r}")


def _seconds(duration, where: str) -> float:
    try:
        seconds = float(duration)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: duration must be seconds, got {duration!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_STAGE_SECONDS):
        raise ValueError(f"{where}: duration must be > 0 and <= {MAX_STAGE_SECONDS:g} s, "
                         f"got {duration!r}")
    return seconds


STAGE_FIELDS = tuple(field.name for field in fields(Stage))  # a form row's columns, in order
GROWTH_STAGES = (
    Stage("fundamental", 1, False, 1.0),
    Stage("3 harmonics", 3, False, 1.0),
    Stage("8 harmonics", 8, False, 1.0),
    Stage("all harmonics", None, False, 1.0),
    Stage("full timbre (harmonics + noise)", None, True, 1.5),
)


def stages_from_table(rows) -> list:
    """Stages from Stages, dicts {name, n_harmonics, noise, duration} or sequences in that
    order (text is fine, see Stage); a missing name becomes 'stage <n>'. Every render takes
    its stages through here. Raises ValueError naming the stage and what is wrong.
    Render with grow_timbre(model, ..., stages=stages_from_table(rows)): no retraining."""
    stages = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, (Stage, dict)):
            row = dict(zip(STAGE_FIELDS, row))
        if isinstance(row, dict):
            name = str(row.get("name") or "").strip() or f"stage {i}"
            missing = set(STAGE_FIELDS[1:]) - set(row)
            if missing:
                raise ValueError(f"stage {name!r} (row {i}) lacks {sorted(missing)}")
            row = Stage(name, *(row[field] for field in STAGE_FIELDS[1:]))
        stages.append(row)
    if not stages:
        raise ValueError("a growth needs at least one stage")
    return stages


def stages_to_table(stages=GROWTH_STAGES) -> list:
    """Stages as form rows (n_harmonics None -> 'all'), the inverse of stages_from_table."""
    return [{**asdict(s), "n_harmonics": "all" if s.n_harmonics is None else s.n_harmonics}
            for s in stages_from_table(stages)]


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


def harmonic_mask(stage: Stage, n_harmonics: int) -> np.ndarray:
    """[H] bool: the harmonics that sound in `stage`."""
    count = n_harmonics if stage.n_harmonics is None else stage.n_harmonics
    return np.arange(n_harmonics) < count


def stage_gains(stages, n_frames: int, n_harmonics: int, frame_seconds: float) -> dict:
    """Frame-rate gains for DDSPModel.synthesize, by its argument names: harmonic_gain
    [1, T, H] and noise_gain [1, T, 1]."""
    weights = stage_weights(stages, n_frames, frame_seconds)
    harmonic_masks = np.stack([harmonic_mask(s, n_harmonics) for s in stages]).astype(np.float64)
    noise_on = np.array([float(s.noise) for s in stages])
    harmonic = torch.from_numpy((weights.T @ harmonic_masks).astype(np.float32))
    noise = torch.from_numpy((weights.T @ noise_on).astype(np.float32))
    return {"harmonic_gain": harmonic[None], "noise_gain": noise[None, :, None]}


def steady_note(model, f0_mean: float, loudness_mean: float, mfcc_mean, n_frames: int):
    """One note held for n_frames, on the model's device: f0 [1, T, 1] Hz, loudness [1, T, 1] dB,
    mfcc [1, T, N_MFCC] from scalars and an mfcc vector [N_MFCC]."""
    device = next(unwrap_model(model).parameters()).device
    mfcc = torch.as_tensor(np.asarray(mfcc_mean, dtype=np.float32), device=device)
    return (torch.full((1, n_frames, 1), float(f0_mean), device=device),
            torch.full((1, n_frames, 1), float(loudness_mean), device=device),
            mfcc.reshape(1, 1, -1).expand(1, n_frames, -1))


def _frames_for(stages) -> tuple[int, int]:
    """(samples, frames) that the stages last."""
    n_samples = int(round(sum(s.duration for s in stages) * SAMPLE_RATE))
    return n_samples, -(-n_samples // HOP_LENGTH)


def grow_timbre(model, f0_mean: float, loudness_mean: float, mfcc_mean, stages=GROWTH_STAGES,
                seed: int = 0) -> np.ndarray:
    """Render `stages` back to back from one steady note: float32 [sum of durations * SR].

    The note (f0_mean Hz, loudness_mean dB, mfcc_mean [N_MFCC], as features.mean_note gives
    it) is held for the whole render; controls and phase run continuously and only the stage
    gains change, crossfading at boundaries, so nothing clicks. Short fades at both ends;
    scaled to 0.99 if it would clip. `stages`: anything stages_from_table takes."""
    stages = stages_from_table(stages)
    n_samples, n_frames = _frames_for(stages)
    f0, loudness, mfcc = steady_note(model, f0_mean, loudness_mean, mfcc_mean, n_frames)
    gains = stage_gains(stages, n_frames, unwrap_model(model).n_harmonics,
                        HOP_LENGTH / SAMPLE_RATE)
    audio = render(model, f0, loudness, mfcc, seed,
                   **{name: gain.to(f0.device) for name, gain in gains.items()})
    return finish_render(audio[0, :n_samples])


def stage_controls(model, f0_mean: float, loudness_mean: float, mfcc_mean, stages) -> list:
    """What sounds in each stage of grow_timbre's steady note: one dict per stage with
    name, harmonic_frequencies [H] Hz, harmonic_amplitudes [H] (amplitude x distribution after
    the stage's harmonic mask, averaged over the stage's own frames), noise_frequencies [K] Hz
    and noise_response [K] (|FFT| of the noise FIR that sounds; zeros with noise off),
    K = N_NOISE_BANDS for the default model."""
    stages = stages_from_table(stages)
    _, n_frames = _frames_for(stages)
    note = steady_note(model, f0_mean, loudness_mean, mfcc_mean, n_frames)
    check_render_inputs(model, *note)
    with evaluating(model) as core:
        controls = core.get_controls(*note)
        harmonics = (controls["amplitude"] * controls["harmonic_distribution"])[0].cpu().numpy()
        noise = controls["noise_magnitudes"][0].cpu().numpy()
        weights = stage_weights(stages, n_frames, HOP_LENGTH / SAMPLE_RATE)
        result = []
        for i, stage in enumerate(stages):
            own = weights[i] >= 0.5
            if not own.any():  # a stage shorter than the crossfade: its loudest frames
                own = weights[i] == weights[i].max()
            magnitudes = noise[own].mean(0) * float(stage.noise)
            impulse = noise_impulse_responses(torch.from_numpy(magnitudes)[None, None])[0, 0]
            result.append({
                "name": stage.name,
                "harmonic_frequencies": float(f0_mean) * np.arange(1, core.n_harmonics + 1),
                "harmonic_amplitudes": harmonics[own].mean(0) * harmonic_mask(stage,
                                                                             core.n_harmonics),
                "noise_frequencies": np.fft.rfftfreq(len(impulse), 1.0 / SAMPLE_RATE),
                "noise_response": torch.fft.rfft(impulse).abs().numpy(),
            })
    return result
