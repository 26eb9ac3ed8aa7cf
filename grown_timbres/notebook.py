"""Notebook plumbing: install what a runtime lacks, save uploads where the notebook reads them,
players at true level, and the side-by-side section that compares two runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import atomic_write, fit_to_full_scale, load_audio
from .config import SAMPLE_RATE
from .plots import plot_loss_comparison, plot_spectrogram_comparison
from .report import RUN_LABELS, comparison_markdown, load_run_record, resynthesis_wav

RUNTIME_PACKAGES = {"librosa": "librosa", "soundfile": "soundfile", "tqdm": "tqdm",
                    "matplotlib": "matplotlib", "ipywidgets": "ipywidgets"}


def install_missing(packages: dict = RUNTIME_PACKAGES) -> list[str]:
    """pip-install the runtime packages ({import name: pip name}) that are missing; never torch,
    so Colab keeps its CUDA build. Returns what was installed."""
    import importlib.util
    import subprocess
    import sys

    missing = [pip for module, pip in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return missing


def safe_upload_name(name: str) -> str:
    """A bare file name from an uploaded name: no folders (`../../x.wav` -> `x.wav`), no leading
    dots, no characters outside letters, digits and `-_. `. Raises ValueError if nothing is left."""
    base = name.replace("\\", "/").split("/")[-1]
    cleaned = "".join(c if c.isalnum() or c in "-_. " else "_" for c in base).strip().lstrip(".")
    if not cleaned:
        raise ValueError(f"{name!r} is not a usable file name")
    return cleaned


def save_uploads(uploads, folder) -> list[Path]:
    """Write uploaded files into `folder` only: uploads is {name: bytes} (Colab's
    files.upload()) or a sequence of {"name", "content"} dicts (ipywidgets 8 FileUpload.value).
    Same-named uploads are kept apart (`x.wav`, `x_2.wav`). Returns the written paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = uploads.items() if isinstance(uploads, dict) else (
        (item["name"], item["content"]) for item in uploads)
    written = []
    for name, content in items:
        target = folder / safe_upload_name(name)
        stem, suffix, n = target.stem, target.suffix, 2
        while target.exists() or target in written:
            target = folder / f"{stem}_{n}{suffix}"
            n += 1
        written.append(atomic_write(target, lambda tmp, data=bytes(content):
                                    Path(tmp).write_bytes(data)))
    return written


def audio_player(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """HTML <audio> element at the clip's true level (no normalisation; scaled down only if
    it would clip): [N]."""
    from IPython.display import Audio

    return Audio(fit_to_full_scale(audio, name="audio player"), rate=sample_rate,
                 normalize=False)._repr_html_()


def players_table(rows: dict, columns) -> str:
    """HTML table of players: rows {label: {column: audio [N] or None}}; renders in Jupyter,
    Colab and on GitHub."""
    head = "".join(f"<th>{c}</th>" for c in ["file", *columns])
    body = ""
    for label, clips in rows.items():
        cells = "".join(f"<td>{audio_player(clips[c]) if clips.get(c) is not None else '-'}</td>"
                        for c in columns)
        body += f"<tr><td>{label}</td>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def show_comparison(runs_dir) -> dict | None:
    """The side-by-side section: table, loss curves (by epoch and by wall time), spectrograms
    and players of one tone that both runs learned. Says what to run when a record is missing."""
    from IPython.display import HTML, Markdown, display

    runs_dir = Path(runs_dir)
    records = {label: load_run_record(runs_dir / f"{name}.json")
               for name, label in RUN_LABELS.items()}
    missing = [f"`notebooks/{name}.ipynb`" for name, label in RUN_LABELS.items()
               if records[label] is None]
    if missing:
        display(Markdown(f"No run record yet in `{runs_dir}` from {' and '.join(missing)}: run "
                         "that notebook to the end, then re-run this cell."))
        return None
    display(Markdown(comparison_markdown(records)))
    if len({r["device"] for r in records.values()}) > 1:
        display(Markdown("**The two runs used different devices**: the speedup mixes hardware "
                         "with optimizations."))
    plot_loss_comparison(records)
    original, optimized = records["original"], records["optimized"]
    stem = Path(original["files"][0]).stem
    original_wav, optimized_wav = resynthesis_wav(original, stem), resynthesis_wav(optimized, stem)
    if original_wav is None or optimized_wav is None:
        display(Markdown(f"The optimized run did not learn `{stem}` (the original's file): no "
                         "sound to compare."))
        return records
    clips = {"target": load_audio(original["files"][0]), "original": load_audio(original_wav),
             "optimized": load_audio(optimized_wav)}
    plot_spectrogram_comparison(clips, stem)
    display(HTML(players_table({stem: clips}, list(clips))))
    return records
