"""Scoring a resynthesis against the files it was made from: the one measure of how close a
model's output is to its targets, for the report's metrics, the benchmark's parity distance,
the scripts and the notebooks' migration check.

    model, batch -> ({stem: {"model": {measure: value}, "sine": {...}}}, audio [n * HOP_LENGTH]
                     per file scored)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import HOP_LENGTH, LOUDNESS_FLOOR_DB
from .audio import AudioInputError
from .batching import file_features
from .features import compute_loudness, estimate_f0
from .synth import harmonic_synth
from .model import render
from .loss import MultiScaleSpectralLoss

# What resynthesis_metrics measures, in the order its dict lists them
MEASURES = ("spectral_distance", "f0_error_cents", "voiced_frames_matched", "loudness_l1_db")
PITCH_MEASURES = ("f0_error_cents", "voiced_frames_matched")  # both from one pYIN of the output


def resynthesize(model, batch: dict, seed: int = 0) -> list[np.ndarray]:
    """The model's output for every file of a batch, each cut to its valid length:
    float32 [n * HOP_LENGTH] per file. The noise is seeded by `seed` (see model.render)."""
    audio = render(model, batch["f0"], batch["loudness"], batch["mfcc"], seed=seed)
    return [audio[i, : int(n) * HOP_LENGTH] for i, n in enumerate(batch["lengths"])]


def sine_baseline(f0: np.ndarray, loudness: np.ndarray) -> np.ndarray:
    """A plain sine at f0 [T] Hz whose A-weighted loudness matches loudness [T] dB: audio [N].

    Inverts compute_loudness for one partial: mean-square a^2 / 2 times the A-weight at f0."""
    import librosa

    a_weight_db = librosa.A_weighting(np.asarray(f0, dtype=np.float64))
    amplitude = np.sqrt(2.0 * 10.0 ** ((np.asarray(loudness) - a_weight_db) / 10.0))
    amplitude[np.asarray(loudness) <= LOUDNESS_FLOOR_DB] = 0.0
    f0_t = torch.as_tensor(np.asarray(f0, dtype=np.float32)).reshape(1, -1, 1)
    amp_t = torch.as_tensor(amplitude.astype(np.float32)).reshape(1, -1, 1)
    return harmonic_synth(f0_t, amp_t)[0].numpy()


def pitch_agreement(output: np.ndarray, f0: np.ndarray, voiced: np.ndarray) -> tuple:
    """(mean |cents| of pYIN on output [N] against f0 [T] over frames voiced in both (NaN when
    none is), the share of the target's voiced frames voiced in the output too)."""
    try:
        out_f0, out_voiced = estimate_f0(output)
    except AudioInputError:  # the output has no pitch at all
        return float("nan"), 0.0
    both = voiced & out_voiced
    cents = np.abs(1200.0 * np.log2(out_f0[both] / f0[both])) if both.any() else []
    return (float(np.mean(cents)) if len(cents) else float("nan"),
            float(both.sum() / max(voiced.sum(), 1)))


def resynthesis_metrics(output: np.ndarray, target: dict, measures=MEASURES) -> dict:
    """How close `output` [N] is to a file whose features are `target` (file_features or
    extract_features: audio [N], f0 [T], voiced [T], loudness [T]), for each of `measures`:
    spectral_distance (the multi-scale loss), f0_error_cents (mean |cents| of pYIN on the output
    vs the target's f0, frames voiced in both), voiced_frames_matched and loudness_l1_db (mean
    |dB| difference). A name not in MEASURES: ValueError."""
    unknown = [name for name in measures if name not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}: choose from {', '.join(MEASURES)}")
    audio = target["audio"]
    output = np.asarray(output, dtype=np.float32)[: len(audio)]
    scores = {}
    if "spectral_distance" in measures:
        with torch.no_grad():
            scores["spectral_distance"] = float(MultiScaleSpectralLoss()(
                torch.from_numpy(output)[None], torch.from_numpy(audio)[None]))
    if any(name in measures for name in PITCH_MEASURES):
        scores.update(zip(PITCH_MEASURES, pitch_agreement(output, target["f0"], target["voiced"])))
    if "loudness_l1_db" in measures:
        loudness = target["loudness"]
        scores["loudness_l1_db"] = float(np.mean(np.abs(
            compute_loudness(output, len(loudness)) - loudness)))
    return {name: scores[name] for name in MEASURES if name in measures}


def evaluate_batch(model, batch: dict, progress: bool = True, rows=None, measures=MEASURES,
                   sine: bool = True, seed: int = 0) -> tuple[dict, list]:
    """Score the model's resynthesis (resynthesize, noise seeded by `seed`) of the batch's files
    `rows` (default: all) against them -> ({stem: {"model": resynthesis_metrics, and with
    `sine` "sine": the same for sine_baseline}}, the resynthesized audio of those rows)."""
    from tqdm.auto import tqdm

    outputs = resynthesize(model, batch, seed=seed)
    rows = range(len(outputs)) if rows is None else list(rows)
    metrics = {}
    for i in tqdm(rows, desc="metrics", disable=not progress):
        target = file_features(batch, i)
        metrics[Path(target["path"]).stem] = {
            "model": resynthesis_metrics(outputs[i], target, measures),
            **({"sine": resynthesis_metrics(sine_baseline(target["f0"], target["loudness"]),
                                            target, measures)} if sine else {}),
        }
    return metrics, [outputs[i] for i in rows]


def mean_metric(metrics: dict, name: str, which: str = "model") -> float:
    """The mean of measure `name` of `which` ("model" or "sine") over evaluate_batch's files,
    its NaNs (an output with no pitch) left out; NaN when no file has a finite one."""
    values = [by_kind[which][name] for by_kind in metrics.values()
              if np.isfinite(by_kind[which][name])]
    return float(np.mean(values)) if values else float("nan")
