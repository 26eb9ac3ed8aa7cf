"""What a notebook run did and made, checked: the smoke runs (DDSP_SMOKE=1, CI) call these after
training, the cached loss, the run record and the comparison, so wrong but finite results fail
the run instead of passing because no cell raised.

    history -> one-line summary, or RunCheckError (check_training)
    cached and plain loss of one prediction -> summary, or RunCheckError (check_cached_loss)
    {wav path: expected length}, metrics, growth table -> summary, or RunCheckError
    records shown, run record saved -> summary, or RunCheckError (check_comparison)
"""
from __future__ import annotations

import math
import numbers
import re
from pathlib import Path

import numpy as np

from .audio import SILENCE_PEAK, read_wav
from .config import HOP_LENGTH, SAMPLE_RATE
from .history import as_history
from .loss import MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss
from .room_part import ROOM_SECONDS
from .stages import Stage
from .markup import markdown_text
from .runs import RUN_LABELS
from .notes import Note
from .melody import RELEASE_SECONDS

# A melody ends with its last note's release, on a whole frame, and a room's tail is whole frames
# too: it may run this much past its notes (and tail), never short of them (notes_to_controls).
MELODY_SLACK_SAMPLES = round(RELEASE_SECONDS * SAMPLE_RATE) + 3 * HOP_LENGTH
_STAGE_CELL = re.compile(r"^-?\d+\.\d dB, \d+ Hz$")  # a stage's level and centroid
_NOISE_CELL = re.compile(r"^-?\d+\.\d dB$")  # what the noise adds
LOSS_FALL = 0.9  # a smoke run's last loss is below this share of its first: it learned
CACHED_LOSS_RTOL = 1e-5  # the cached-target loss equals the plain one within this (relative)


class RunCheckError(AssertionError):
    """What a run made is wrong: the message lists every problem found, one per line."""


def expected_samples(expected, room: bool = False) -> tuple[int, int]:
    """(fewest, most) samples a wav may hold. `expected`: a length in samples; Stages (a
    growth render: the stages' seconds, exactly); Notes (a melody: its notes' seconds, up to
    MELODY_SLACK_SAMPLES more for the release); or f0 frames [T] (a melody from a recording's
    controls: T frames of HOP_LENGTH). A melody of a model with a `room` has ROOM_SECONDS
    more, where the room rings out."""
    if isinstance(expected, (int, np.integer)):
        return int(expected), int(expected)
    items = list(expected)
    if items and all(isinstance(item, Stage) for item in items):
        n = round(sum(stage.duration for stage in items) * SAMPLE_RATE)
        return n, n
    tail = round(ROOM_SECONDS * SAMPLE_RATE) if room else 0
    if items and all(isinstance(item, Note) for item in items):
        n = round(sum(note.duration for note in items) * SAMPLE_RATE) + tail
        return n, n + MELODY_SLACK_SAMPLES
    if isinstance(expected, np.ndarray) and expected.ndim == 1 and len(expected):
        n = len(expected) * HOP_LENGTH + tail
        return n, n + HOP_LENGTH  # the room's tail is a whole number of frames
    raise TypeError(f"an expected length is samples, Stages, Notes or f0 frames, got "
                    f"{type(expected).__name__}")


def wav_problems(path, expected, room: bool = False) -> list[str]:
    """What is wrong with the wav at `path`: not at SAMPLE_RATE, not finite, silent (peak under
    SILENCE_PEAK) or not as long as `expected` (see expected_samples)."""
    import soundfile as sf

    name = Path(path).name
    if not Path(path).is_file():
        return [f"{name}: not written"]
    rate = sf.info(str(path)).samplerate
    audio = read_wav(path)
    fewest, most = expected_samples(expected, room)
    problems = []
    if rate != SAMPLE_RATE:
        problems.append(f"{name}: {rate} Hz, not {SAMPLE_RATE}")
    if not np.all(np.isfinite(audio)):
        problems.append(f"{name}: {np.count_nonzero(~np.isfinite(audio))} non-finite samples")
    elif np.max(np.abs(audio), initial=0.0) < SILENCE_PEAK:
        problems.append(f"{name}: silent (peak {np.max(np.abs(audio), initial=0.0):.1e})")
    if not fewest <= len(audio) <= most:
        wanted = f"{fewest}" if fewest == most else f"{fewest} to {most}"
        problems.append(f"{name}: {len(audio)} samples, expected {wanted}")
    return problems


def metric_problems(metrics: dict) -> list[str]:
    """Every metric of evaluate_batch's {stem: {"model": {...}, "sine": {...}}} that is not a
    finite number, and an empty table."""
    if not metrics:
        return ["the metrics table is empty"]
    return [f"metric {name} of {stem} ({which}) is {value!r}"
            for stem, by_kind in metrics.items() for which, values in by_kind.items()
            for name, value in values.items()
            if not (isinstance(value, numbers.Real) and math.isfinite(value))]


def growth_table_problems(table: str, stages, stems) -> list[str]:
    """What is wrong with report.growth_table's markdown: a column per stage (its name, in
    order) and one row per grown file (`stems`), every stage's level and centroid finite."""
    lines = [line for line in table.strip().splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    names = [markdown_text(stage.name) for stage in stages]  # as growth_table escapes them
    if not cells or cells[0][1:-1] != names:
        return [f"the growth table's stages are {cells[0][1:-1] if cells else []}, not {names}"]
    problems = []
    if sorted(row[0] for row in cells[2:]) != sorted(markdown_text(stem) for stem in stems):
        problems.append(f"the growth table's rows are {[row[0] for row in cells[2:]]}, "
                        f"not one per file {list(stems)}")
    for row in cells[2:]:
        stem, levels, noise = row[0], row[1:-1], row[-1]
        problems += [f"growth of {stem}, stage {name!r}: {cell!r} is not a finite level and "
                     "centroid" for name, cell in zip(names, levels)
                     if not _STAGE_CELL.match(cell)]
        if len(levels) != len(names):
            problems.append(f"growth of {stem}: {len(levels)} stages, not {len(names)}")
        if not _NOISE_CELL.match(noise):
            problems.append(f"growth of {stem}: the noise adds {noise!r}, not a finite level")
    return problems


def check_run_outputs(wavs: dict, metrics: dict, growth_table: str, stages,
                      room: bool = False) -> str:
    """Check what a run made; returns a one-line summary, or raises RunCheckError listing
    every problem.

    wavs: {path: expected length} for every wav the run wrote (expected_samples: samples for a
    resynthesis, Stages for a growth, Notes or f0 frames for a melody; `room`: the model has
    one, so a melody has its tail); metrics: evaluate_batch's, every value finite; growth_table:
    report.growth_table's markdown over `stages`, one row per file the metrics cover."""
    stages = list(stages)
    problems = [problem for path, expected in wavs.items()
                for problem in wav_problems(path, expected, room)]
    problems += metric_problems(metrics)
    problems += growth_table_problems(growth_table, stages, list(metrics))
    if problems:
        raise RunCheckError("what the run made is wrong:\n" + "\n".join(problems))
    return (f"checked {len(wavs)} wavs (finite, not silent, as long as expected), "
            f"{sum(len(v) for by_kind in metrics.values() for v in by_kind.values())} metrics "
            f"(finite) and the growth table ({len(metrics)} files x {len(stages)} stages)")


def check_training(history, nan_epoch=None) -> str:
    """A smoke run's training (a History): finished, every loss finite, the last below LOSS_FALL x the first
    (a broken training path fails here); with `nan_epoch` (the epoch where
    tests/test_notebook_faults.py injected a NaN) stopped at that epoch instead. Returns a
    one-line summary; RunCheckError saying what is wrong."""
    history = as_history(history)
    status, loss = history.status, history.loss
    if nan_epoch:
        if not status.startswith(f"stopped at epoch {nan_epoch}:"):
            raise RunCheckError(f"no NaN stop: {status}")
        return f"training stopped at epoch {nan_epoch}, where the NaN was injected"
    if status != "finished" or not loss or not np.isfinite(loss).all():
        raise RunCheckError(f"training did not finish cleanly: {status}")
    if not loss[-1] < LOSS_FALL * loss[0]:
        raise RunCheckError(f"the loss did not fall: {loss[0]:.4f} -> {loss[-1]:.4f} in "
                            f"{len(loss)} steps")
    return f"training finished; the loss fell from {loss[0]:.4f} to {loss[-1]:.4f}"


def cached_and_plain_loss(model, batch: dict) -> tuple[float, float]:
    """The spectral loss of the model's prediction for the batch's excerpts (the eager forward,
    even if compiled; its noise drawn from torch's random state like a training step's) with
    the target's spectra cached and computed plainly: (cached, plain)."""
    import torch

    audio, lengths = batch["audio"], batch["lengths"]
    with torch.no_grad():
        prediction = model.forward(batch["f0"], batch["loudness"], batch["mfcc"])[0]
        cached = OptimizedMultiScaleSpectralLoss().precompute_target(audio, audio.device, lengths)
        return (float(cached(prediction, audio, lengths)),
                float(MultiScaleSpectralLoss()(prediction, audio, lengths)))


def check_cached_loss(cached: float, plain: float) -> str:
    """The cached-target loss equals the plain one within CACHED_LOSS_RTOL; RunCheckError
    otherwise."""
    if not abs(cached - plain) <= CACHED_LOSS_RTOL * abs(plain):
        raise RunCheckError(f"cached-target loss {cached:.7f} != plain loss {plain:.7f}")
    return f"the cached-target loss equals the plain loss within {CACHED_LOSS_RTOL:g}"


def check_comparison(records: dict | None, runs_dir, record: dict) -> str:
    """The side-by-side section (comparison.show_comparison's `records`) after this run saved
    `record` into `runs_dir`: it shows both runs exactly when the other notebook's record is
    there, and this run's record is the one just saved. RunCheckError otherwise."""
    this = RUN_LABELS[record["notebook"]]
    other = next(name for name in RUN_LABELS if name != record["notebook"])
    other_ran = (Path(runs_dir) / f"{other}.json").is_file()
    if (records is not None) != other_ran:
        raise RunCheckError("the comparison should show both records once both notebooks "
                            "have run")
    if records is not None and records[this]["created"] != record["created"]:
        raise RunCheckError("the comparison did not show the run record this notebook just "
                            "saved")
    return ("the comparison shows this run's record beside the other's" if other_ran else
            f"no comparison yet: notebooks/{other}.ipynb has not run")
