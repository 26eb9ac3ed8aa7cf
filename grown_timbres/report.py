"""Evaluation and run records: how close each resynthesis is to its target (beside a plain
sine), what one notebook run did, and the side-by-side comparison of runs.

    model, batch -> metrics per file;  run -> record (JSON);  records -> comparison table
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .config import HOP_LENGTH, LOUDNESS_FLOOR_DB
from .markup import markdown_text
from .device import device_report
from .audio import AudioInputError, atomic_write
from .batching import file_features
from .features import compute_loudness, estimate_f0
from .synth import harmonic_synth
from .model import render, unwrap_model
from .loss import MultiScaleSpectralLoss
from .history import epochs_done
from .growth import stage_levels, stages_from_table

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
    """Markdown table of evaluate_batch's metrics, model beside sine baseline (file names
    escaped: markup.markdown_text)."""
    lines = ["| file | spectral distance (model / sine) | f0 error cents (model / sine) "
             "| loudness L1 dB (model / sine) |", "|---|---|---|---|"]
    for stem, m in metrics.items():
        lines.append(f"| {markdown_text(stem)} | {m['model']['spectral_distance']:.3f} / "
                     f"{m['sine']['spectral_distance']:.3f} | {m['model']['f0_error_cents']:.1f} / "
                     f"{m['sine']['f0_error_cents']:.1f} | {m['model']['loudness_l1_db']:.2f} / "
                     f"{m['sine']['loudness_l1_db']:.2f} |")
    return "\n".join(lines)


def growth_table(grown: dict, notes: dict, stages) -> str:
    """Markdown: per grown file ({stem: audio}, {stem: HeldNote}), each stage's level and
    spectral centroid (growth.stage_levels) and what the noise adds to the held note."""
    stages = stages_from_table(stages)
    lines = ["| file | " + " | ".join(markdown_text(s.name) for s in stages) + " | noise adds |",
             "|---|" + "---|" * (len(stages) + 1)]
    for stem, audio in grown.items():
        cells = [f"{m['level_db']:.1f} dB, {m['centroid_hz']:.0f} Hz"
                 for m in stage_levels(audio, stages)]
        lines.append(f"| {markdown_text(stem)} | " + " | ".join(cells) +
                     f" | {notes[stem].noise_adds_db():.1f} dB |")
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


def steady_and_warmup(history: dict) -> tuple[float, float]:
    """(steady seconds per epoch, warm-up seconds) of a run. Steady: the median epoch after
    the first synchronised window, which holds the first epoch's one-off costs (compile,
    allocator, caches); warm-up: what that window took beyond the steady pace, plus the
    capture's own time (warm-up steps, recording, checks), which the epochs do not count."""
    seconds = epoch_seconds(history)
    capture = float(history.get("capture_seconds") or 0.0)
    if not seconds:
        return 0.0, capture
    first_window = history["timed_epochs"][0]
    later = seconds[first_window:]
    steady = float(np.median(later or seconds))
    warmup = sum(seconds[:first_window]) - steady * first_window if later else 0.0
    return steady, max(warmup, 0.0) + capture


def project_path(path, root) -> str:
    """`path` as a run record keeps it: relative to the project `root` when inside it (so the
    record survives moving the folder), absolute otherwise (the comparison plays no file outside
    the project: records.recorded_path)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def make_run_record(notebook: str, model, batch: dict, history: dict, config: dict,
                    metrics: dict, wavs: list, feature_seconds: float, root, device=None,
                    **extras) -> dict:
    """Everything the side-by-side comparison needs from one notebook run (JSON-ready): the
    loss curve and every loss term's curve, their final values, times (steady per-epoch pace
    and warm-up apart), metrics, and its files and wavs relative to the project `root`.
    Path-valued `extras` (a checkpoint) are stored relative to `root` too."""
    total = history["elapsed_seconds"][-1] if history["elapsed_seconds"] else 0.0
    n_files = len(batch["file_paths"])
    steady, warmup = steady_and_warmup(history)
    return {
        "notebook": notebook,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **device_report(device),
        "config": {**config, "model": dict(unwrap_model(model).config)},
        "files": [project_path(f, root) for f in batch["file_paths"]],
        "rejected_files": {Path(f).name: reason for f, reason in batch["errors"].items()},
        "n_files": n_files,
        "sources": batch["sources"],
        "n_examples": history.get("examples", n_files),
        "examples_per_step": history.get("examples_per_step", n_files),
        "steps_per_epoch": history.get("steps_per_epoch", 1),
        "n_steps": len(history["loss"]),
        "n_epochs": epochs_done(history),
        "feature_seconds": feature_seconds,
        "total_training_seconds": total,
        "seconds_per_file": total / max(n_files, 1),
        "steady_step_seconds": steady,
        "warmup_seconds": warmup,
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
        "wavs": [project_path(w, root) for w in wavs],
        **{key: project_path(value, root) if isinstance(value, Path) else value
           for key, value in extras.items()},
    }


def save_run_record(path, record: dict) -> Path:
    import json

    text = json.dumps(record, indent=1, default=str)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def common_stems(records: dict) -> list[str]:
    """The file stems every run learned, in the first run's order."""
    stems = [[Path(f).stem for f in record["files"]] for record in records.values()]
    return [stem for stem in stems[0] if all(stem in other for other in stems[1:])]


def comparison_rows(records: dict) -> list[dict]:
    """One row per run record {label: record}: what the side-by-side table shows.
    Speedup: the steady time per step per training example against the first run's (warm-up
    apart, so a long compile does not hide the steady pace, nor a short run flatter it); for
    files of one example each trained in one step, the time per epoch per file. Metrics: means
    over the files all runs learned (over each run's own files when they share none). A loss
    term a run lacks, or a time of a run that kept no epoch (a NaN stop before its first
    snapshot), shows as None."""
    rows = []
    terms = list(dict.fromkeys(name for r in records.values() for name in r["final_loss_terms"]))
    shared = common_stems(records)

    def per_example(record):
        return record["steady_step_seconds"] / max(record["examples_per_step"], 1) or None

    baseline = per_example(next(iter(records.values())))

    for label, record in records.items():
        stems = shared or list(record["metrics"])
        model_metrics = [record["metrics"][s]["model"] for s in stems if s in record["metrics"]]
        sine_metrics = [record["metrics"][s]["sine"] for s in stems if s in record["metrics"]]

        def mean(items, key):
            values = [x[key] for x in items if np.isfinite(x[key])]
            return float(np.mean(values)) if values else float("nan")

        pace = per_example(record)
        rows.append({
            "run": label,
            "recorded": record["created"],
            "device": record["device"],
            "files": record["n_files"],
            "examples per step": record["examples_per_step"],
            "epochs": record["n_epochs"],
            "training s": record["total_training_seconds"],
            "warm-up s": record["warmup_seconds"],
            "steady ms per step": 1000 * record["steady_step_seconds"] if pace else None,
            "ms per example per step": 1000 * pace if pace else None,
            "speedup per example": baseline / pace if baseline and pace else None,
            **{f"final {name} loss": record["final_loss_terms"].get(name) for name in terms},
            "spectral distance (sine)": f"{mean(model_metrics, 'spectral_distance'):.3f} "
                                        f"({mean(sine_metrics, 'spectral_distance'):.3f})",
            "f0 error cents (sine)": f"{mean(model_metrics, 'f0_error_cents'):.1f} "
                                     f"({mean(sine_metrics, 'f0_error_cents'):.1f})",
            "loudness L1 dB (sine)": f"{mean(model_metrics, 'loudness_l1_db'):.2f} "
                                     f"({mean(sine_metrics, 'loudness_l1_db'):.2f})",
        })
    return rows


def format_number(value) -> str:
    """A number as people read it: '1527', '12.3', '4.56', '0.0123'; never '1.53e+03'.
    None is '-'."""
    if value is None:
        return "-"
    if isinstance(value, (bool, int, np.integer)) or not isinstance(value, (float, np.floating)):
        return str(value)
    if not np.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.{max(3, 2 - int(np.floor(np.log10(magnitude))))}f}".rstrip("0")


def comparison_markdown(records: dict) -> str:
    """The side-by-side table as markdown, and under it which files the metrics cover. Text
    from the records (device, date, loss term and file names) is escaped: it shows as written."""
    rows = comparison_rows(records)
    keys = list(rows[0])

    def cell(row, key):
        value = row[key]
        if value is not None and not isinstance(value, (int, float, np.number)):
            return markdown_text(format_number(value))
        return format_number(value) + ("x" if key == "speedup per example" and value is not None
                                       else "")

    lines = ["| " + " | ".join(map(markdown_text, keys)) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row, k) for k in keys) + " |" for row in rows]
    shared = common_stems(records)
    lines.append("")
    lines.append(f"Metrics over the file{'s' if len(shared) != 1 else ''} both runs learned: "
                 f"{', '.join(map(markdown_text, shared))}." if shared else
                 "The runs share no file: each run's metrics are over its own files.")
    lines.append("Speedup: steady time per step per training example against the first run "
                 "(the time per epoch per file when every file is one example); warm-up "
                 "(compile, capture, first step) is shown apart.")
    return "\n".join(lines)
