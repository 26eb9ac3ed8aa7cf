"""Tables for the notebooks: the metrics beside a plain sine, the growth stages' levels, what
training takes from each file, and the side-by-side comparison of run records.

    metrics -> markdown;  grown audio + held notes -> markdown;  batch -> sources markdown;
    run records {label: record} -> comparison rows -> markdown
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .markup import markdown_text
from .batching import EXAMPLE_SECONDS, MIN_VOICED_FRACTION
from .growth import stage_levels, stages_from_table
from .scoring import mean_metric


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


def sources_table(batch: dict) -> str:
    """Markdown: per file, accepted or why not; for an accepted one its length, the training
    examples taken from it, the seconds they cover and the windows dropped (batching.collate),
    and the excerpt that evaluation and growth use; then the totals. Names and reasons are
    escaped (markup.markdown_text): a file's name shows as it is, never as markup."""
    lines = ["| file | status | length | training examples | used | windows dropped: silent, "
             f"under {MIN_VOICED_FRACTION:.0%} pitched | excerpt from |",
             "|---|---|---|---|---|---|---|"]
    for source in batch["sources"]:
        lines.append(f"| {markdown_text(source['file'])} | accepted | {source['seconds']:.1f} s | "
                     f"{source['examples']} | {source['seconds_used']:.1f} s | "
                     f"{source['silent']}, {source['unpitched']} | "
                     f"{source['excerpt_start_seconds']:.1f} s |")
    lines += [f"| {markdown_text(Path(path).name)} | **rejected** | {markdown_text(reason)} "
              "| | | | |" for path, reason in batch["errors"].items()]
    used = sum(source["seconds_used"] for source in batch["sources"])
    examples = sum(source["examples"] for source in batch["sources"])
    lines.append(f"\n{examples} training examples of at most {EXAMPLE_SECONDS:.0f} s from "
                 f"{len(batch['sources'])} files: {used / 60:.2f} minutes of audio used.")
    return "\n".join(lines)


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
        metrics = {stem: record["metrics"][stem] for stem in stems if stem in record["metrics"]}

        def mean(key, which):
            return mean_metric(metrics, key, which)

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
            "spectral distance (sine)": f"{mean('spectral_distance', 'model'):.3f} "
                                        f"({mean('spectral_distance', 'sine'):.3f})",
            "f0 error cents (sine)": f"{mean('f0_error_cents', 'model'):.1f} "
                                     f"({mean('f0_error_cents', 'sine'):.1f})",
            "loudness L1 dB (sine)": f"{mean('loudness_l1_db', 'model'):.2f} "
                                     f"({mean('loudness_l1_db', 'sine'):.2f})",
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
