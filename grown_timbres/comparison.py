"""The side-by-side section of both notebooks: the two runs' records compared (table, loss
curves), and one tone both learned heard and seen from each. The files a record names are found
again under the project folder only; a name that resolves outside it, or through a link that
leaves it, is refused with a message naming the record and the path, and only its player is
left out.

    record + stem + project root -> the wavs to play (target excerpt, resynthesis), or an error
    wav -> at most EXCERPT_SECONDS of float32 audio [N], or an error
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from .config import MAX_AUDIO_CHANNELS, SAMPLE_RATE
from .markup import markdown_text
from .audio import finite_audio, load_audio
from .batching import EXCERPT_SECONDS
from .report import common_stems, comparison_markdown
from .runs import RUN_LABELS, RunRecordError, load_run_record
from .plots import plot_loss_comparison, plot_spectrogram_comparison
from .notebook import players_table


def recorded_path(path, root, record_file="a run record") -> Path | None:
    """The file a run record names, found again under the project `root`: a relative name under
    `root`; a name that no longer exists (an absolute path from before the folder moved) by its
    file name in a folder of the same name under `root` (both runs write resynth_<stem>.wav:
    the folder tells them apart). None when it is nowhere. Raises RunRecordError naming
    `record_file` and the path when the file found resolves outside `root` (`../`, an absolute
    path elsewhere, a symbolic link that leaves the project)."""
    return _found_again([Path(path)], root, record_file)


def _found_again(paths: list, root, record_file) -> Path | None:
    """recorded_path of the first of `paths` (Paths, all of one file name) found again. The
    project is searched for the name once, however many folders a record lists it in."""
    root = Path(root).resolve()
    for path in paths:
        candidate = path if path.is_absolute() else root / path
        if candidate.is_file():
            return _inside(candidate, root, record_file, path)
    name = paths[0].name if paths else ""
    if name in ("", ".", ".."):
        return None
    folders = {path.parent.name: path for path in reversed(paths)}  # the first listed wins
    for match in sorted(root.rglob(glob.escape(name))):  # the name is no pattern
        if match.parent.name in folders and match.is_file():
            return _inside(match, root, record_file, folders[match.parent.name])
    return None


def _inside(found: Path, root: Path, record_file, named) -> Path:
    resolved = found.resolve()
    if not resolved.is_relative_to(root):
        raise RunRecordError(f"{record_file}: the path {str(named)!r} leads to {resolved}, "
                             f"outside the project folder {root}: refused")
    return resolved


def _listed_wav(record: dict, name: str, root, record_file) -> Path | None:
    """The wav called `name` among the record's wavs, where it is now (see recorded_path)."""
    return _found_again([Path(w) for w in record["wavs"] if Path(w).name == name], root,
                        record_file)


def resynthesis_wav(record: dict, stem: str, root, record_file="a run record") -> Path | None:
    """The resynthesis wav of `stem` that a run record lists, where it is now; RunRecordError
    when it leads outside the project."""
    return _listed_wav(record, f"resynth_{stem}.wav", root, record_file)


def target_wav(record: dict, stem: str, root, record_file="a run record") -> Path | None:
    """What the run learned from `stem`, as it listened to it: the excerpt the run saved in its
    own folder (target_<stem>.wav), so that a file trained on from elsewhere still compares;
    for records from before the excerpt was saved, the learned file itself when it is in the
    project. RunRecordError when it leads outside the project."""
    saved = _listed_wav(record, f"target_{stem}.wav", root, record_file)
    if saved is not None:
        return saved
    learned = next((f for f in record["files"] if Path(f).stem == stem), None)
    return None if learned is None else recorded_path(learned, root, record_file)


def recorded_audio(path, record_file="a run record") -> np.ndarray:
    """A file the comparison plays, as float32 [N] at SAMPLE_RATE, at most EXCERPT_SECONDS (what
    a run listens to; a player embeds all it plays in the notebook): a wav a run wrote
    (audio.write_wav) at its true level; another file (an older record's learned file) through
    audio.load_audio. RunRecordError naming the record and the file when it is no usable
    audio."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        if info.samplerate != SAMPLE_RATE or not 1 <= info.channels <= MAX_AUDIO_CHANNELS:
            return load_audio(path, max_seconds=EXCERPT_SECONDS)
        audio = sf.read(str(path), frames=int(EXCERPT_SECONDS * SAMPLE_RATE), dtype="float32",
                        always_2d=True)[0].mean(axis=1)
        return finite_audio(audio, name=str(path))
    except (RuntimeError, OSError, ValueError) as err:  # soundfile's errors are RuntimeErrors
        raise RunRecordError(f"{record_file}: {path} cannot be played ({err})") from err


def project_root(start) -> Path:
    """The project folder that holds `start`: the nearest folder up with ddsp_helpers.py
    (`start` itself when there is none)."""
    start = Path(start).resolve()
    return next((p for p in [start, *start.parents] if (p / "ddsp_helpers.py").is_file()), start)


def show_comparison(runs_dir, root=None) -> dict | None:
    """The side-by-side section: table, loss curves (by epoch and by wall time), spectrograms
    and players of one tone that both runs learned. Says what to run when a record is missing,
    and names the file and the field of one that fails its checks (runs.load_run_record).
    Paths in the records are found under `root` (default: the project folder of `runs_dir`),
    so the comparison still plays after the folder moved; a path that leads outside `root`,
    or a file that is no audio, is refused with a message naming the record and the path, and
    only its player is left out (recorded_path). Returns the records shown."""
    from IPython.display import HTML, Markdown, display

    runs_dir = Path(runs_dir)
    root = project_root(runs_dir) if root is None else Path(root)
    records = loaded_records(runs_dir)
    if records is None:
        return None
    display(Markdown(comparison_markdown(records)))
    if len({r["device"] for r in records.values()}) > 1:
        display(Markdown("**The two runs used different devices**: the speedup mixes hardware "
                         "with optimizations."))
    plot_loss_comparison(records)
    stems = common_stems(records)
    if not stems:
        display(Markdown("The two runs learned no file in common: no sound to compare."))
        return records
    stem = stems[0]
    clips = played_clips(records, stem, runs_dir, root)
    if clips:
        plot_spectrogram_comparison(clips, stem.replace("$", r"\$"))  # a name is no mathtext
        display(HTML(players_table({stem: clips}, list(clips))))
    return records


def loaded_records(runs_dir: Path) -> dict | None:
    """{label: record} of both runs (RUN_LABELS), or None, saying which notebook to run, when
    a record is missing or fails its checks (a record that fails them is not compared)."""
    from IPython.display import Markdown, display

    records, missing = {}, []
    for name, label in RUN_LABELS.items():
        try:
            records[label] = load_run_record(runs_dir / f"{name}.json")
            if records[label] is None:
                missing.append(f"`notebooks/{name}.ipynb`")
        except RunRecordError as err:
            records[label] = None
            display(Markdown(f"Not compared: {markdown_text(err)}. Run "
                             f"`notebooks/{name}.ipynb` again to write a new record."))
    if missing:
        display(Markdown(f"No run record yet in {markdown_text(runs_dir)} from "
                         f"{' and '.join(missing)}: run that notebook to the end, then re-run "
                         "this cell."))
    return None if None in records.values() else records


def played_clips(records: dict, stem: str, runs_dir: Path, root: Path) -> dict:
    """{"target" and each run's label: audio [N]} of `stem`, the target from the first record
    that has it; a file refused or unreadable loses its player only (said, naming it), and
    files gone from `root` are named together."""
    from IPython.display import Markdown, display

    clips, refused = {}, set()
    files = {label: runs_dir / f"{name}.json" for name, label in RUN_LABELS.items()}
    sources = [("target", label, target_wav) for label in records] + [
        (label, label, resynthesis_wav) for label in records]
    for clip, label, find in sources:
        if clip in clips:
            continue
        try:
            path = find(records[label], stem, root, files[label])
            if path is not None:
                clips[clip] = recorded_audio(path, files[label])
        except RunRecordError as err:
            refused.add(clip)
            display(Markdown(f"Not played: {markdown_text(err)}"))
    lost = [clip for clip in ["target", *records] if clip not in clips and clip not in refused]
    if lost:
        display(Markdown(f"Both runs learned {markdown_text(stem)}, but these files are gone "
                         f"from {markdown_text(root)}: {', '.join(lost)}. Re-run the notebooks "
                         "to hear them side by side."))
    return clips
