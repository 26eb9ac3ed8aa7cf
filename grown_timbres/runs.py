"""Run records: what one notebook run did (JSON), written atomically and read back trusting nothing
in them: records are shared ("here is my run, compare it with yours") and edited by hand. A
record is checked as it loads: every field the comparison reads must be there with its type, or
the error names the file and the field (fields it does not know are kept: later versions add
some). The files a record names are found again by comparison.py, under the project only.

    model, batch, history, metrics, wavs -> record (dict) -> JSON file
    JSON file -> record (dict), checked, older versions' fields worked out, or an error
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .config import MAX_RUN_RECORD_BYTES, is_real_number
from .device import device_report
from .files import atomic_write
from .model import unwrap_model
from .history import as_history, epochs_done

RUN_LABELS = {"ddsp_original": "original", "ddsp_optimized": "optimized"}
FINAL_STEPS = 10  # a run's final loss terms: their mean over this many last steps


def step_seconds(timed_steps: list, elapsed_seconds: list) -> list[float]:
    """Wall time of every step, from the synchronised timestamps (each window's mean): at
    timed_steps[i] steps, elapsed_seconds[i] had passed. A timestamp of no new step (histories
    saved before issue 13 timed a NaN stop's step twice) counts toward the next window."""
    seconds, previous_step, previous_time = [], 0, 0.0
    for step, elapsed in zip(timed_steps, elapsed_seconds):
        window = step - previous_step
        if window > 0:
            seconds += [(elapsed - previous_time) / window] * window
            previous_step, previous_time = step, elapsed
    return seconds


def steady_and_warmup(timed_steps: list, elapsed_seconds: list,
                      capture_seconds: float | None = 0.0) -> tuple[float, float]:
    """(steady seconds per step, warm-up seconds) of a run. Steady: the median step after the
    first synchronised window, which holds the first step's one-off costs (compile, allocator,
    caches); warm-up: what that window took beyond the steady pace, plus the capture's own
    time (warm-up steps, recording, checks), which the steps do not count."""
    seconds = step_seconds(timed_steps, elapsed_seconds)
    capture = float(capture_seconds or 0.0)
    if not seconds:
        return 0.0, capture
    first_window = timed_steps[0]
    later = seconds[first_window:]
    steady = float(np.median(later or seconds))
    warmup = sum(seconds[:first_window]) - steady * first_window if later else 0.0
    return steady, max(warmup, 0.0) + capture


def project_path(path, root) -> str:
    """`path` as a run record keeps it: relative to the project `root` when inside it (so the
    record survives moving the folder), absolute otherwise (the comparison plays no file outside
    the project: comparison.recorded_path)."""
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
    history = as_history(history)
    total = history.elapsed_seconds[-1] if history.elapsed_seconds else 0.0
    n_files = len(batch["file_paths"])
    steady, warmup = steady_and_warmup(history.timed_steps, history.elapsed_seconds,
                                       history.capture_seconds)
    return {
        "notebook": notebook,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **device_report(device),
        "config": {**config, "model": dict(unwrap_model(model).config)},
        "files": [project_path(f, root) for f in batch["file_paths"]],
        "rejected_files": {Path(f).name: reason for f, reason in batch["errors"].items()},
        "n_files": n_files,
        "sources": batch["sources"],
        "n_examples": history.examples or n_files,
        "examples_per_step": history.examples_per_step or n_files,
        "steps_per_epoch": history.steps_per_epoch,
        "n_steps": len(history.loss),
        "n_epochs": epochs_done(history),
        "feature_seconds": feature_seconds,
        "total_training_seconds": total,
        "seconds_per_file": total / max(n_files, 1),
        "steady_step_seconds": steady,
        "warmup_seconds": warmup,
        "step_seconds": step_seconds(history.timed_steps, history.elapsed_seconds),
        "loss_curve": history.loss,
        "loss_term_curves": history.terms,
        "timed_steps": history.timed_steps,
        "elapsed_seconds": history.elapsed_seconds,
        "training_status": history.status,
        "skipped_steps": history.skipped_steps,
        "final_loss": history.loss[-1] if history.loss else None,
        "final_loss_terms": {name: float(np.mean(curve[-FINAL_STEPS:]))
                             for name, curve in history.terms.items() if curve},
        "metrics": metrics,
        "wavs": [project_path(w, root) for w in wavs],
        **{key: project_path(value, root) if isinstance(value, Path) else value
           for key, value in extras.items()},
    }


def save_run_record(path, record: dict) -> Path:
    """Write a run record as JSON at `path`, atomically (files.atomic_write)."""
    import json

    text = json.dumps(record, indent=1, default=str)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


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
    "step_seconds": ("list", "number"),
}
OPTIONAL_FIELDS = {"steps_per_epoch": "positive"}
# fields records written before steps and epochs were told apart name otherwise: old -> new
RENAMED_FIELDS = {"steady_epoch_seconds": "steady_step_seconds", "timed_epochs": "timed_steps",
                  "epoch_seconds": "step_seconds"}
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
    for old, new in RENAMED_FIELDS.items():  # written before steps and epochs were told apart
        if old in record and new not in record:
            record[new] = record.pop(old)
    if "examples_per_step" not in record and "n_files" in record:  # before examples
        record["examples_per_step"] = record["n_files"]
    if "steady_step_seconds" not in record:  # written before the steady pace was kept
        timing = {"timed_steps": record.get("timed_steps"),
                  "elapsed_seconds": record.get("elapsed_seconds"),
                  "capture_seconds": record.get("capture_seconds", 0.0)}
        kinds = [("list", "count"), ("list", "number"), "number or null"]
        for (field, value), kind in zip(timing.items(), kinds):
            _check(value, kind, field, path)
        _check(record.get("loss_curve"), ("list", "number"), "loss_curve", path)
        if max(timing["timed_steps"], default=0) > len(record["loss_curve"]):
            raise RunRecordError(f"{path}: field timed_steps counts more steps than "
                                 f"loss_curve has ({len(record['loss_curve'])})")
        record["steady_step_seconds"], record["warmup_seconds"] = steady_and_warmup(
            *timing.values())
    for field, kind in FIELDS.items():
        if field not in record:
            raise RunRecordError(f"{path}: required field {field!r} is missing")
        _check(record[field], kind, field, path)
    for field, kind in OPTIONAL_FIELDS.items():
        if field in record:
            _check(record[field], kind, field, path)
    return record
