"""Evaluation and run records: how close each resynthesis is to its target (beside a plain
sine), what one notebook run did, and the side-by-side comparison of runs.

    model, batch -> metrics per file;  run -> record (JSON);  records -> comparison table
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .audio import AudioInputError, atomic_write
from .config import HOP_LENGTH, LOUDNESS_FLOOR_DB
from .features import compute_loudness, estimate_f0, file_features
from .loss import MultiScaleSpectralLoss
from .model import render, unwrap_model
from .synth import harmonic_synth
from .train import device_report

RUN_LABELS = {"ddsp_original": "original", "ddsp_optimized": "optimized"}
FINAL_EPOCHS = 10  # a run's final loss terms: their mean over this many last epochs


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


def resynthesis_metrics(output: np.ndarray, target: dict) -> dict:
    """How close `output` [N] is to a file whose features are `target` (file_features or
    extract_features: audio [N], f0 [T], voiced [T], loudness [T]): spectral_distance (the
    multi-scale loss), f0_error_cents (mean |cents| of pYIN on the output vs the target's f0,
    frames voiced in both), voiced_frames_matched and loudness_l1_db (mean |dB| difference)."""
    audio, f0, voiced, loudness = (target[k] for k in ("audio", "f0", "voiced", "loudness"))
    output = np.asarray(output, dtype=np.float32)[: len(audio)]
    with torch.no_grad():
        spectral = float(MultiScaleSpectralLoss()(torch.from_numpy(output)[None],
                                                  torch.from_numpy(audio)[None]))
    try:
        out_f0, out_voiced = estimate_f0(output)
        both = voiced & out_voiced
        cents = np.abs(1200.0 * np.log2(out_f0[both] / f0[both])) if both.any() else []
        f0_error = float(np.mean(cents)) if len(cents) else float("nan")
        voiced_share = float(both.sum() / max(voiced.sum(), 1))
    except AudioInputError:  # the output has no pitch at all
        f0_error, voiced_share = float("nan"), 0.0
    loudness_l1 = float(np.mean(np.abs(compute_loudness(output, len(loudness)) - loudness)))
    return {"spectral_distance": spectral, "f0_error_cents": f0_error,
            "voiced_frames_matched": voiced_share, "loudness_l1_db": loudness_l1}


def evaluate_batch(model, batch: dict, progress: bool = True) -> tuple[dict, list]:
    """Metrics per file for the model and for the sine baseline -> ({stem: {"model": {...},
    "sine": {...}}}, resynthesized audio per file)."""
    from tqdm.auto import tqdm

    outputs = resynthesize(model, batch)
    metrics = {}
    for i in tqdm(range(len(outputs)), desc="metrics", disable=not progress):
        target = file_features(batch, i)
        metrics[Path(target["path"]).stem] = {
            "model": resynthesis_metrics(outputs[i], target),
            "sine": resynthesis_metrics(sine_baseline(target["f0"], target["loudness"]), target),
        }
    return metrics, outputs


def metrics_table(metrics: dict) -> str:
    """Markdown table of evaluate_batch's metrics, model beside sine baseline."""
    lines = ["| file | spectral distance (model / sine) | f0 error cents (model / sine) "
             "| loudness L1 dB (model / sine) |", "|---|---|---|---|"]
    for stem, m in metrics.items():
        lines.append(f"| {stem} | {m['model']['spectral_distance']:.3f} / "
                     f"{m['sine']['spectral_distance']:.3f} | {m['model']['f0_error_cents']:.1f} / "
                     f"{m['sine']['f0_error_cents']:.1f} | {m['model']['loudness_l1_db']:.2f} / "
                     f"{m['sine']['loudness_l1_db']:.2f} |")
    return "\n".join(lines)


def epoch_seconds(history: dict) -> list[float]:
    """Wall time of every epoch, from the synchronised timestamps (each window's mean). A
    timestamp of no new epoch (histories saved before issue 13 timed a NaN stop's epoch twice)
    counts toward the next window."""
    seconds, previous_epoch, previous_time = [], 0, 0.0
    for epoch, elapsed in zip(history["timed_epochs"], history["elapsed_seconds"]):
        window = epoch - previous_epoch
        if window > 0:
            seconds += [(elapsed - previous_time) / window] * window
            previous_epoch, previous_time = epoch, elapsed
    return seconds


def make_run_record(notebook: str, model, batch: dict, history: dict, config: dict,
                    metrics: dict, wavs: list, feature_seconds: float, device=None,
                    **extras) -> dict:
    """Everything the side-by-side comparison needs from one notebook run (JSON-ready): the
    loss curve and every loss term's curve, their final values, times, metrics, wavs."""
    total = history["elapsed_seconds"][-1] if history["elapsed_seconds"] else 0.0
    n_files = len(batch["file_paths"])
    return {
        "notebook": notebook,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **device_report(device),
        "config": {**config, "model": dict(unwrap_model(model).config)},
        "files": batch["file_paths"],
        "rejected_files": batch["errors"],
        "n_files": n_files,
        "n_epochs": len(history["loss"]),
        "feature_seconds": feature_seconds,
        "total_training_seconds": total,
        "seconds_per_file": total / max(n_files, 1),
        "epoch_seconds": epoch_seconds(history),
        "loss_curve": history["loss"],
        "loss_term_curves": history["terms"],
        "timed_epochs": history["timed_epochs"],
        "elapsed_seconds": history["elapsed_seconds"],
        "training_status": history["status"],
        "skipped_steps": history["skipped_steps"],
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "final_loss_terms": {name: float(np.mean(curve[-FINAL_EPOCHS:]))
                             for name, curve in history["terms"].items() if curve},
        "metrics": metrics,
        "wavs": [str(w) for w in wavs],
        **extras,
    }


def save_run_record(path, record: dict) -> Path:
    import json

    text = json.dumps(record, indent=1, default=str)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load_run_record(path) -> dict | None:
    """The record at `path`, or None if there is none yet."""
    import json

    path = Path(path)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if "spectral_loss_curve" in record:  # written before the loss had named terms
        record["loss_term_curves"] = {"spectral": record.pop("spectral_loss_curve")}
        final = record.pop("final_spectral_loss")
        record["final_loss_terms"] = {} if final is None else {"spectral": final}
    return record


def seconds_per_file_epoch(record: dict) -> float | None:
    """A run's training time per file per epoch; None for a run that kept no epoch (it stopped
    on a NaN loss before its first snapshot)."""
    return record["seconds_per_file"] / record["n_epochs"] if record["n_epochs"] else None


def comparison_rows(records: dict) -> list[dict]:
    """One row per run record {label: record}: what the side-by-side table shows. Speedup:
    time per file per epoch against the first run; a loss term a run lacks, or a time of a run
    that kept no epoch, shows as None."""
    rows = []
    baseline = seconds_per_file_epoch(next(iter(records.values())))
    terms = list(dict.fromkeys(name for r in records.values() for name in r["final_loss_terms"]))
    for label, record in records.items():
        model_metrics = [m["model"] for m in record["metrics"].values()]
        sine_metrics = [m["sine"] for m in record["metrics"].values()]

        def mean(items, key):
            values = [x[key] for x in items if np.isfinite(x[key])]
            return float(np.mean(values)) if values else float("nan")

        per_epoch = seconds_per_file_epoch(record)
        rows.append({
            "run": label,
            "device": record["device"],
            "files": record["n_files"],
            "epochs": record["n_epochs"],
            "training s": record["total_training_seconds"],
            "s per file": record["seconds_per_file"],
            "s per file per 1000 epochs": 1000 * per_epoch if per_epoch else None,
            "speedup per file": baseline / per_epoch if baseline and per_epoch else None,
            **{f"final {name} loss": record["final_loss_terms"].get(name) for name in terms},
            "spectral distance (sine)": f"{mean(model_metrics, 'spectral_distance'):.3f} "
                                        f"({mean(sine_metrics, 'spectral_distance'):.3f})",
            "f0 error cents (sine)": f"{mean(model_metrics, 'f0_error_cents'):.1f} "
                                     f"({mean(sine_metrics, 'f0_error_cents'):.1f})",
            "loudness L1 dB (sine)": f"{mean(model_metrics, 'loudness_l1_db'):.2f} "
                                     f"({mean(sine_metrics, 'loudness_l1_db'):.2f})",
        })
    return rows


def comparison_markdown(records: dict) -> str:
    """The side-by-side table as markdown (speedup: time per file per epoch vs the first run)."""
    rows = comparison_rows(records)
    keys = list(rows[0])

    def cell(value):
        if value is None:
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def resynthesis_wav(record: dict, stem: str) -> Path | None:
    """The resynthesis wav of `stem` that a run record lists, if it exists."""
    return next((Path(w) for w in record["wavs"]
                 if Path(w).name == f"resynth_{stem}.wav" and Path(w).is_file()), None)
