"""Run records as the comparison reads them, trusting nothing in them: records are shared ("here
is my run, compare it with yours") and edited by hand. The files a record names are found
again under the project folder only; a name that resolves outside it, or through a link that
leaves it, is refused with a message naming the record and the path.

    record + stem + project root -> the wavs to play (target excerpt, resynthesis), or an error
    wav -> at most EXCERPT_SECONDS of float32 audio [N], or an error
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from .config import MAX_AUDIO_CHANNELS, SAMPLE_RATE
from .audio import finite_audio, load_audio
from .batching import EXCERPT_SECONDS


class RunRecordError(ValueError):
    """A run record, or a file it names, that the comparison cannot use; the message names the
    record's file and the field or path."""


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
