"""Notebook plumbing: install what a runtime lacks, save uploads where the notebook reads them,
players at true level, and the side-by-side section that compares two runs."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .audio import atomic_write, fit_to_full_scale, load_audio
from .config import MAX_FILE_NAME_BYTES, MAX_UPLOAD_BYTES, SAMPLE_RATE
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
    dots, no characters outside letters, digits and `-_. `, at most MAX_FILE_NAME_BYTES (the
    stem is shortened, the suffix kept). Raises ValueError if nothing is left."""
    if not isinstance(name, str):
        raise ValueError(f"{name!r} is not a usable file name (not text)")
    base = name.replace("\\", "/").split("/")[-1]
    cleaned = "".join(c if c.isalnum() or c in "-_. " else "_" for c in base).strip().lstrip(".")
    if not cleaned:
        raise ValueError(f"{name!r} is not a usable file name")
    return _fit_name(Path(cleaned).stem, Path(cleaned).suffix)


def _fit_name(stem: str, suffix: str) -> str:
    """stem + suffix in at most MAX_FILE_NAME_BYTES of UTF-8, cutting the stem."""
    room = MAX_FILE_NAME_BYTES - len(suffix.encode())
    if room < 1:  # "a.<300 letters>": the suffix is no suffix
        stem, suffix, room = stem + suffix, "", MAX_FILE_NAME_BYTES
    return stem.encode()[:room].decode(errors="ignore").rstrip() + suffix


def save_uploads(uploads, folder) -> list[Path]:
    """Write uploaded files into `folder` only: uploads is {name: bytes} (Colab's
    files.upload()) or a sequence of {"name", "content"} dicts (ipywidgets 8 FileUpload.value).
    Same-named uploads are kept apart (`x.wav`, `x_2.wav`). An upload that cannot be saved (no
    usable name, over MAX_UPLOAD_BYTES, not bytes, a failed write) is skipped with a warning
    naming it and why; the others are saved. Returns the written paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = uploads.items() if isinstance(uploads, dict) else (
        (item.get("name"), item.get("content")) if isinstance(item, dict) else (item, None)
        for item in uploads)
    written = []
    for name, content in items:
        try:
            written.append(_save_upload(name, content, folder, written))
        except (ValueError, OSError) as err:
            warnings.warn(f"upload {name!r} skipped: {err}", stacklevel=2)
    return written


def _save_upload(name, content, folder: Path, taken: list) -> Path:
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise ValueError(f"its content is {type(content).__name__}, not bytes")
    size = memoryview(content).nbytes
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{size} bytes, more than MAX_UPLOAD_BYTES={MAX_UPLOAD_BYTES}")
    target = folder / safe_upload_name(name)
    stem, suffix, n = target.stem, target.suffix, 2
    while target.exists() or target in taken:
        target = folder / _fit_name(stem, f"_{n}{suffix}")
        n += 1
    return atomic_write(target, lambda tmp, data=bytes(content): Path(tmp).write_bytes(data))


def audio_player(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """HTML <audio> element at the clip's true level (no normalisation; scaled down only if
    it would clip): [N]."""
    from IPython.display import Audio

    return Audio(fit_to_full_scale(audio), rate=sample_rate, normalize=False)._repr_html_()


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
