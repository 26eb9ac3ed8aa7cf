"""Run records as the comparison reads them, trusting nothing in them: records are shared ("here
is my run, compare it with yours") and edited by hand. A record is checked as it loads: every
field the comparison reads must be there with its type, or the error names the file and the
field (fields it does not know are kept: later versions add some). The files a record names
are found again under the project folder only; a name that resolves outside it, or through a
link that leaves it, is refused with a message naming the record and the path.

    JSON file -> record (dict), checked, older versions' fields worked out, or an error
    record + stem + project root -> the wavs to play (target excerpt, resynthesis), or an error
    wav -> at most EXCERPT_SECONDS of float32 audio [N], or an error
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from .config import MAX_AUDIO_CHANNELS, MAX_RUN_RECORD_BYTES, SAMPLE_RATE, is_real_number
from .audio import finite_audio, load_audio
from .batching import EXCERPT_SECONDS
from .report import steady_and_warmup


class RunRecordError(ValueError):
    """A run record, or a file it names, that the comparison cannot use; the message names the
    record's file and the field or path."""


METRIC = ("object", {name: "number" for name in
                     ("spectral_distance", "f0_error_cents", "loudness_l1_db")})
# What the comparison reads (table, loss plots, players), checked in this order. Kinds:
# "text", "number" (NaN allowed: a metric can be undefined), "count" (a whole number >= 0),
# "positive", "number or null", ("list", kind), ("map", kind) (an object of any keys) and
# ("object", {field: kind}).
FIELDS = {
    "created": "text", "device": "text", "n_files": "count", "examples_per_step": "count",
    "n_epochs": "number", "total_training_seconds": "number", "warmup_seconds": "number",
    "steady_step_seconds": "number", "final_loss_terms": ("map", "number or null"),
    "metrics": ("map", ("object", {"model": METRIC, "sine": METRIC})),
    "files": ("list", "text"), "wavs": ("list", "text"), "loss_curve": ("list", "number"),
    "epoch_seconds": ("list", "number"),
}
OPTIONAL_FIELDS = {"steps_per_epoch": "positive"}
KIND_NAMES = {"text": "text", "number": "a number", "count": "a whole number, 0 or more",
              "positive": "a number above 0", "number or null": "a number or null",
              "list": "a list", "map": "an object",
              "object": "an object"}


CHECKS = {"text": lambda v: isinstance(v, str), "number": is_real_number,
          "count": lambda v: is_real_number(v) and float(v).is_integer() and v >= 0,
          "positive": lambda v: is_real_number(v) and v > 0,
          "number or null": lambda v: v is None or is_real_number(v),
          "list": lambda v: isinstance(v, list), "map": lambda v: isinstance(v, dict),
          "object": lambda v: isinstance(v, dict)}


def _check(value, kind, field: str, record_file):
    """Raise RunRecordError naming `record_file` and `field` (its place inside the record too:
    metrics['01_C4']['model']) unless `value` is of `kind`."""
    name = kind if isinstance(kind, str) else kind[0]
    if not CHECKS[name](value):
        raise RunRecordError(f"{record_file}: field {field} must be {KIND_NAMES[name]}, not "
                             f"{type(value).__name__} {str(value)[:40]!r}")
    if name == "list":
        for i, item in enumerate(value):
            _check(item, kind[1], f"{field}[{i}]", record_file)
    elif name == "map":
        for key, item in value.items():
            _check(item, kind[1], f"{field}[{key!r}]", record_file)
    elif name == "object":
        for key, item_kind in kind[1].items():
            if key not in value:
                raise RunRecordError(f"{record_file}: field {field}[{key!r}] is missing")
            _check(value[key], item_kind, f"{field}[{key!r}]", record_file)


def _read_json(path: Path) -> dict:
    import json

    size = path.stat().st_size
    if size > MAX_RUN_RECORD_BYTES:
        raise RunRecordError(f"{path}: {size} bytes, more than MAX_RUN_RECORD_BYTES="
                             f"{MAX_RUN_RECORD_BYTES}: not a run record")
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RunRecordError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise RunRecordError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, "
                             f"column {err.colno})") from err
    except (ValueError, RecursionError) as err:  # a 5000-digit number, nesting without end
        raise RunRecordError(f"{path}: not a usable JSON record ({err})") from err
    if not isinstance(record, dict):
        raise RunRecordError(f"{path}: a run record is a JSON object, not "
                             f"{type(record).__name__}")
    return record


def load_run_record(path) -> dict | None:
    """The run record at `path`, checked, or None when there is none yet (nothing, or no
    regular file, there). Records from older versions load with what they lack worked out
    (named loss terms, examples per step, steady pace and warm-up); fields this version does
    not know are kept. Raises RunRecordError naming the file and the field for a record that
    is no JSON object, lacks a field the comparison reads (FIELDS) or holds one of another
    type, or is larger than MAX_RUN_RECORD_BYTES."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = _read_json(path)
    except OSError as err:
        raise RunRecordError(f"{path}: not readable ({err.strerror or err})") from err
    if "spectral_loss_curve" in record:  # written before the loss had named terms
        record["loss_term_curves"] = {"spectral": record.pop("spectral_loss_curve")}
        final = record.pop("final_spectral_loss", None)
        record["final_loss_terms"] = {} if final is None else {"spectral": final}
    if "steady_epoch_seconds" in record:  # written before steps and epochs were told apart
        record["steady_step_seconds"] = record.pop("steady_epoch_seconds")
    if "examples_per_step" not in record and "n_files" in record:  # before examples
        record["examples_per_step"] = record["n_files"]
    if "steady_step_seconds" not in record:  # written before the steady pace was kept
        timing = {"timed_epochs": record.get("timed_epochs"),
                  "elapsed_seconds": record.get("elapsed_seconds"),
                  "capture_seconds": record.get("capture_seconds", 0.0)}
        kinds = [("list", "count"), ("list", "number"), "number or null"]
        for (field, value), kind in zip(timing.items(), kinds):
            _check(value, kind, field, path)
        _check(record.get("loss_curve"), ("list", "number"), "loss_curve", path)
        if max(timing["timed_epochs"], default=0) > len(record["loss_curve"]):  # not one a step
            raise RunRecordError(f"{path}: field timed_epochs counts more epochs than "
                                 f"loss_curve has steps ({len(record['loss_curve'])})")
        record["steady_step_seconds"], record["warmup_seconds"] = steady_and_warmup(timing)
    for field, kind in FIELDS.items():
        if field not in record:
            raise RunRecordError(f"{path}: required field {field!r} is missing")
        _check(record[field], kind, field, path)
    for field, kind in OPTIONAL_FIELDS.items():
        if field in record:
            _check(record[field], kind, field, path)
    return record


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
